package lifecycle

import (
	"errors"
	"testing"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

type shownLines struct {
	rollout.Progress
	got []rollout.RunProgress
}

func (s *shownLines) RunProgress(rp rollout.RunProgress) { s.got = append(s.got, rp) }

type nowhere struct{}

func (nowhere) StepStarted(string, rollout.Step)                       {}
func (nowhere) StepFinished(string, rollout.Step, steps.Result, error) {}
func (nowhere) Logf(string, string, ...any)                            {}
func (nowhere) Transfer(string, rollout.Step, steps.FetchProgress)     {}

// The run-level line counts the nodes the plan changes, says when each
// begins and ends, and gives no ETA before a node finished.
func TestRunLevelLine(t *testing.T) {
	two := []rollout.Step{{ID: "fetch"}, {ID: "restart"}}
	run := &rollout.Run{Plan: &rollout.Plan{Nodes: []rollout.NodePlan{
		{Node: "dea-1", Steps: two}, {Node: "skipped"}, {Node: "dea-2", Steps: two}, {Node: "core", Steps: two}}}}
	shown := &shownLines{Progress: nowhere{}}
	l := newRunLevel(shown, run)
	for _, n := range []string{"dea-1", "dea-2"} {
		l.StepStarted(n, two[0])
		l.StepFinished(n, two[0], steps.Result{}, nil)
		l.StepStarted(n, two[1])
		l.StepFinished(n, two[1], steps.Result{}, nil)
	}
	l.StepStarted("core", two[0])
	l.StepFinished("core", two[0], steps.Result{}, nil)
	l.StepStarted("core", two[1])
	l.StepFinished("core", two[1], steps.Result{}, errors.New("failed"))
	want := []struct {
		event, node   string
		started, done int
		eta           bool
	}{
		{"node-started", "dea-1", 1, 0, false},
		{"node-done", "dea-1", 1, 1, true},
		{"node-started", "dea-2", 2, 1, true},
		{"node-done", "dea-2", 2, 2, true},
		{"node-started", "core", 3, 2, true}, // and no node-done: its last step failed
	}
	if len(shown.got) != len(want) {
		t.Fatalf("lines: %+v", shown.got)
	}
	for i, w := range want {
		g := shown.got[i]
		if g.Event != w.event || g.Node != w.node || g.Started != w.started || g.Done != w.done || g.Nodes != 3 || (g.ETA > 0) != w.eta {
			t.Errorf("line %d: %+v, want %+v", i, g, w)
		}
	}
}
