package preflight

import (
	"strings"
	"testing"
	"time"
)

func TestClockSkew(t *testing.T) {
	sent := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	received := sent.Add(40 * time.Millisecond)
	// The node read its clock 12:07:00.020 as we were at 12:00:00.020.
	f := ClockSkew(sent, received, sent.Add(7*time.Minute+20*time.Millisecond))
	if f.Skew != 7*time.Minute || f.Uncertainty != 20*time.Millisecond {
		t.Fatalf("ClockSkew = %+v, want 7m ahead ±20ms", f)
	}

	cases := []struct {
		name      string
		facts     ClockFacts
		warn, err string // what a warning or an error says; "" none
	}{
		{"in time", ClockFacts{Skew: 2 * time.Second, Uncertainty: 5 * time.Millisecond}, "", ""},
		{"30 s is still fine", ClockFacts{Skew: -ClockSkewWarn}, "", ""},
		{"a minute ahead", ClockFacts{Skew: time.Minute, Uncertainty: 3 * time.Millisecond}, "1m0s ahead of this machine's (±3ms), more than 30s: check NTP", ""},
		{"four minutes behind", ClockFacts{Skew: -4 * time.Minute}, "4m0s behind this machine's", ""},
		// A local agent answers well within a millisecond: never "±0s".
		{"a minute behind, read in 300µs", ClockFacts{Skew: -time.Minute, Uncertainty: 300 * time.Microsecond}, "1m0s behind this machine's (±1ms)", ""},
		{"a minute behind, read in 2.1ms", ClockFacts{Skew: -time.Minute, Uncertainty: 2100 * time.Microsecond}, "1m0s behind this machine's (±3ms)", ""},
		{"seven minutes ahead", ClockFacts{Skew: 7 * time.Minute, Uncertainty: 10 * time.Millisecond}, "", "7m0s ahead of this machine's (±10ms), more than 5m0s: certificates and the channel's signed metadata"},
		{"six minutes behind", ClockFacts{Skew: -6 * time.Minute}, "", "6m0s behind this machine's"},
		// Beyond 5 minutes only by less than the uncertainty: not sure enough to refuse.
		{"maybe just beyond", ClockFacts{Skew: ClockSkewFail + time.Second, Uncertainty: 2 * time.Second}, "5m1s ahead", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			warns, errs := ClockCheck{Facts: tc.facts}.Check(t.Context())
			check := func(kind string, got []error, want string) {
				if want == "" {
					if len(got) != 0 {
						t.Errorf("%s: %v, want none", kind, got)
					}
					return
				}
				if len(got) != 1 || !strings.Contains(got[0].Error(), want) {
					t.Errorf("%s: %v, want one saying %q", kind, got, want)
				}
			}
			check("warnings", warns, tc.warn)
			check("errors", errs, tc.err)
		})
	}
}
