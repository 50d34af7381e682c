package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// Rolling node maintenance (`sentinel maintain ACTION`): per node, a DEA
// retired first, every component stopped, the operator's action, a reboot
// (always, if the node asks, or never), the wait for the node to come back,
// every component started and healthy, the DEA unretired. The schedule's
// rules hold as for an upgrade. An action or reboot that fails is a failed
// node: its components are started again and a DEA unretired (there is no
// release to roll back to), and the failure budget decides whether the run
// goes on. A node that does not come back within the deadline is
// unreachable: the run stops, resumable, and may be finished without it
// (--exclude-node).

// KindMaintain is the Plan.Kind of `sentinel maintain`.
const KindMaintain = "maintain"

// OpWaitBack is the orchestrator's own step that waits for a rebooted node
// to come back: its agent answers over the node's transport (SSH checks the
// host key it knows) and the reboot it asked for has happened.
const OpWaitBack = "wait-back"

// DefaultRebootTimeout is how long a node may take to come back.
const DefaultRebootTimeout = 10 * time.Minute

// waitBackInterval is how often a rebooting node is asked whether it is back.
const waitBackInterval = 500 * time.Millisecond

// MaintainInput is what `sentinel maintain` plans from.
type MaintainInput struct {
	Inventory  *cluster.Inventory
	Facts      map[string]*steps.Facts
	Unanswered map[string]error
	Action     steps.ActionRequest
	Reboot     steps.RebootRequest
	Roles      []string
	Only       []string
	Drain      time.Duration
	Update     Update
	// Self is the node the orchestrator runs on ("": none of the cluster's):
	// it goes last, after the core.
	Self string
}

// PlanMaintain plans the action on the selected nodes in role order, the
// core node, then the orchestrator's own node, last.
func PlanMaintain(ctx context.Context, ch Channel, in MaintainInput) (*Plan, error) {
	if err := checkSelection(in.Inventory, in.Only, in.Roles); err != nil {
		return nil, err
	}
	plan := &Plan{Kind: KindMaintain, Last: in.Self}
	ordered := Order(in.Inventory.Nodes)
	if i := slices.IndexFunc(ordered, func(n cluster.Node) bool { return n.Name == in.Self }); i >= 0 {
		self := ordered[i]
		ordered = append(slices.Delete(ordered, i, i+1), self)
	}
	sel := selection{only: in.Only, roles: in.Roles, facts: in.Facts, unanswered: in.Unanswered}
	err := planInPlace(ctx, ch, plan, ordered, sel, func(n cluster.Node, items []steps.RestartItem) []Step {
		reboot := in.Reboot
		reboot.Self = n.Name == in.Self
		return MaintainSteps(n, items, in.Action, reboot, in.Drain)
	})
	if err != nil {
		return nil, err
	}
	if plan.NothingToDo() {
		return nil, &UsageError{Msg: "no node of the cluster file matches --role and --node: nothing to maintain"}
	}
	in.Update.apply(plan)
	plan.WatchTime = 0
	return plan, nil
}

// MaintainSteps are one node's maintenance steps.
func MaintainSteps(n cluster.Node, items []steps.RestartItem, action steps.ActionRequest, reboot steps.RebootRequest, drain time.Duration) []Step {
	var out []Step
	dea := n.HasRole(release.RoleDEA)
	if dea {
		out = append(out, Step{ID: "retire", Op: steps.OpRetire, Request: steps.Request{DrainDeadline: release.Duration(drain)}})
	}
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		out = append(out, Step{ID: "stop/" + it.Component, Op: steps.OpStop, Component: it.Component, Version: it.Version,
			Request: steps.Request{Component: it.Component, Hooks: it.Hooks}})
	}
	out = append(out,
		Step{ID: "action", Op: steps.OpAction, Request: steps.Request{Action: &action}},
		Step{ID: "reboot", Op: steps.OpReboot, Request: steps.Request{Reboot: &reboot}},
		Step{ID: "wait-back", Op: OpWaitBack, Request: steps.Request{Reboot: &reboot}})
	out = append(out, startSteps("", items)...)
	if dea {
		out = append(out, Step{ID: "unretire", Op: steps.OpUnretire})
	}
	return out
}

func startSteps(prefix string, items []steps.RestartItem) []Step {
	var out []Step
	for _, it := range items {
		req := steps.Request{Component: it.Component, Version: it.Version, Hooks: it.Hooks}
		for _, op := range []string{steps.OpStart, steps.OpHealth} {
			out = append(out, Step{ID: prefix + op + "/" + it.Component, Op: op, Component: it.Component, Version: it.Version, Request: req})
		}
	}
	return out
}

// maintainRecovery brings a node whose maintenance failed back into
// service: every component the run stopped, or tried to stop, started and
// checked, and a DEA retired by the run unretired.
func maintainRecovery(run *Run, np NodePlan) []Step {
	var items []steps.RestartItem
	for _, s := range np.Steps {
		if s.Op == steps.OpStop && run.state(np.Node, s.ID).State != StatePending {
			items = append(items, steps.RestartItem{Component: s.Component, Version: s.Version, Hooks: s.Request.Hooks})
		}
	}
	slices.Reverse(items) // stopped newest first: started in the plan's order
	out := startSteps("recover/", items)
	for _, s := range np.Steps {
		if s.Op == steps.OpRetire && run.state(np.Node, s.ID).State != StatePending {
			out = append(out, Step{ID: "recover/unretire", Op: steps.OpUnretire})
		}
	}
	return out
}

// waitBack asks the node, until the deadline, whether it is back from the
// reboot it asked for. A node still away at the deadline is unreachable:
// the run stops, resumable.
func (x *Executor) waitBack(ctx context.Context, node string, s Step) (steps.Result, error) {
	deadline := DefaultRebootTimeout
	if s.Request.Reboot != nil {
		deadline = s.Request.Reboot.Timeout.Or(DefaultRebootTimeout)
	}
	wctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	t := time.NewTicker(waitBackInterval)
	defer t.Stop()
	var last error
	away := false
	for {
		var res steps.Result
		err := x.Transports[node].Call(wctx, steps.OpBootState, steps.Request{}, &res, nil)
		switch {
		case err == nil && !res.Rebooting:
			if away {
				return steps.Result{Changed: true, Note: "back from its reboot"}, nil
			}
			return steps.Result{Note: "its agent answers, no reboot pending"}, nil
		case err == nil:
			last = errors.New("its agent answers, but the reboot it asked for has not happened yet")
		default:
			last = err
			if !away {
				x.Progress.Logf(node, "node %s is away (rebooting); waiting up to %s for it to come back", node, deadline)
			}
			away = true
		}
		select {
		case <-ctx.Done():
			return steps.Result{}, ctx.Err()
		case <-x.Stopping:
			return steps.Result{}, &InterruptedError{Node: node, Step: s.ID, Reason: "stopped by the operator while waiting for the node to come back"}
		case <-wctx.Done():
			return steps.Result{}, &cluster.UnreachableError{Node: node, Op: OpWaitBack,
				Err: fmt.Errorf("did not come back from its reboot within %s (last: %v); once it is back, `sentinel maintain --resume` goes on, or leave it out with `sentinel maintain --resume --exclude-node %s --reason TEXT`", deadline, last, node)}
		case <-t.C:
		}
	}
}
