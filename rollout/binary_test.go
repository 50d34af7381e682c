package rollout

import (
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/resume"
)

// Each build that goes on with a run is recorded once, in order, and the
// run still replays (an unknown record type would stop it).
func TestNoteBinary(t *testing.T) {
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start(NewID(time.Now()), []string{"sentinel", "upgrade", "3.4.2"}, "0.1.0", &Plan{From: "3.4.1", To: "3.4.2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		version, from string
		wrote         bool
	}{
		{"0.1.0", "", false},     // the build that started it: nothing to say
		{"0.2.0", "0.1.0", true}, // a self-update
		{"0.2.0", "", false},     // a plain resume by the same build
		{"dev", "", true},        // a binary put back by hand
	} {
		wrote, err := NoteBinary(j, run, n.version, n.from)
		if err != nil || wrote != n.wrote {
			t.Fatalf("NoteBinary(%s, %q): wrote %v, %v; want %v", n.version, n.from, wrote, err, n.wrote)
		}
	}
	j.Close()
	p, _ := runs.LatestPath()
	rep, err := resume.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := ReplayRun(rep.Records)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range replayed.Binaries() {
		got = append(got, b.Version+"<"+b.UpdatedFrom)
	}
	if want := []string{"0.1.0<", "0.2.0<0.1.0", "dev<"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("replayed binaries %v, want %v", got, want)
	}
	if bs := replayed.Binaries(); bs[1].Record != 2 || bs[2].Record != 3 {
		t.Errorf("records %d, %d; want 2, 3", bs[1].Record, bs[2].Record)
	}
}
