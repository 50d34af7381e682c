package runctl

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
)

// The background process runs the same command, confirmed, and does not
// detach again.
func TestDetachedArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"upgrade", "3.4.2", "--detach"}, []string{"upgrade", "3.4.2", "--yes"}},
		{[]string{"upgrade", "3.4.2", "-y", "--detach=true", "--cache-ip", "10.0.0.1"}, []string{"upgrade", "3.4.2", "-y", "--cache-ip", "10.0.0.1"}},
		{[]string{"patch", "install", "--resume", "--detach", "--skip-confirmation"}, []string{"patch", "install", "--resume", "--skip-confirmation"}},
	} {
		if got := DetachedArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The audit keeps every entry; a line torn by a crash while appending is
// no entry, a damaged line before the last is an error naming the file.
func TestAudit(t *testing.T) {
	d := For(t.TempDir())
	code := 75
	for _, e := range []Entry{{Event: "run-start", ID: "R1", User: "ops"}, {Event: "run-end", ID: "R1", Result: ResultInterrupted, ExitCode: &code}} {
		if err := appendJSON(d.Audit("R1"), e); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(d.Audit("R1"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"event":"run-st`)
	f.Close()
	got, err := d.ReadAudit("R1")
	if err != nil || len(got) != 2 || got[0].User != "ops" || *got[1].ExitCode != 75 {
		t.Fatalf("%+v %v", got, err)
	}
	os.WriteFile(d.Audit("R2"), []byte("garbage\n{\"event\":\"run-start\"}\n"), 0o644)
	if _, err := d.ReadAudit("R2"); err == nil || !strings.Contains(err.Error(), "R2.audit, line 1") {
		t.Errorf("damaged audit: %v", err)
	}
	if got, err := d.ReadAudit("none"); got != nil || err != nil {
		t.Errorf("no audit: %v %v", got, err)
	}
}

func TestResultOf(t *testing.T) {
	for code, want := range map[int]string{0: ResultSucceeded, 1: ResultFailed, 75: ResultInterrupted, 2: ResultFailed} {
		if got := ResultOf(code); got != want {
			t.Errorf("%d: %s, want %s", code, got, want)
		}
	}
}

// stop names the process the run lock names; nothing running, nothing to
// stop.
func TestRequestStopNothingRunning(t *testing.T) {
	runs := rollout.Runs{Dir: t.TempDir()}
	if _, err := RequestStop(runs, ""); err == nil || !strings.Contains(err.Error(), "no run is running") {
		t.Errorf("%v", err)
	}
	if resume.HolderPID("pid 4242 since 2026-12-03T10:00:00Z: sentinel upgrade") != 4242 || resume.HolderPID("garbage") != 0 {
		t.Error("HolderPID")
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"20261203T163002.189043974Z-b0be": true, "../x": false, ".hidden": false, "": false, "a/b": false} {
		if rollout.ValidID(id) != want {
			t.Errorf("%q: want %v", id, want)
		}
	}
}

// A process killed in a run never writes its run-end, and may leave a
// torn line: the process that resumes the run ends the killed one's part
// (interrupted, saying so) and starts its own on a line of its own.
func TestResumeEndsTheKilledProcessInTheAudit(t *testing.T) {
	d := For(t.TempDir())
	killed := &Recorder{Dir: d, Command: []string{"sentinel", "upgrade", "3.4.2"}}
	if _, err := killed.Begin("R1", false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.Audit("R1"), d.Events("R1")} {
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`{"event":"run-e`) // torn by the kill
		f.Close()
	}

	again := &Recorder{Dir: d, Command: []string{"sentinel", "upgrade", "--resume"}}
	if _, err := again.Begin("R1", true); err != nil {
		t.Fatal(err)
	}
	again.End(t.Context(), 0, nil)
	got, err := d.ReadAudit("R1")
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, e := range got {
		events = append(events, e.Event+" "+e.Result)
	}
	want := []string{"run-start ", "run-end interrupted", "run-start ", "run-end succeeded"}
	if !slices.Equal(events, want) || !strings.Contains(got[1].Error, "ended without recording its end") || !got[2].Resumed {
		t.Errorf("audit %q (%+v), want %q with the killed process's end saying so", events, got, want)
	}
	// `sentinel attach` follows the events from the resumed start on.
	var followed []string
	if _, err := Follow(t.Context(), d, rollout.Runs{Dir: t.TempDir()}, "R1", func(_ []byte, e Entry) { followed = append(followed, e.Event) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(followed, []string{"run-start", "run-end"}) {
		t.Errorf("attach followed %q, want the resumed run-start and its run-end", followed)
	}
}
