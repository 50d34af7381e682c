package ui

import (
	"bytes"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

func TestDescribeTransfer(t *testing.T) {
	fetch := rollout.Step{ID: "3.4.2/router/fetch", Op: steps.OpFetch, Component: "router", Version: "3.4.2"}
	for _, tc := range []struct {
		s    rollout.Step
		tp   steps.FetchProgress
		eta  time.Duration
		want string
	}{
		{rollout.Step{}, steps.FetchProgress{Done: 1 << 20, Total: 4 << 20}, -1, "1.0 MiB of 4.0 MiB"},
		{rollout.Step{}, steps.FetchProgress{Done: 1 << 20, Total: 3 << 20, Rate: 1 << 20, Retries: 1}, 2 * time.Second, "1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2s, 1 retry"},
		{rollout.Step{}, steps.FetchProgress{Done: 0, Total: 10, Retries: 3}, -1, "10 B, 3 retries"},
		// Every line names its artifact; no ETA until there is one.
		{fetch, steps.FetchProgress{Digest: "0a1b2c3d4e5f6789", Done: 4 << 10, Total: 200 << 20, Rate: 1 << 10}, -1, "router 3.4.2 (sha256 0a1b2c3d4e5f): 4.0 KiB of 200.0 MiB, 1.0 KiB/s"},
	} {
		if got := describeTransfer(tc.s, tc.tp, tc.eta); !strings.HasSuffix(got, tc.want) {
			t.Errorf("%+v: %q, want it to end with %q", tc.tp, got, tc.want)
		}
	}
}

// No ETA from the first KiB (the issue saw 1h43m51s from 4 KiB): only
// once the transfer ran a while and moved a share of its size.
func TestETAWaitsForEnough(t *testing.T) {
	var c etaClock
	t0 := time.Unix(1000, 0)
	const total = 200 << 20
	for _, tc := range []struct {
		after time.Duration
		done  int64
		known bool
		want  time.Duration
	}{
		{0, 4 << 10, false, 0},
		{100 * time.Millisecond, 8 << 10, false, 0},                // a few KiB: nothing to go on
		{10 * time.Second, 2 << 20, false, 0},                      // under 2% of the size
		{2 * time.Second, 100 << 20, false, 0},                     // not long enough
		{10 * time.Second, 4<<10 + 20<<20, true, 90 * time.Second}, // 20 MiB in 10 s, 180 MiB left
	} {
		got, ok := c.estimate(t0.Add(tc.after), tc.done, total)
		if ok != tc.known || ok && (got-tc.want).Abs() > time.Second {
			t.Errorf("after %s with %d bytes: %s %v, want %s %v", tc.after, tc.done, got, ok, tc.want, tc.known)
		}
	}
}

// A closed pipe, or a terminal gone, takes what is written and drops it.
func TestDropWhenGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	signal.Ignore(syscall.SIGPIPE) // as sentinel's run does (it catches it)
	r.Close()
	d := DropWhenGone(w)
	for range 2 {
		if n, err := d.Write([]byte("line\n")); n != 5 || err != nil {
			t.Fatalf("write to a closed pipe: %d %v", n, err)
		}
	}
}

// The run-level line: node k of n, elapsed, and an ETA only once known.
func TestRunProgressLine(t *testing.T) {
	for _, tc := range []struct {
		rp   rollout.RunProgress
		want string
	}{
		{rollout.RunProgress{Nodes: 5, Started: 1, Node: "dea-1", Event: "node-started", Elapsed: 2 * time.Second}, "node 1 of 5 (dea-1) started; 0 done; elapsed 2s"},
		{rollout.RunProgress{Nodes: 5, Started: 2, Done: 2, Node: "dea-2", Event: "node-done", Elapsed: 80 * time.Second, ETA: 2 * time.Minute}, "dea-2 done: 2 of 5 nodes done; elapsed 1m20s, ETA 2m0s"},
	} {
		if got := DescribeRunProgress(tc.rp); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}

// attach shows a run's events file as the run showed them: the step
// lines with the durations the run measured, its start and its end.
func TestFollowerShowsEvents(t *testing.T) {
	var events, out bytes.Buffer
	events.WriteString(`{"event":"run-start","time":"2026-12-03T10:00:00Z","id":"R1","command":["sentinel","upgrade","3.4.2"],"user":"ops","host":"core","from":"10.0.0.9"}` + "\n")
	p := NewJSONProgress(&events)
	s := rollout.Step{ID: "3.4.2/aok/start", Op: steps.OpStart}
	p.StepStarted("core", s)
	p.StepFinished("core", s, steps.Result{Note: "started"}, nil)
	p.RunProgress(rollout.RunProgress{Nodes: 1, Started: 1, Done: 1, Node: "core", Event: "node-done", Elapsed: time.Minute})
	events.WriteString(`{"event":"run-end","time":"2026-12-03T10:01:00Z","id":"R1","result":"failed","exit_code":1,"failed_nodes":["core"]}` + "\n")
	f := NewFollower(Text, &out)
	for _, line := range bytes.SplitAfter(events.Bytes(), []byte("\n")) {
		if len(line) > 0 {
			f.Line(line)
		}
	}
	f.Close()
	for _, want := range []string{"Run R1 started by ops@core from 10.0.0.9", "sentinel upgrade 3.4.2", "[core] 3.4.2/aok/start", "ok (", "started",
		"[run] core done: 1 of 1 nodes done; elapsed 1m0s", "Run R1 ended: failed (exit 1) failed: core"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("attach shows no %q:\n%s", want, out.String())
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

// The staging plan says how many nodes fetch at once as it will be: the
// bound, or fewer when fewer nodes have something to fetch.
func TestStagePlanSaysTheNodesAtOnce(t *testing.T) {
	up := &rollout.Plan{From: "3.4.1", To: "3.4.2", Source: "upstream"}
	for i, fetches := range []bool{true, true, true, false} {
		np := rollout.NodePlan{Node: string(rune('a' + i)), Roles: []string{"dea"}}
		if fetches {
			np.Steps = []rollout.Step{{ID: "3.4.2/nats/fetch", Op: steps.OpFetch}}
		}
		up.Nodes = append(up.Nodes, np)
	}
	for _, tc := range []struct {
		bound int
		want  string
	}{{8, "on 3 nodes, 3 at once (bound 8),"}, {2, "on 3 nodes, 2 at once,"}, {3, "on 3 nodes, 3 at once,"}} {
		var out bytes.Buffer
		if err := PrintStagePlan(&out, Text, rollout.StagePlan(up, tc.bound)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("--stage-parallel %d: want %q in\n%s", tc.bound, tc.want, out.String())
		}
	}
}
