package ui

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

func TestDescribeTransfer(t *testing.T) {
	for _, tc := range []struct {
		tp   steps.FetchProgress
		want string
	}{
		{steps.FetchProgress{Done: 1 << 20, Total: 4 << 20}, "1.0 MiB of 4.0 MiB"},
		{steps.FetchProgress{Done: 1 << 20, Total: 3 << 20, Rate: 1 << 20, Retries: 1}, "1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2s, 1 retry"},
		{steps.FetchProgress{Done: 0, Total: 10, Retries: 3}, "10 B, 3 retries"},
	} {
		if got := describeTransfer(tc.tp); !strings.HasSuffix(got, tc.want) {
			t.Errorf("%+v: %q, want it to end with %q", tc.tp, got, tc.want)
		}
	}
}

// Text output is one line per step, with the failure's error; JSON output
// is one event per line, and only JSON output carries result documents.
func TestPrinterFormats(t *testing.T) {
	var out, errw bytes.Buffer
	p := New(Text, nil, &out, &errw)
	s := rollout.Step{ID: "3.4.2/aok/start", Op: steps.OpStart}
	p.StepStarted("core", s)
	p.StepFinished("core", s, steps.Result{}, errors.New("hook failed"))
	p.Notef("sentinel: resuming")
	if err := p.Result("download-only", map[string]int{"fetched": 1}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if !strings.Contains(out.String(), "[core] 3.4.2/aok/start") || !strings.Contains(out.String(), "FAILED") || strings.Contains(out.String(), "fetched") {
		t.Errorf("text output:\n%s", out.String())
	}
	if errw.String() != "sentinel: resuming\n" {
		t.Errorf("notes: %q", errw.String())
	}

	out.Reset()
	p = New(JSON, nil, &out, &errw)
	p.StepStarted("core", s)
	if err := p.Result("download-only", map[string]int{"fetched": 1}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"event":"step-start"`) || !strings.Contains(lines[1], `"event":"download-only-result"`) {
		t.Errorf("JSON output:\n%s", out.String())
	}
}

// Without a terminal, nobody can confirm: the refusal says what to pass.
func TestConfirmWithoutTerminal(t *testing.T) {
	var out bytes.Buffer
	err := New(Text, strings.NewReader("y\n"), &out, &out).Confirm(&rollout.Plan{}, "Upgrade? ", "pass --yes")
	var ce *ConfirmError
	if !errors.As(err, &ce) || ce.Msg != "pass --yes" || out.Len() != 0 {
		t.Fatalf("%v, printed %q", err, out.String())
	}
}
