package rollout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

func TestParseUpdate(t *testing.T) {
	flag := func(f string) string { return "--" + f }
	for _, tc := range []struct {
		spec UpdateSpec
		want Update
		err  string
	}{
		{spec: UpdateSpec{}, want: Update{}},
		{spec: UpdateSpec{Canaries: "1", WatchTime: "5s", MaxInFlight: "25%", MaxFailures: "2"},
			want: Update{Canaries: 1, WatchTime: 5 * time.Second, MaxInFlight: Amount{N: 25, Percent: true}, MaxFailures: Amount{N: 2}}},
		{spec: UpdateSpec{MaxFailures: "10%"}, want: Update{MaxFailures: Amount{N: 10, Percent: true}}},
		{spec: UpdateSpec{Canaries: "-1"}, err: "--canaries"},
		{spec: UpdateSpec{Canaries: "one"}, err: "--canaries"},
		{spec: UpdateSpec{WatchTime: "5"}, err: "--watch-time"},
		{spec: UpdateSpec{WatchTime: "48h"}, err: "--watch-time"},
		{spec: UpdateSpec{MaxInFlight: "0"}, err: "--max-in-flight"},
		{spec: UpdateSpec{MaxInFlight: "0%"}, err: "--max-in-flight"},
		{spec: UpdateSpec{MaxInFlight: "150%"}, err: "--max-in-flight"},
		{spec: UpdateSpec{MaxFailures: "x%"}, err: "--max-failures"},
		{spec: UpdateSpec{MaxFailures: "-2"}, err: "--max-failures"},
	} {
		got, err := tc.spec.Parse(flag)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: error %v, want one naming %s", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
	// Flags override the cluster file setting by setting.
	file := UpdateSpec{Canaries: "2", MaxFailures: "1"}
	if got := (UpdateSpec{Canaries: "1"}).Over(file); got.Canaries != "1" || got.MaxFailures != "1" {
		t.Errorf("flags over the file: %+v", got)
	}
}

// Percentages are taken of the nodes with work; the failure budget of the
// nodes other than the core.
func TestUpdateAppliedToPlan(t *testing.T) {
	p := &Plan{Nodes: []NodePlan{{Node: "core", Roles: []string{"primary"}}, {Node: "skipped", Skip: "already on 3.4.2"}}}
	for i := 1; i <= 10; i++ {
		p.Nodes = append(p.Nodes, NodePlan{Node: "dea-" + string(rune('a'+i)), Roles: []string{"dea"}})
	}
	Update{MaxInFlight: Amount{N: 25, Percent: true}, MaxFailures: Amount{N: 20, Percent: true}, Canaries: 1, WatchTime: time.Second}.apply(p)
	if p.MaxInFlight != 2 || p.MaxFailures != 2 || p.Canaries != 1 || p.WatchTime != release.Duration(time.Second) {
		t.Errorf("25%% in flight of 11 nodes, 20%% failures of 10: got %d in flight, %d failures, %d canaries, watch %v", p.MaxInFlight, p.MaxFailures, p.Canaries, p.WatchTime)
	}
	Update{MaxInFlight: Amount{N: 1, Percent: true}}.apply(p)
	if p.MaxInFlight != 1 {
		t.Errorf("1%% of 11 nodes: %d in flight, want at least 1", p.MaxInFlight)
	}
}

func deaSteps(rel string) []Step {
	out := append([]Step{{ID: "retire", Op: steps.OpRetire}}, componentSteps(rel, "dea_ng")...)
	return append(out, Step{ID: "restart", Op: steps.OpRestart}, Step{ID: "unretire", Op: steps.OpUnretire})
}

func fourDEAsAndCore() []NodePlan {
	nodes := []NodePlan{}
	for _, n := range []string{"dea-1", "dea-2", "dea-3", "dea-4"} {
		nodes = append(nodes, NodePlan{Node: n, Roles: []string{"dea"}, Steps: deaSteps("3.4.2")})
	}
	return append(nodes, NodePlan{Node: "core", Roles: []string{"primary", "router"}, Steps: componentSteps("3.4.2", "router")})
}

// failingHealth is a node whose health step fails; every call is logged.
func failingHealth(calls *callLog, node string) cluster.Transport {
	return nodeFunc(func(ctx context.Context, op string, in any) error {
		calls.add(node, op)
		if op == steps.OpHealth && in.(steps.Request).FromVersion != "" {
			return &cluster.AgentError{Node: node, Op: op, Message: "injected health failure"}
		}
		return nil
	})
}

func healthy(calls *callLog, node string) cluster.Transport {
	return nodeFunc(func(ctx context.Context, op string, in any) error { calls.add(node, op); return nil })
}

// With a failure budget of 1, a DEA that fails is rolled back and the
// other DEAs and the core finish: the run ends partial, naming it.
func TestFailureBudgetLetsTheOthersFinish(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxFailures: 1, Nodes: fourDEAsAndCore()}
	for i := range plan.Nodes {
		for j := range plan.Nodes[i].Steps {
			plan.Nodes[i].Steps[j].Request.FromVersion = plan.Nodes[i].Steps[j].From
		}
	}
	x, run := startRun(t, plan)
	var calls callLog
	x.Transports = map[string]cluster.Transport{"dea-2": failingHealth(&calls, "dea-2")}
	for _, n := range []string{"dea-1", "dea-3", "dea-4", "core"} {
		x.Transports[n] = healthy(&calls, n)
	}
	err := x.Execute(context.Background(), run)
	var pe *PartialError
	if !errors.As(err, &pe) || !slices.Equal(pe.FailedNodes(), []string{"dea-2"}) || len(pe.Excluded) != 0 {
		t.Fatalf("Execute: %v, want a partial run with dea-2 failed", err)
	}
	if !strings.Contains(err.Error(), "dea-2") || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("the summary does not name dea-2 and its rollback: %v", err)
	}
	for _, n := range []string{"dea-1", "dea-3", "dea-4", "core"} {
		if firstPending(run, plan.Nodes[slices.IndexFunc(plan.Nodes, func(np NodePlan) bool { return np.Node == n })]) != "(none)" {
			t.Errorf("node %s was not finished", n)
		}
	}
	if !slices.Contains(calls.of("dea-2"), steps.OpUnretire) {
		t.Errorf("dea-2 was not unretired by its rollback: %v", calls.of("dea-2"))
	}
	if run.Status != RunPartial || !slices.Equal(run.FailedNodes, []string{"dea-2"}) {
		t.Errorf("journal: status %q, failed %v", run.Status, run.FailedNodes)
	}
	// The journal reads back the same.
	again, j := reopen(t, x.Journal.Path())
	j.Close()
	if again.Status != RunPartial || !again.Done() || !slices.Equal(again.FailedNodes, []string{"dea-2"}) {
		t.Errorf("replayed: status %q, failed %v", again.Status, again.FailedNodes)
	}
}

// Past the budget the run stops, and the error names every failed node.
func TestFailureBudgetSpent(t *testing.T) {
	for _, budget := range []int{0, 1} {
		plan := &Plan{From: "3.4.1", To: "3.4.2", MaxFailures: budget, Nodes: fourDEAsAndCore()}
		for i := range plan.Nodes {
			for j := range plan.Nodes[i].Steps {
				plan.Nodes[i].Steps[j].Request.FromVersion = "3.4.1"
			}
		}
		x, run := startRun(t, plan)
		var calls callLog
		x.Transports = map[string]cluster.Transport{"dea-1": healthy(&calls, "dea-1"), "dea-2": failingHealth(&calls, "dea-2"),
			"dea-3": failingHealth(&calls, "dea-3"), "dea-4": healthy(&calls, "dea-4"), "core": healthy(&calls, "core")}
		err := x.Execute(context.Background(), run)
		var fe *StepFailedError
		var pe *PartialError
		if !errors.As(err, &fe) || errors.As(err, &pe) {
			t.Fatalf("budget %d, two DEAs failing: %v, want a failed run", budget, err)
		}
		if run.Status != "failed" {
			t.Errorf("budget %d: journal says %q", budget, run.Status)
		}
		last := "dea-2"
		if budget == 1 {
			last = "dea-3"
			if !strings.Contains(err.Error(), "node dea-2") || !strings.Contains(err.Error(), "node dea-3") {
				t.Errorf("budget 1: the error does not name both failed nodes: %v", err)
			}
		}
		if got := calls.of("core"); len(got) != 0 {
			t.Errorf("budget %d: the core went on after %s spent the budget: %v", budget, last, got)
		}
	}
}

// A node that cannot be reached interrupts the run; excluded, the run
// finishes the others and ends partial, and the exclusion reads back from
// the journal with who, where and why.
func TestExcludedNodeLetsTheRunFinish(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: fourDEAsAndCore()}
	x, run := startRun(t, plan)
	var calls callLog
	x.Transports = map[string]cluster.Transport{
		"dea-3": nodeFunc(func(ctx context.Context, op string, in any) error {
			calls.add("dea-3", op)
			if op == steps.OpStop {
				return &cluster.UnreachableError{Node: "dea-3", Op: op, Err: errors.New("connection refused")}
			}
			return nil
		}),
	}
	for _, n := range []string{"dea-1", "dea-2", "dea-4", "core"} {
		x.Transports[n] = healthy(&calls, n)
	}
	err := x.Execute(context.Background(), run)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Node != "dea-3" {
		t.Fatalf("Execute with dea-3 gone: %v, want interrupted at dea-3", err)
	}
	if err := CheckExclusion(run, Exclusion{Node: "core", Reason: "x"}); err == nil {
		t.Error("the core node could be excluded")
	}
	if err := CheckExclusion(run, Exclusion{Node: "dea-3"}); err == nil {
		t.Error("an exclusion without a reason was taken")
	}
	if err := CheckExclusion(run, Exclusion{Node: "dea-1", Reason: "x"}); err == nil {
		t.Error("dea-1, already done, could be excluded")
	}
	if err := Exclude(x.Journal, run, Exclusion{Node: "dea-3", Reason: "disk controller dead", By: "ops", Host: "bastion"}); err != nil {
		t.Fatal(err)
	}
	before := len(calls.of("dea-3"))
	err = x.Execute(context.Background(), run)
	var pe *PartialError
	if !errors.As(err, &pe) || len(pe.Excluded) != 1 || pe.Excluded[0].Node != "dea-3" || len(pe.Failed) != 0 {
		t.Fatalf("resumed with dea-3 excluded: %v, want partial with dea-3 excluded", err)
	}
	if !strings.Contains(err.Error(), "disk controller dead") || !strings.Contains(err.Error(), "ops@bastion") {
		t.Errorf("the summary does not say who excluded dea-3 and why: %v", err)
	}
	if got := calls.of("dea-3"); len(got) != before {
		t.Errorf("the excluded dea-3 was called again: %v", got[before:])
	}
	if !slices.Contains(calls.of("dea-4"), steps.OpUnretire) || !slices.Contains(calls.of("core"), steps.OpCommit) {
		t.Errorf("dea-4 or the core did not finish: %v / %v", calls.of("dea-4"), calls.of("core"))
	}
	again, j := reopen(t, x.Journal.Path())
	j.Close()
	if again.Status != RunPartial || len(again.Excluded) != 1 || again.Excluded[0].By != "ops" || again.Excluded[0].Host != "bastion" || again.Excluded[0].Time.IsZero() {
		t.Errorf("replayed: status %q, excluded %+v", again.Status, again.Excluded)
	}
}

// capacityNode answers capacity probes with its figures.
type capacityNode struct {
	name  string
	calls *callLog
	cap   *steps.DEACapacity
}

func (n capacityNode) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	n.calls.add(n.name, op)
	if op == steps.OpProbe {
		out.(*steps.Result).Probe = &steps.ProbeFacts{Capacity: n.cap}
	}
	return nil
}

// answersAfter answers as its node does once after is closed.
type answersAfter struct {
	after <-chan struct{}
	node  cluster.Transport
}

func (a answersAfter) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	<-a.after
	return a.node.Call(ctx, op, in, out, on)
}

// An excluded DEA is gone: the capacity check before a retirement neither
// asks it nor counts its room.
func TestExcludedDEANotCountedForCapacity(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: fourDEAsAndCore()}
	x, run := startRun(t, plan)
	if err := Exclude(x.Journal, run, Exclusion{Node: "dea-1", Reason: "gone", By: "ops", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	var calls callLog
	full := &steps.DEACapacity{MemoryTotalMB: 1024, MemoryUsedMB: 1024, Instances: []steps.AppInstance{{App: "a", MemoryMB: 1024}}}
	x.Transports = map[string]cluster.Transport{
		"dea-1": capacityNode{"dea-1", &calls, &steps.DEACapacity{MemoryTotalMB: 8192}}, // empty, but excluded
		"dea-2": capacityNode{"dea-2", &calls, &steps.DEACapacity{MemoryTotalMB: 1024, MemoryUsedMB: 512, Instances: []steps.AppInstance{{App: "shop", MemoryMB: 512}}}},
		"dea-3": capacityNode{"dea-3", &calls, full},
		"dea-4": capacityNode{"dea-4", &calls, full},
	}
	x.DEAs = []string{"dea-1", "dea-2", "dea-3", "dea-4"}
	err := x.deaRoomFor(context.Background(), run, "dea-2")
	if err == nil || !strings.Contains(err.Error(), "512 MB more") {
		t.Errorf("retiring dea-2 with only full DEAs left: %v, want no room", err)
	}
	if got := calls.of("dea-1"); len(got) != 0 {
		t.Errorf("the excluded dea-1 was asked for its capacity: %v", got)
	}
}

// The capacity check stops at the first answers that make room: a DEA of
// the batch that does not answer does not hold the retirement up until its
// probe times out (a minute), and its probe is cancelled, not left behind.
func TestCapacityCheckDoesNotWaitForASlowDEA(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: fourDEAsAndCore()}
	x, run := startRun(t, plan)
	var calls callLog
	hung := make(chan error, 1)
	asked := make(chan struct{})
	roomy := capacityNode{"dea-3", &calls, &steps.DEACapacity{MemoryTotalMB: 4096}}
	x.Transports = map[string]cluster.Transport{
		"dea-1": capacityNode{"dea-1", &calls, &steps.DEACapacity{MemoryTotalMB: 1024, MemoryUsedMB: 512, Instances: []steps.AppInstance{{App: "shop", MemoryMB: 512}}}},
		"dea-2": nodeFunc(func(ctx context.Context, op string, in any) error {
			close(asked)
			<-ctx.Done()
			hung <- ctx.Err()
			return ctx.Err()
		}),
		// dea-3 answers only once dea-2 has been asked, so that dea-2's
		// probe is out when the room is found (a probe not yet started
		// by then starts nothing at all).
		"dea-3": answersAfter{asked, roomy},
	}
	x.DEAs = []string{"dea-1", "dea-2", "dea-3"}
	if err := x.deaRoomFor(context.Background(), run, "dea-1"); err != nil {
		t.Fatalf("dea-3 is empty, dea-1's 512 MB fit on it: %v", err)
	}
	// The check does not wait for the cancelled probe to return; the
	// probe ends on the cancel, not on its minute's deadline.
	if err := <-hung; !errors.Is(err, context.Canceled) {
		t.Errorf("the silent dea-2's probe ended with %v, want cancelled once dea-3 had made room", err)
	}
}

// A DEA without figures of its own (a dea_ng with no capacity hook, a
// probe that failed) is not held back, as in preflight: its drain still
// waits for its instances. The run says so, and why, and asks no other DEA.
func TestRetiringADEAWithoutFiguresSaysSo(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: fourDEAsAndCore()}
	x, run := startRun(t, plan)
	logs := &logProgress{logs: map[string][]string{}}
	x.Progress = logs
	var calls callLog
	x.Transports = map[string]cluster.Transport{
		"dea-1": nodeFunc(func(ctx context.Context, op string, in any) error {
			return &cluster.AgentError{Node: "dea-1", Op: op, Message: "the capacity hook of dea_ng 3.4.1 printed \"oops\", not its JSON"}
		}),
		"dea-2": capacityNode{"dea-2", &calls, &steps.DEACapacity{MemoryTotalMB: 4096}},
	}
	x.DEAs = []string{"dea-1", "dea-2"}
	if err := x.deaRoomFor(context.Background(), run, "dea-1"); err != nil {
		t.Fatalf("dea-1 without figures: %v, want it not held back", err)
	}
	said := strings.Join(logs.logs["dea-1"], "\n")
	if !strings.Contains(said, "no capacity figures for DEA dea-1") || !strings.Contains(said, `printed "oops"`) {
		t.Errorf("the run did not say that dea-1 is retired unchecked, and why: %q", said)
	}
	if got := calls.of("dea-2"); len(got) != 0 {
		t.Errorf("dea-2 was asked for room for a DEA with no figures: %v", got)
	}
}

// Canaries go first in their role's turn, each alone; the other nodes of
// the role wait for them; the core is never one and still goes last.
func TestScheduleCanaries(t *testing.T) {
	p := planOf(docsCluster(), 4, func(string) int { return 1 })
	p.Canaries = 1
	slots := Simulate(p, StepCost)
	checkRules(t, p, slots)
	can := canaries(p)
	for _, want := range []string{"dea-1", "router-1"} {
		if !can[want] {
			t.Errorf("%s is not a canary: %v", want, can)
		}
	}
	if can["core"] {
		t.Error("the core node is a canary")
	}
	end := map[string]float64{}
	for _, s := range slots {
		end[s.Node] = s.End
	}
	for _, s := range slots {
		if can[s.Node] {
			for _, o := range slots {
				if o.Node != s.Node && o.Start < s.End && s.Start < o.End {
					t.Errorf("canary %s [%v,%v) overlaps %s [%v,%v)", s.Node, s.Start, s.End, o.Node, o.Start, o.End)
				}
			}
			continue
		}
		for c := range can {
			if sharedRedundantRole(nodePlan(p, s.Node), nodePlan(p, c), roleCounts(p.Nodes)) != "" && s.Start < end[c] {
				t.Errorf("%s started at %v, before its role's canary %s ended at %v", s.Node, s.Start, c, end[c])
			}
		}
	}
}

func nodePlan(p *Plan, name string) NodePlan {
	return p.Nodes[slices.IndexFunc(p.Nodes, func(np NodePlan) bool { return np.Node == name })]
}

// A canary that fails stops the run whatever the budget: no other node of
// its role is touched.
func TestFailedCanaryStopsTheRole(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 4, MaxFailures: 3, Canaries: 1, Nodes: fourDEAsAndCore()}
	for i := range plan.Nodes {
		for j := range plan.Nodes[i].Steps {
			plan.Nodes[i].Steps[j].Request.FromVersion = "3.4.1"
		}
	}
	x, run := startRun(t, plan)
	var calls callLog
	x.Transports = map[string]cluster.Transport{"dea-1": failingHealth(&calls, "dea-1")}
	for _, n := range []string{"dea-2", "dea-3", "dea-4", "core"} {
		x.Transports[n] = healthy(&calls, n)
	}
	err := x.Execute(context.Background(), run)
	var fe *StepFailedError
	if !errors.As(err, &fe) || fe.Node != "dea-1" || run.Status != "failed" {
		t.Fatalf("canary dea-1 failing: %v (journal %q), want the run failed at dea-1", err, run.Status)
	}
	for _, n := range []string{"dea-2", "dea-3", "dea-4", "core"} {
		if got := calls.of(n); len(got) != 0 {
			t.Errorf("%s was touched after its canary failed: %v", n, got)
		}
	}
}

// healthAfter is a node whose health hook turns bad after ok checks.
func healthAfter(calls *callLog, node string, ok int32) cluster.Transport {
	var n atomic.Int32
	return nodeFunc(func(ctx context.Context, op string, in any) error {
		calls.add(node, op)
		if op == steps.OpHealth && in.(steps.Request).Version == "3.4.2" && n.Add(1) > ok {
			return &cluster.AgentError{Node: node, Op: op, Message: "health hook exited 1"}
		}
		return nil
	})
}

// A component that passes its health step and falls over during the watch
// is caught: the node is rolled back. The watch is long (an hour): only
// the hook's answers end it.
func TestWatchCatchesALateFailure(t *testing.T) {
	nodes := []NodePlan{{Node: "dea-1", Roles: []string{"dea"}, Steps: deaSteps("3.4.2")}, {Node: "core", Roles: []string{"primary"}, Steps: fetchSteps(1)}}
	steps0 := nodes[0].Steps
	i := slices.IndexFunc(steps0, func(s Step) bool { return s.Op == steps.OpCommit })
	watch := Step{ID: "3.4.2/watch", Op: OpWatch, Release: "3.4.2", Request: steps.Request{Restart: []steps.RestartItem{{Component: "dea_ng", Version: "3.4.2"}}}}
	nodes[0].Steps = slices.Insert(steps0, i, watch)
	for j := range nodes[0].Steps {
		if nodes[0].Steps[j].Op != OpWatch {
			nodes[0].Steps[j].Request.Version = nodes[0].Steps[j].Version
		}
	}
	plan := &Plan{From: "3.4.1", To: "3.4.2", WatchTime: release.Duration(time.Hour), Nodes: nodes}
	x, run := startRun(t, plan)
	x.WatchInterval = time.Millisecond
	var calls callLog
	x.Transports = map[string]cluster.Transport{"dea-1": healthAfter(&calls, "dea-1", 3), "core": healthy(&calls, "core")}
	err := x.Execute(context.Background(), run)
	var fe *StepFailedError
	if !errors.As(err, &fe) || fe.Step != "3.4.2/watch" {
		t.Fatalf("Execute: %v, want the watch step failed", err)
	}
	if !strings.Contains(fe.Err, "dea_ng 3.4.2 turned unhealthy") || !strings.Contains(fe.Err, "1h0m0s watch") {
		t.Errorf("the failure does not say which component turned bad during the watch: %s", fe.Err)
	}
	if len(fe.RolledBack) == 0 || fe.RollbackErr != "" {
		t.Errorf("dea-1 not rolled back: %+v", fe)
	}
	if slices.Contains(calls.of("dea-1"), steps.OpCommit) {
		t.Error("dea-1 committed 3.4.2 though its watch failed")
	}
}

// A watch that stays healthy ends once its time has passed, and the node
// goes on.
func TestWatchPassesWhenHealthy(t *testing.T) {
	nodes := []NodePlan{{Node: "dea-1", Roles: []string{"dea"}, Steps: []Step{
		{ID: "3.4.2/watch", Op: OpWatch, Release: "3.4.2", Request: steps.Request{Restart: []steps.RestartItem{{Component: "dea_ng", Version: "3.4.2"}}}},
		{ID: "3.4.2/commit", Op: steps.OpCommit, Release: "3.4.2"}}}}
	plan := &Plan{From: "3.4.1", To: "3.4.2", WatchTime: release.Duration(20 * time.Millisecond), Nodes: nodes}
	x, run := startRun(t, plan)
	x.WatchInterval = time.Millisecond
	var calls callLog
	x.Transports = map[string]cluster.Transport{"dea-1": healthy(&calls, "dea-1")}
	start := time.Now()
	if err := x.Execute(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Errorf("the watch ended after %s, before its 20ms", time.Since(start))
	}
	if n := slices.Index(calls.of("dea-1"), steps.OpCommit); n < 2 {
		t.Errorf("committed after %d health checks, want the watch to keep asking: %v", n, calls.of("dea-1"))
	}
	if note := run.state("dea-1", "3.4.2/watch").Note; !strings.Contains(note, "healthy for the 20ms watch") {
		t.Errorf("watch note %q", note)
	}
}
