package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// The restart of a node, alone (`sentinel restart`) or as the upgrade's
// closing restart (the docs' "kato restart on all nodes" before maintenance
// mode is turned off). How it relates to the node's own restart after its
// commit:
//   - the core node is upgraded last and restarted after its commit: that
//     restart is its closing restart, and it is not restarted again;
//   - every node upgraded before the core was restarted after its own
//     commit, while the core still ran the old release; the closing restart
//     restarts it once more, after the core, which is the reason;
//   - nodes the run left as they were, excluded, or rolled back within the
//     failure budget are not restarted.
// DEAs are retired (their apps moved, after the capacity check) before a
// restart and unretired after; the schedule's rules keep every redundant
// role up.

// KindRestart is the Plan.Kind of `sentinel restart`.
const KindRestart = "restart"

// RestartSteps are the steps that restart a node's components, with a
// retirement around them on a DEA; prefix keeps their ids apart from the
// upgrade's ("closing/").
func RestartSteps(prefix string, n cluster.Node, items []steps.RestartItem, drain time.Duration) []Step {
	var out []Step
	dea := n.HasRole(release.RoleDEA)
	if dea {
		out = append(out, Step{ID: prefix + "retire", Op: steps.OpRetire, Request: steps.Request{DrainDeadline: release.Duration(drain)}})
	}
	out = append(out, Step{ID: prefix + "restart", Op: steps.OpRestart, Request: steps.Request{Restart: items}})
	if dea {
		out = append(out, Step{ID: prefix + "unretire", Op: steps.OpUnretire})
	}
	return out
}

// restartItems are the node's components of the manifest, at the versions
// its current links point at (a patch switched in but not restarted is
// started so), or the manifest's when facts are nil.
func restartItems(n cluster.Node, m *release.Manifest, f *steps.Facts) []steps.RestartItem {
	var items []steps.RestartItem
	for _, c := range m.Components {
		if !c.AppliesTo(n.Roles) {
			continue
		}
		v := c.Version
		if f != nil {
			cur, ok := f.Current[c.Name]
			if !ok {
				continue // not installed: nothing to restart
			}
			v = cur
		}
		items = append(items, steps.RestartItem{Component: c.Name, Version: v, Hooks: c.Hooks})
	}
	return items
}

// planClosing adds the closing restart of every node upgraded before the
// core to the plan.
func planClosing(p *Plan, inv *cluster.Inventory, target *release.Manifest, drain time.Duration) {
	for _, np := range p.Nodes {
		n, ok := inv.Node(np.Node)
		if np.Skip != "" || isCore(np) || !ok {
			continue
		}
		p.Closing = append(p.Closing, NodePlan{Node: np.Node, Roles: np.Roles, From: target.Version,
			Steps: RestartSteps("closing/", n, restartItems(n, target, nil), drain)})
	}
}

// RestartInput is what `sentinel restart` plans from.
type RestartInput struct {
	Inventory  *cluster.Inventory
	Facts      map[string]*steps.Facts
	Unanswered map[string]error
	Roles      []string // only nodes with one of these roles (--role)
	Only       []string // only these nodes (--node)
	Drain      time.Duration
	Update     Update
}

// PlanRestart restarts the selected nodes' components in place, in role
// order under the schedule's rules, the core node last: what follows
// `patch install --no-restart`, or a restart asked for on its own.
func PlanRestart(ctx context.Context, ch Channel, in RestartInput) (*Plan, error) {
	if err := checkSelection(in.Inventory, in.Only, in.Roles); err != nil {
		return nil, err
	}
	plan := &Plan{Kind: KindRestart}
	sel := selection{only: in.Only, roles: in.Roles, facts: in.Facts, unanswered: in.Unanswered}
	err := planInPlace(ctx, ch, plan, Order(in.Inventory.Nodes), sel, func(n cluster.Node, items []steps.RestartItem) []Step {
		return RestartSteps("", n, items, in.Drain)
	})
	if err != nil {
		return nil, err
	}
	if plan.NothingToDo() {
		return nil, &UsageError{Msg: "no node of the cluster file matches --role and --node: nothing to restart"}
	}
	in.Update.apply(plan)
	plan.WatchTime = 0 // a restart has no watch step
	return plan, nil
}

// checkSelection refuses a --node the cluster file lacks or an unknown --role.
func checkSelection(inv *cluster.Inventory, only, roles []string) error {
	for _, name := range only {
		if _, ok := inv.Node(name); !ok {
			return &UsageError{Msg: fmt.Sprintf("--node %s: the cluster file has no such node", name)}
		}
	}
	for _, r := range roles {
		if !release.KnownRole(r) {
			return &UsageError{Msg: fmt.Sprintf("--role: unknown role %q", r)}
		}
	}
	return nil
}

// selection is which nodes a run in place (restart, maintain) takes, and
// what they said of themselves.
type selection struct {
	only, roles []string
	facts       map[string]*steps.Facts
	unanswered  map[string]error
}

// planInPlace adds to plan, for each node in order, the steps stepsFor
// makes from the components it runs on its own release; the nodes outside
// the selection are skipped.
func planInPlace(ctx context.Context, ch Channel, plan *Plan, ordered []cluster.Node, sel selection, stepsFor func(cluster.Node, []steps.RestartItem) []Step) error {
	for _, n := range ordered {
		np := NodePlan{Node: n.Name, Roles: n.Roles}
		selected := (len(sel.only) == 0 || slices.Contains(sel.only, n.Name)) && (len(sel.roles) == 0 || slices.ContainsFunc(sel.roles, n.HasRole))
		f := sel.facts[n.Name]
		switch {
		case !selected:
			np.Skip = "not selected"
		case f == nil:
			return fmt.Errorf("node %s: cannot ask what it runs: %v; bring it back, or leave it out with --node", n.Name, sel.unanswered[n.Name])
		case f.Record == nil:
			return &UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", n.Name, f.RecordError)}
		}
		if np.Skip == "" {
			m, err := ch.Manifest(ctx, f.Record.Release)
			if err != nil {
				return err
			}
			np.From = f.Record.Release
			np.Steps = stepsFor(n, restartItems(n, m, f))
			if n.HasRole(release.RolePrimary) {
				plan.From, plan.To = np.From, np.From
			}
		}
		plan.Nodes = append(plan.Nodes, np)
	}
	return nil
}
