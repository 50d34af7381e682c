package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// oneRelease is a channel of one release whose components apply to every
// role.
type oneRelease struct{ m *release.Manifest }

func (c oneRelease) Manifest(context.Context, string) (*release.Manifest, error) { return c.m, nil }
func (c oneRelease) Path(string, string) ([]string, error)                       { return nil, nil }
func (c oneRelease) Latest() string                                              { return c.m.Version }

func maintainInput(self string) MaintainInput {
	inv := &cluster.Inventory{Nodes: []cluster.Node{
		{Name: "core", Roles: []string{release.RolePrimary}},
		{Name: "ops", Roles: []string{release.RoleRouter}},
		{Name: "dea-1", Roles: []string{release.RoleDEA}},
		{Name: "router-2", Roles: []string{release.RoleRouter}},
	}}
	facts := map[string]*steps.Facts{}
	for _, n := range inv.Nodes {
		facts[n.Name] = &steps.Facts{Record: &steps.Record{Release: "3.4.1"}, Current: map[string]string{"a": "3.4.1", "b": "3.4.1"}}
	}
	return MaintainInput{Inventory: inv, Facts: facts, Self: self,
		Action: steps.ActionRequest{Name: "up", Command: "true"}, Reboot: steps.RebootRequest{Policy: steps.RebootAlways}}
}

var everyRole = []string{release.RolePrimary, release.RoleRouter, release.RoleDEA}

var twoComponents = oneRelease{&release.Manifest{Version: "3.4.1", Components: []release.Component{
	{Name: "a", Version: "3.4.1", Roles: everyRole}, {Name: "b", Version: "3.4.1", Roles: everyRole}}}}

// Role order, the core last, and the orchestrator's own node after it;
// each node's steps stop, act, reboot, wait, start; a DEA retired around.
func TestPlanMaintainOrderAndSteps(t *testing.T) {
	p, err := PlanMaintain(t.Context(), twoComponents, maintainInput("ops"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.WorkingNodes(), []string{"dea-1", "router-2", "core", "ops"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	var ids []string
	for _, s := range p.Nodes[0].Steps {
		ids = append(ids, s.ID)
	}
	want := []string{"retire", "stop/b", "stop/a", "action", "reboot", "wait-back", "start/a", "health/a", "start/b", "health/b", "unretire"}
	if !slices.Equal(ids, want) {
		t.Errorf("DEA steps %v, want %v", ids, want)
	}
	last := p.Nodes[len(p.Nodes)-1]
	for _, s := range last.Steps {
		if s.Op == steps.OpReboot && !s.Request.Reboot.Self {
			t.Error("the orchestrator's own node's reboot is not marked as its own")
		}
	}
	if p.Kind != KindMaintain {
		t.Errorf("kind %q", p.Kind)
	}
}

// A node whose action failed gets back what the run stopped: only the
// components it stopped, started in order, and the DEA unretired.
func TestMaintainRecovery(t *testing.T) {
	p, err := PlanMaintain(t.Context(), twoComponents, maintainInput(""))
	if err != nil {
		t.Fatal(err)
	}
	np := p.Nodes[0]
	run := &Run{Plan: p, Steps: map[string]map[string]*StepState{np.Node: {}}}
	for _, id := range []string{"retire", "stop/b", "stop/a"} {
		run.Steps[np.Node][id] = &StepState{State: StateDone}
	}
	run.Steps[np.Node]["action"] = &StepState{State: StateFailed}
	var ids []string
	for _, s := range rollbackSteps(run, np, "") {
		ids = append(ids, s.ID)
	}
	if want := []string{"recover/start/a", "recover/health/a", "recover/start/b", "recover/health/b", "recover/unretire"}; !slices.Equal(ids, want) {
		t.Errorf("recovery %v, want %v", ids, want)
	}
}

// logProgress keeps what the executor says per node.
type logProgress struct {
	quietProgress
	mu   sync.Mutex
	logs map[string][]string
}

func (p *logProgress) Logf(node, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs[node] = append(p.logs[node], fmt.Sprintf(format, args...))
}

// The machine the run runs on reboots last, and the run says, before,
// what to run once it is back; a node that does not come back within its
// deadline interrupts the run (resumable) naming it, and nothing after it
// starts.
func TestMaintainExecuteOwnNodeAndDeadline(t *testing.T) {
	in := maintainInput("ops")
	in.Reboot.Timeout = release.Duration(50 * time.Millisecond)
	p, err := PlanMaintain(t.Context(), twoComponents, in)
	if err != nil {
		t.Fatal(err)
	}
	x, run := startRun(t, p)
	prog := &logProgress{logs: map[string][]string{}}
	x.Progress, x.SkipDrain, x.Advice = prog, true, Advice{Resume: "sentinel maintain --resume"}
	var mu sync.Mutex
	var order []string
	x.Transports = map[string]cluster.Transport{}
	for _, name := range []string{"core", "ops", "dea-1", "router-2"} {
		x.Transports[name] = nodeFunc(func(context.Context, string, any) error {
			mu.Lock()
			defer mu.Unlock()
			if len(order) == 0 || order[len(order)-1] != name {
				order = append(order, name)
			}
			return nil
		})
	}
	if err := x.Execute(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dea-1", "router-2", "core", "ops"}; !slices.Equal(order, want) {
		t.Errorf("nodes went %v, want %v (the own node after the core)", order, want)
	}
	said := func(node string) bool {
		return slices.ContainsFunc(prog.logs[node], func(s string) bool { return strings.Contains(s, "run `sentinel maintain --resume`") })
	}
	if !said("ops") || said("core") || said("dea-1") {
		t.Errorf("the own node's reboot notice: %v", prog.logs)
	}

	p, err = PlanMaintain(t.Context(), twoComponents, in)
	if err != nil {
		t.Fatal(err)
	}
	x, run = startRun(t, p)
	x.SkipDrain = true
	var after atomic.Int32
	x.Transports = map[string]cluster.Transport{
		"dea-1": nodeFunc(func(_ context.Context, op string, _ any) error {
			if op == steps.OpBootState {
				return &cluster.UnreachableError{Node: "dea-1", Op: op, Err: errors.New("connection refused")}
			}
			return nil
		}),
		"router-2": nodeFunc(func(context.Context, string, any) error { after.Add(1); return nil }),
		"core":     nodeFunc(func(context.Context, string, any) error { after.Add(1); return nil }),
		"ops":      nodeFunc(func(context.Context, string, any) error { after.Add(1); return nil }),
	}
	err = x.Execute(t.Context(), run)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Node != "dea-1" || !strings.Contains(err.Error(), "did not come back from its reboot within 50ms") {
		t.Fatalf("a node not back: %v", err)
	}
	if after.Load() != 0 {
		t.Errorf("%d calls to the nodes after dea-1", after.Load())
	}
}
