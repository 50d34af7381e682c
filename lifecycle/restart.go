package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
)

// RestartOptions are what `sentinel restart` takes.
type RestartOptions struct {
	Roles        []string // --role
	Only         []string // --node
	DrainTimeout time.Duration
}

// Restart restarts the selected nodes' components where they are, DEAs
// retired around it, redundant roles kept up, the core last: what follows
// `patch install --no-restart`, or a restart on its own. It is journaled
// and resumable like an upgrade (`sentinel upgrade --resume`).
func Restart(o RestartOptions) *Job {
	return &Job{
		Kind:          rollout.KindRestart,
		SkipPreflight: true, // nothing is installed: only the nodes' answers matter
		Advice:        rollout.Advice{Resume: "sentinel upgrade --resume", Rerun: "sentinel restart"},
		Plan: func(ctx context.Context, r *Run) (*rollout.Plan, error) {
			ch, err := r.Channel(ctx)
			if err != nil {
				return nil, err
			}
			update, err := r.UpdatePolicy()
			if err != nil {
				return nil, err
			}
			unanswered := r.GatherSomeFacts(ctx)
			return rollout.PlanRestart(ctx, channelAdapter{ch}, rollout.RestartInput{Inventory: r.Inventory, Facts: r.Facts, Unanswered: unanswered,
				Roles: o.Roles, Only: o.Only, Drain: o.DrainTimeout, Update: update})
		},
		Question: func(r *Run) (string, string) {
			n := len(r.Plan.WorkingNodes())
			return fmt.Sprintf("Restart the components of %d node(s) (%s)? [y/N] ", n, strings.Join(r.Plan.WorkingNodes(), ", ")),
				fmt.Sprintf("no terminal to ask for confirmation: pass --yes to restart %d node(s)", n)
		},
		Started: func(r *Run) {
			if !r.Printer.JSON() {
				r.Printer.Textf("Run %s: restarting %s on %s\n", r.ID, strings.Join(r.Plan.WorkingNodes(), ", "), r.Inventory.Name)
			}
		},
		Finished: func(r *Run, err error) error {
			r.logEnd(err)
			if err == nil && !r.Printer.JSON() {
				r.Printer.Textf("Restarted %s. `sentinel status` shows every node.\n", strings.Join(r.Plan.WorkingNodes(), ", "))
			}
			return err
		},
		Resumable: func(r *Run, last *rollout.Run) error {
			return usagef("sentinel restart starts a new run; an unfinished one goes on with `sentinel upgrade --resume`")
		},
		Unfinished:   func(*rollout.Run) string { return "Finish it first with `sentinel upgrade --resume`" },
		Done:         func(*rollout.Run) string { return "its nodes were restarted" },
		Summary:      func(p *rollout.Plan) string { return "restart of " + strings.Join(p.WorkingNodes(), ", ") },
		ResumeSource: func(source.Fetch) string { return "" },
	}
}
