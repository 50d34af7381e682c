package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
)

// UpgradeOptions are what only an upgrade (and its download-only run) takes.
type UpgradeOptions struct {
	Target       string // "" for the channel's newest release
	Force        bool
	SkipDownload bool
	DrainTimeout time.Duration
	RoleOrder    []string
	Only         []string
}

func orLatest(v string) string {
	if v == "" {
		return "VERSION"
	}
	return v
}

// Upgrade moves the cluster to a release (and finishes any unfinished run
// with --resume, a patch run too).
func Upgrade(u UpgradeOptions) *Job {
	return &Job{
		Kind:   "upgrade",
		Target: u.Target,
		Fill:   fmt.Sprintf("sentinel upgrade %s --download-only --cache-ip HOST", orLatest(u.Target)),
		Advice: rollout.Advice{Resume: "sentinel upgrade --resume", Rerun: "sentinel upgrade"},
		Plan:   u.plan,
		NothingToDo: func(r *Run) error {
			r.Printer.Textf("Every node is already on %s: nothing to do (use --force to reinstall).\n", r.Plan.To)
			return nil
		},
		Question: func(r *Run) (string, string) {
			return fmt.Sprintf("Upgrade to %s? [y/N] ", r.Plan.To),
				fmt.Sprintf("no terminal to ask for confirmation: pass --yes to upgrade %d nodes to %s", len(r.Plan.Nodes), r.Plan.To)
		},
		Started: func(r *Run) {
			if !r.Printer.JSON() {
				r.Printer.Textf("Run %s: upgrading %s from %s to %s\n", r.ID, r.Inventory.Name, r.Plan.From, r.Plan.To)
			}
		},
		Finished: func(r *Run, err error) error {
			r.logEnd(err)
			if err != nil || r.Printer.JSON() {
				return err
			}
			if r.Plan.Kind == rollout.KindMaintain {
				r.Printer.Textf("Maintenance of %s finished. `sentinel status` shows every node.\n", strings.Join(r.Plan.WorkingNodes(), ", "))
				return nil
			}
			if r.Plan.Kind == rollout.KindRestart {
				r.Printer.Textf("Restart of %s finished. `sentinel status` shows every node.\n", strings.Join(r.Plan.WorkingNodes(), ", "))
				return nil
			}
			if line := r.level.fetchedLine(); line != "" {
				r.Printer.Textf("%s", line)
			}
			if r.Plan.Kind == rollout.KindStage {
				r.Printer.Textf("%s", stagedMessage(r))
				return nil
			}
			if r.Plan.Kind != "" { // `upgrade --resume` finishes a patch run too
				r.Printer.Textf("Patch %s of %s finished. `sentinel patch status` shows every node.\n", patches.Verb(r.Plan.Kind), strings.Join(r.Plan.Patches, ", "))
				return nil
			}
			r.Printer.Textf("Cluster upgraded to %s. `sentinel status` shows every node.\n", r.Plan.To)
			return nil
		},
		Resumable: func(r *Run, last *rollout.Run) error {
			if last == nil {
				return usagef("there is no run to resume in %s: start one with `sentinel upgrade`", r.Inventory.State())
			}
			return nil
		},
		Unfinished: func(*rollout.Run) string { return "Pass --resume to finish it" },
		Done: func(last *rollout.Run) string {
			if last.Plan.Kind == rollout.KindStage {
				return "the artifacts of " + last.Plan.To + " are staged on the nodes"
			}
			return "the cluster is on " + last.Plan.To
		},
		Summary:      func(p *rollout.Plan) string { return p.From + " -> " + p.To },
		ResumeSource: func(f source.Fetch) string { return "; artifacts from " + f.String() },
	}
}

// plan reads the channel and the nodes, and plans the upgrade.
func (u UpgradeOptions) plan(ctx context.Context, r *Run) (*rollout.Plan, error) {
	ch, err := r.Channel(ctx)
	if err != nil {
		return nil, err
	}
	update, err := r.UpdatePolicy()
	if err != nil {
		return nil, err
	}
	if r.tuf.Kept() && !u.SkipDownload {
		// No source answers: nothing can be downloaded, so the run is one
		// from the node caches, each node's artifacts checked there before
		// any change (as with --skip-download).
		r.warn("no source answers: the run downloads nothing and takes every artifact from the node caches (staged with --stage), checked before any change")
		u.SkipDownload = true
	}
	unanswered := r.GatherSomeFacts(ctx)
	plan, err := rollout.MakePlan(ctx, channelAdapter{ch}, rollout.PlanInput{Inventory: r.Inventory, Facts: r.Facts, Target: u.Target, Force: u.Force, RunID: r.ID,
		CacheURL: r.Source.Cache, SkipDownload: u.SkipDownload, DrainDeadline: u.DrainTimeout, RoleOrder: u.RoleOrder, Only: u.Only,
		Unanswered: unanswered, Update: update, ClosingRestart: update.ClosingRestart})
	if err != nil {
		return nil, r.Source.Explain(err)
	}
	// The docs' first and last steps: maintenance mode on, then off.
	plan.Maintenance = r.Inventory.Maintenance != nil && !r.NoMaintenance
	if !u.SkipDownload {
		if err := r.Source.CheckArtifactSizes(ctx, plan.Artifacts()); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// channelAdapter gives rollout the channel operations it plans with.
type channelAdapter struct{ *release.Channel }

func (c channelAdapter) Path(from, to string) ([]string, error) { return c.Index.Path(from, to) }
func (c channelAdapter) Latest() string                         { return c.Index.Latest() }
