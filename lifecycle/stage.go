package lifecycle

import (
	"context"
	"fmt"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Stage puts every node's artifacts for an upgrade into its node cache
// ahead of the window: a journaled run of its own kind (rollout.KindStage)
// whose only steps are fetches, parallel nodes at once. The window's
// `sentinel upgrade VERSION` then finds each artifact in the node cache
// (the fetch step verifies it and moves nothing) and only unpacks.
func Stage(u UpgradeOptions, parallel int) *Job {
	job := Upgrade(u)
	job.Kind = "stage"
	job.Plan = func(ctx context.Context, r *Run) (*rollout.Plan, error) {
		u.SkipDownload = false
		plan, err := u.plan(ctx, r)
		if err != nil {
			return nil, err
		}
		return rollout.StagePlan(plan, parallel), nil
	}
	job.NothingToDo = func(r *Run) error {
		r.Printer.Textf("No node needs an artifact for %s: nothing to stage.\n", r.Plan.To)
		return nil
	}
	job.Question = func(r *Run) (string, string) {
		n := len(r.Plan.WorkingNodes())
		return fmt.Sprintf("Stage %s for %s on %d nodes (nothing else changes)? [y/N] ", preflight.FormatBytes(r.Plan.StagedBytes()), r.Plan.To, n),
			fmt.Sprintf("no terminal to ask for confirmation: pass --yes to stage %s on %d nodes", r.Plan.To, n)
	}
	job.Started = func(r *Run) {
		if !r.Printer.JSON() {
			r.Printer.Textf("Run %s: staging %s (%s -> %s) on %d nodes, %s\n", r.ID, preflight.FormatBytes(r.Plan.StagedBytes()),
				r.Plan.From, r.Plan.To, len(r.Plan.WorkingNodes()), r.Plan.StageAtOnce())
		}
	}
	job.Summary = func(p *rollout.Plan) string { return "stage " + p.From + " -> " + p.To }
	return job
}

// stagedMessage is what a finished staging run says (its resume too),
// with the window's command reading the channel where staging did.
func stagedMessage(r *Run) string {
	return fmt.Sprintf("Staged %s on %d nodes. In the window, `%s` unpacks from the node caches.\n",
		r.Plan.To, len(r.Plan.WorkingNodes()), CommandLine(windowCommand(r)))
}

// windowCommand is the upgrade that follows a staging: from the cache
// node if staging read it (named unless the cluster file's cache section
// does), else not from the cluster file's cache node, which may not hold
// the release; with the mirrors and registry settings staging was given
// on its command line, so the window reads the same sources.
func windowCommand(r *Run) []string {
	cmd := []string{"sentinel", "upgrade", r.Plan.To}
	hasCache := r.Inventory.Cache != nil
	switch {
	case r.Plan.CacheURL != "" && !hasCache && r.CacheAddr != "":
		cmd = append(cmd, "--cache-ip", r.CacheAddr)
	case (r.Plan.CacheURL == "" || r.NoCache) && hasCache:
		cmd = append(cmd, "--no-cache")
	}
	return append(cmd, r.sourceFlags()...)
}
