package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// nodeFunc is an in-process node: it answers every call with f.
type nodeFunc func(ctx context.Context, op string, in any) error

func (f nodeFunc) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	return f(ctx, op, in)
}

type quietProgress struct{}

func (quietProgress) StepStarted(string, Step)                       {}
func (quietProgress) StepFinished(string, Step, steps.Result, error) {}
func (quietProgress) Logf(string, string, ...any)                    {}
func (quietProgress) Transfer(string, Step, steps.FetchProgress)     {}
func fetchSteps(n int) (out []Step) {
	for i := 0; i < n; i++ {
		out = append(out, Step{ID: fmt.Sprintf("fetch-%d", i), Op: steps.OpFetch})
	}
	return out
}

// callLog records the calls every node received, in order.
type callLog struct {
	mu    sync.Mutex
	calls map[string][]string
}

func (l *callLog) add(node, step string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls == nil {
		l.calls = map[string][]string{}
	}
	l.calls[node] = append(l.calls[node], step)
}

func (l *callLog) of(node string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls[node]...)
}

// A node that fails stops the run: the nodes in flight stop at their next
// safe point, no other node starts, and --resume finishes all of them.
func TestExecuteFailureHaltsNodesInFlight(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 3, Nodes: []NodePlan{
		{Node: "router-1", Roles: []string{"router"}, Steps: fetchSteps(3)},
		{Node: "dea-1", Roles: []string{"dea"}, Steps: fetchSteps(3)},
		{Node: "core", Roles: []string{"primary"}, Steps: fetchSteps(2)},
	}}
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start("run-1", []string{"sentinel", "upgrade"}, "test", plan)
	if err != nil {
		t.Fatal(err)
	}
	x := &Executor{Journal: j, Progress: quietProgress{}}
	var calls callLog
	routerFailed := make(chan struct{})
	x.Transports = map[string]cluster.Transport{
		"router-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			n := len(calls.of("router-1"))
			calls.add("router-1", op)
			if n == 1 {
				close(routerFailed)
				return &cluster.AgentError{Node: "router-1", Op: op, Message: "upstream said 500"}
			}
			return nil
		}),
		"dea-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("dea-1", op)
			if len(calls.of("dea-1")) == 1 {
				// Still in flight when the router fails, and finishing its
				// step only once the run has stopped launching.
				<-routerFailed
				<-x.halt
			}
			return nil
		}),
		"core": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("core", op)
			return nil
		}),
	}
	err = x.Execute(context.Background(), run)
	var he *HaltedNodesError
	var fe *StepFailedError
	if !errors.As(err, &he) || !errors.As(err, &fe) || fe.Node != "router-1" || !fe.Resumable {
		t.Fatalf("Execute: %v; want router-1's resumable failure, with the nodes it stopped", err)
	}
	if got := calls.of("dea-1"); len(got) != 1 {
		t.Errorf("dea-1 received %d calls after router-1 failed: want it stopped after its step in flight", len(got))
	}
	if got := calls.of("core"); len(got) != 0 {
		t.Errorf("the core started after a failure: %v", got)
	}
	if run.Status != "interrupted" {
		t.Errorf("run status %q, want interrupted", run.Status)
	}
	j.Close()

	// Resume with the fault gone: everything finishes, nothing runs twice.
	path, _ := runs.LatestPath()
	run2, j2 := reopen(t, path)
	defer j2.Close()
	var again callLog
	ok := nodeFunc(func(context.Context, string, any) error { return nil })
	x2 := &Executor{Journal: j2, Progress: quietProgress{}, Transports: map[string]cluster.Transport{}}
	for _, n := range []string{"router-1", "dea-1", "core"} {
		x2.Transports[n] = nodeFunc(func(ctx context.Context, op string, in any) error { again.add(n, op); return ok(ctx, op, in) })
	}
	if err := x2.Execute(context.Background(), run2); err != nil {
		t.Fatalf("resume: %v", err)
	}
	for node, want := range map[string]int{"router-1": 2, "dea-1": 2, "core": 2} {
		if got := len(again.of(node)); got != want {
			t.Errorf("resume ran %d steps on %s, want %d", got, node, want)
		}
	}
}

func reopen(t *testing.T, path string) (*Run, *resume.Journal) {
	t.Helper()
	j, rep, err := resume.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	run, err := ReplayRun(rep.Records)
	if err != nil {
		t.Fatal(err)
	}
	return run, j
}
