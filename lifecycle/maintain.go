package lifecycle

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// MaintainOptions are what `sentinel maintain` takes.
type MaintainOptions struct {
	Action        string   // the cluster file's actions: entry ("" with --resume)
	Roles         []string // --role
	Only          []string // --node
	Reboot        string   // always, if-required, never
	RebootTimeout time.Duration
	DrainTimeout  time.Duration
}

// Maintain runs an operator's action on the selected nodes one at a time
// (or as --max-in-flight allows), with a reboot after it and the wait for
// the node to come back: the product docs' "apply security updates on all
// cluster nodes, one node at a time, and reboot each", under the rollout's
// rules. Journaled and resumable with `sentinel maintain --resume`.
func Maintain(o MaintainOptions) *Job {
	action := o.Action
	if action == "" { // --resume: the journal has it
		action = "ACTION"
	}
	return &Job{
		Kind:          rollout.KindMaintain,
		SkipPreflight: true, // nothing is installed; the nodes answer when planned
		Advice:        rollout.Advice{Resume: "sentinel maintain --resume", Rerun: "sentinel maintain " + action},
		Plan:          o.plan,
		DryRun:        o.dryRun,
		Stage:         o.preflight,
		Question: func(r *Run) (string, string) {
			n := len(r.Plan.WorkingNodes())
			return fmt.Sprintf("Run %s on %d node(s) one at a time (%s), stopping their components and rebooting them (%s)? [y/N] ", o.Action, n, strings.Join(r.Plan.WorkingNodes(), ", "), o.Reboot),
				fmt.Sprintf("no terminal to ask for confirmation: pass --yes to run %s on %d node(s)", o.Action, n)
		},
		Started: func(r *Run) {
			if !r.Printer.JSON() {
				r.Printer.Textf("Run %s: maintaining %s on %s\n", r.ID, strings.Join(r.Plan.WorkingNodes(), ", "), r.Inventory.Name)
			}
		},
		Finished: func(r *Run, err error) error {
			r.logEnd(err)
			if err == nil && !r.Printer.JSON() {
				r.Printer.Textf("Maintenance of %s finished. `sentinel status` shows every node.\n", strings.Join(r.Plan.WorkingNodes(), ", "))
			}
			return err
		},
		Resumable: func(r *Run, last *rollout.Run) error {
			if last == nil {
				return usagef("there is no run to resume in %s: start one with `sentinel maintain ACTION`", r.Inventory.State())
			}
			if last.Plan.Kind != rollout.KindMaintain {
				return usagef("the unfinished run %s is not a maintenance run: finish it with `sentinel upgrade --resume`", last.ID)
			}
			return nil
		},
		Unfinished: func(last *rollout.Run) string {
			if last.Plan.Kind == rollout.KindMaintain {
				return "Finish it first with `sentinel maintain --resume`"
			}
			return "Finish it first with `sentinel upgrade --resume`"
		},
		Done:         func(*rollout.Run) string { return "its nodes were maintained" },
		Summary:      func(p *rollout.Plan) string { return "maintenance of " + strings.Join(p.WorkingNodes(), ", ") },
		ResumeSource: func(source.Fetch) string { return "" },
	}
}

func (o MaintainOptions) plan(ctx context.Context, r *Run) (*rollout.Plan, error) {
	a, ok := r.Inventory.Actions[o.Action]
	if !ok {
		return nil, usagef("unknown action %q: the cluster file %s declares %s", o.Action, r.Inventory.Path(), declared(r.Inventory.Actions))
	}
	ch, err := r.Channel(ctx)
	if err != nil {
		return nil, err
	}
	update, err := r.UpdatePolicy()
	if err != nil {
		return nil, err
	}
	unanswered := r.GatherSomeFacts(ctx)
	return rollout.PlanMaintain(ctx, channelAdapter{ch}, rollout.MaintainInput{Inventory: r.Inventory, Facts: r.Facts, Unanswered: unanswered,
		Action: steps.ActionRequest{Name: o.Action, Command: a.Command, Timeout: release.Duration(a.Timeout)},
		Reboot: steps.RebootRequest{Policy: o.Reboot, Command: r.Inventory.RebootCommand, Timeout: release.Duration(o.RebootTimeout)},
		Roles:  o.Roles, Only: o.Only, Drain: o.DrainTimeout, Update: update, Self: SelfNode(r.Inventory)})
}

func declared(actions map[string]cluster.Action) string {
	if len(actions) == 0 {
		return "none (add an actions: block, e.g. `actions: {os-security-updates: \"apt-get update && unattended-upgrades -d\"}`)"
	}
	var names []string
	for n := range actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// SelfNode is the cluster's node this process runs on: the one reached by
// the local transport at root "/", or whose address is one of this
// machine's addresses other than loopback (a lab's nodes all live on
// loopback addresses of one machine: none of them is "this machine").
func SelfNode(inv *cluster.Inventory) string {
	var mine []net.IP
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				mine = append(mine, ipn.IP)
			}
		}
	}
	for _, n := range inv.Nodes {
		if n.Transport == cluster.TransportLocal && n.Root == "/" {
			return n.Name
		}
		if ip := net.ParseIP(n.Address); ip != nil && slices.ContainsFunc(mine, ip.Equal) {
			return n.Name
		}
	}
	return ""
}

// dryRun shows the order, what each node goes through, and which
// roles go down (JSON: the plan).
func (o MaintainOptions) dryRun(r *Run) error {
	p, pr := r.Plan, r.Printer
	if pr.JSON() {
		if err := pr.Plan(p); err != nil {
			return err
		}
		return errDone
	}
	pr.Textf("Dry run, nothing changed: %s on %d node(s), in this order, reboot %s (back within %s):\n", o.Action, len(p.WorkingNodes()), o.Reboot, o.RebootTimeout)
	for i, name := range p.WorkingNodes() {
		for _, np := range p.Nodes {
			if np.Node == name {
				pr.Textf("  %d. %-14s [%s] %s\n", i+1, name, strings.Join(np.Roles, ","), maintainSummary(np))
			}
		}
	}
	pr.Textf("Downtime by role:\n")
	for _, d := range p.Downtime() {
		note := fmt.Sprintf("%d nodes, one at a time: never all down", len(d.Nodes))
		switch {
		case len(d.Down) > 0:
			note = "down while " + strings.Join(d.Down, ", ") + " is maintained (the role's only node)"
		case d.Role == release.RoleDEA:
			note = fmt.Sprintf("%d DEAs, each retired first (its apps moved after a capacity check): apps with two or more instances stay up", len(d.Nodes))
		}
		pr.Textf("  %-18s %s\n", d.Role, note)
	}
	return errDone
}

// maintainSummary says in a few words what a node goes through.
func maintainSummary(np rollout.NodePlan) string {
	var parts []string
	comps := 0
	for _, s := range np.Steps {
		switch s.Op {
		case steps.OpRetire:
			parts = append(parts, "retire")
		case steps.OpStop:
			comps++
		case steps.OpAction:
			parts = append(parts, fmt.Sprintf("stop %d components", comps), "action")
		case steps.OpReboot:
			parts = append(parts, "reboot", "wait for it", fmt.Sprintf("start and check %d components", comps))
		case steps.OpUnretire:
			parts = append(parts, "unretire")
		}
	}
	return strings.Join(parts, ", ")
}

// preflight is maintenance's own (the upgrade's looks at disk for
// artifacts and at releases, which a maintenance run leaves alone).
func (o MaintainOptions) preflight(ctx context.Context, r *Run) error {
	in := rollout.PreflightInput{Inventory: r.Inventory, Transports: r.Transports, Plan: r.Plan,
		LockHeldByUs: r.lock != nil, Runs: r.Runs, Ignore: r.Ignore, Proxy: operatorProxy()}
	rep := rollout.MaintainPreflight(ctx, in, r.Inventory.Actions[o.Action].Mirror)
	for _, res := range rep.Results {
		if res.Status != "PASS" {
			r.Log.Warn("preflight", zap.String("node", res.Node), zap.String("check", res.Check), zap.String("status", res.Status), zap.Strings("messages", res.Messages))
		}
	}
	if err := r.Printer.Preflight(rep); err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return &PreflightError{Err: err}
	}
	return nil
}
