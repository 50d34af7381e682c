package rollout

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/steps"
)

func startRun(t *testing.T, plan *Plan) (*Executor, *Run) {
	t.Helper()
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start("run-1", []string{"sentinel", "upgrade"}, "test", plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &Executor{Journal: j, Progress: quietProgress{}, UnreachableRetries: -1}, run
}

// a node that fails inside a component rolls back before its goroutine
// returns; until then the main loop does not know of the failure, so it keeps
// launching nodes, and halt is not closed.
func TestNoNodeStartsDuringARollback(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 2, Nodes: []NodePlan{
		{Node: "router-1", Roles: []string{"router"}, Steps: componentSteps("3.4.2", "a")},
		{Node: "dea-1", Roles: []string{"dea"}, Steps: fetchSteps(1)},
		{Node: "ctrl-1", Roles: []string{"controller"}, Steps: fetchSteps(1)},
		{Node: "core", Roles: []string{"primary"}, Steps: fetchSteps(1)},
	}}
	x, run := startRun(t, plan)
	var calls callLog
	healthFailed := make(chan struct{})
	ctrlCalled := make(chan struct{})
	var failedOnce atomic.Bool
	x.Transports = map[string]cluster.Transport{
		"router-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("router-1", op)
			if op == steps.OpHealth && failedOnce.CompareAndSwap(false, true) {
				close(healthFailed)
				return &cluster.AgentError{Node: "router-1", Op: op, Message: "unhealthy"}
			}
			if failedOnce.Load() { // a rollback step: slow, like a real stop/start/health
				select {
				case <-ctrlCalled:
				case <-time.After(2 * time.Second):
				}
			}
			return nil
		}),
		"dea-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("dea-1", op)
			<-healthFailed // finishes while router-1 is rolling back
			for run.rollbackOf("router-1") == nil {
				time.Sleep(time.Millisecond)
			}
			return nil
		}),
		"ctrl-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("ctrl-1", op)
			close(ctrlCalled)
			return nil
		}),
		"core": nodeFunc(func(ctx context.Context, op string, in any) error { calls.add("core", op); return nil }),
	}
	err := x.Execute(context.Background(), run)
	var fe *StepFailedError
	if !errors.As(err, &fe) || fe.Node != "router-1" {
		t.Fatalf("Execute: %v", err)
	}
	if got := calls.of("ctrl-1"); len(got) != 0 {
		t.Errorf("ctrl-1 started after router-1 had failed (during its rollback): %v", got)
	}
}

// a failure that ends the run (rolled back) together with an
// interrupted node: the journal says "failed" (no --resume possible), but
// the error still unwraps to *InterruptedError, so main exits 75 and tells
// the operator to --resume.
func TestMixedFailuresKeepTheRunResumable(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 2, Nodes: []NodePlan{
		{Node: "router-1", Roles: []string{"router"}, Steps: componentSteps("3.4.2", "a")},
		{Node: "dea-1", Roles: []string{"dea"}, Steps: componentSteps("3.4.2", "b")},
		{Node: "core", Roles: []string{"primary"}, Steps: fetchSteps(1)},
	}}
	x, run := startRun(t, plan)
	healthFailed := make(chan struct{})
	x.Transports = map[string]cluster.Transport{
		"router-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			select {
			case <-healthFailed:
			default:
				if op == steps.OpHealth {
					close(healthFailed)
					return &cluster.AgentError{Node: "router-1", Op: op, Message: "unhealthy"}
				}
			}
			return nil
		}),
		"dea-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			if op == steps.OpSwitch { // dea-1 has b stopped; its node then drops off the network
				<-healthFailed
				return &cluster.UnreachableError{Node: "dea-1", Op: op, Err: errors.New("connection reset")}
			}
			return nil
		}),
		"core": nodeFunc(func(ctx context.Context, op string, in any) error { return nil }),
	}
	err := x.Execute(context.Background(), run)
	var ie *InterruptedError
	if run.Status == "failed" && errors.As(err, &ie) {
		t.Errorf("journal says the run failed (cannot be resumed), yet the error is an *InterruptedError (exit 75, \"run --resume\"): %v", err)
	}
	if run.Status == "failed" && run.state("dea-1", "3.4.2/b/switch").State != StateDone {
		t.Errorf("run closed as failed with dea-1's component b stopped (switch %s): nothing will ever finish it", run.state("dea-1", "3.4.2/b/switch").State)
	}
}

// a DEA halted at a safe point after its retirement stays retired when
// the run ends failed: nothing unretires it.
func TestHaltedDEARunsToItsUnretire(t *testing.T) {
	deaSteps := append([]Step{{ID: "retire", Op: steps.OpRetire}, {ID: "3.4.2/backup", Op: steps.OpBackup, Release: "3.4.2"}},
		componentSteps("3.4.2", "dea_ng")...)
	deaSteps = append(deaSteps, Step{ID: "restart", Op: steps.OpRestart}, Step{ID: "unretire", Op: steps.OpUnretire})
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 2, Nodes: []NodePlan{
		{Node: "router-1", Roles: []string{"router"}, Steps: componentSteps("3.4.2", "a")},
		{Node: "dea-1", Roles: []string{"dea"}, Steps: deaSteps},
		{Node: "core", Roles: []string{"primary"}, Steps: fetchSteps(1)},
	}}
	x, run := startRun(t, plan)
	var calls callLog
	x.Transports = map[string]cluster.Transport{
		"router-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			if op == steps.OpHealth && len(calls.of("router-1")) == 0 {
				calls.add("router-1", op)
				return &cluster.AgentError{Node: "router-1", Op: op, Message: "unhealthy"}
			}
			return nil
		}),
		"dea-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("dea-1", op)
			if op == steps.OpRetire {
				<-x.halt // drained while router-1 fails
			}
			return nil
		}),
		"core": nodeFunc(func(ctx context.Context, op string, in any) error { return nil }),
	}
	_ = x.Execute(context.Background(), run)
	if run.Finished() && run.state("dea-1", "retire").State == StateDone && run.state("dea-1", "unretire").State != StateDone {
		t.Errorf("run %s, dea-1 retired and never unretired (calls %v): its capacity is gone until someone notices", run.Status, calls.of("dea-1"))
	}
}

// multi-hop; the process died right after 3.4.3/c/switch took effect,
// before its step-done. The node runs 3.4.3 as the run meant. Recheck sees
// that the last *done* switch said 3.4.2 and resets from 3.4.2/c/install:
// the resumed run switches c back to 3.4.2 code on data 3.4.3/migrate changed.
func TestRecheckMultiHopCrashAfterSwitch(t *testing.T) {
	nodeSteps := append(componentSteps("3.4.2", "c"), componentSteps("3.4.3", "c")...)
	plan := &Plan{From: "3.4.1", To: "3.4.3", Nodes: []NodePlan{{Node: "n1", Roles: []string{"router"}, Steps: nodeSteps}}}
	x, run := startRun(t, plan)
	for _, s := range nodeSteps {
		if err := x.record(run, recStepStart, stepRef{Node: "n1", Step: s.ID}); err != nil {
			t.Fatal(err)
		}
		if s.ID == "3.4.3/c/switch" {
			break // crash: the link now points at 3.4.3, the journal does not know
		}
		if err := x.record(run, recStepDone, stepOutcome{Node: "n1", Step: s.ID}); err != nil {
			t.Fatal(err)
		}
	}
	x.Transports = map[string]cluster.Transport{"n1": factsNode{&steps.Facts{
		Current: map[string]string{"c": "3.4.3"}, Record: &steps.Record{Release: "3.4.2"}}}}
	resets, _, err := x.Recheck(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if len(resets) > 0 {
		t.Errorf("Recheck reset %d steps from %s (%s): the node is exactly where the run left it", len(resets), resets[0].Step, resets[0].Reason)
	}
}

// multi-hop; the node was restored from a snapshot taken before the
// run (everything on 3.4.1). Recheck redoes 3.4.3's component but not
// 3.4.2's: 3.4.3's migrate runs on data 3.4.2's migrate never saw.
func TestRecheckMultiHopSnapshot(t *testing.T) {
	nodeSteps := append(componentSteps("3.4.2", "c"), componentSteps("3.4.3", "c")...)
	plan := &Plan{From: "3.4.1", To: "3.4.3", Nodes: []NodePlan{{Node: "n1", Roles: []string{"router"}, Steps: nodeSteps}}}
	x, run := startRun(t, plan)
	for _, s := range nodeSteps[:len(nodeSteps)-1] { // all but 3.4.3/commit
		x.record(run, recStepStart, stepRef{Node: "n1", Step: s.ID})
		x.record(run, recStepDone, stepOutcome{Node: "n1", Step: s.ID})
	}
	x.Transports = map[string]cluster.Transport{"n1": factsNode{&steps.Facts{
		Current: map[string]string{"c": "3.4.1"}, Record: &steps.Record{Release: "3.4.1"}}}}
	if _, _, err := x.Recheck(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if st := run.state("n1", "3.4.2/c/migrate").State; st == StateDone {
		t.Errorf("node restored to 3.4.1, yet 3.4.2/c/migrate stays done; 3.4.3/c/migrate is %s", run.state("n1", "3.4.3/c/migrate").State)
	}
}

// A failed patch step rolls back every component the patch switched on the
// node, also those switched without a stop (a switch-only component, or
// every component with --no-restart): switched back, not restarted.
func TestRollbackUndoesSwitchOnlyComponents(t *testing.T) {
	sw := func(patch, c, from, to string) Step {
		return Step{ID: patch + "/" + c + "/switch", Op: steps.OpSwitch, Release: patch, Component: c, Version: to, From: from,
			Request: steps.Request{Component: c, Version: to, FromVersion: from}}
	}
	restarted := func(patch, c, from, to string) []Step {
		var out []Step
		for _, op := range []string{steps.OpStop, steps.OpSwitch, steps.OpStart, steps.OpHealth} {
			out = append(out, Step{ID: patch + "/" + c + "/" + op, Op: op, Release: patch, Component: c, Version: to, From: from,
				Request: steps.Request{Component: c, Version: to, FromVersion: from}})
		}
		return out
	}
	cases := []struct {
		name   string
		steps  []Step
		failOn string // op/component
		want   []string
	}{
		{"switch-only before a failed health", append([]Step{sw("fix", "console", "3.4.2-p1", "3.4.2")}, restarted("fix", "aok", "3.4.2-p1", "3.4.2")...),
			"health/aok",
			[]string{"stop aok ", "switch aok 3.4.2-p1", "start aok 3.4.2-p1", "health aok 3.4.2-p1", "switch console 3.4.2-p1"}},
		{"--no-restart: the second switch fails", []Step{sw("fix", "aok", "3.4.2", "3.4.2-p1"), sw("fix", "console", "3.4.2", "3.4.2-p1"), sw("other", "router", "3.4.2", "3.4.2-p1")},
			"switch/console",
			[]string{"switch console 3.4.2", "switch aok 3.4.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := &Plan{From: "3.4.2", To: "3.4.2", Kind: "patch-install", Nodes: []NodePlan{{Node: "core", Roles: []string{"primary"}, Steps: c.steps}}}
			x, run := startRun(t, plan)
			failed := false
			var rollback []string
			x.Transports = map[string]cluster.Transport{"core": nodeFunc(func(ctx context.Context, op string, in any) error {
				req := in.(steps.Request)
				if failed {
					rollback = append(rollback, op+" "+req.Component+" "+req.Version)
					return nil
				}
				if op+"/"+req.Component == c.failOn {
					failed = true
					return &cluster.AgentError{Node: "core", Op: op, Message: "broken"}
				}
				return nil
			})}
			err := x.Execute(context.Background(), run)
			var fe *StepFailedError
			if !errors.As(err, &fe) || fe.Resumable {
				t.Fatalf("Execute: %v", err)
			}
			if !slices.Equal(rollback, c.want) {
				t.Errorf("rollback calls %q\nwant %q", rollback, c.want)
			}
		})
	}
}
