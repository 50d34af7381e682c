package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// keptOnResume marks the flags that `sentinel recover` carries from a
// logged command to the resume command it runs.
const keptOnResume = "sentinel/kept-on-resume"

func newUpgradeCmd(stopping <-chan struct{}) *cobra.Command {
	uf := &upgradeFlags{}
	run, u := &uf.run, &uf.u
	cmd := &cobra.Command{
		Use:   "upgrade [VERSION]",
		Short: "Upgrade every node of the cluster to a release (the latest when VERSION is omitted)",
		Long: `Upgrade every node of the cluster to VERSION, or to the newest release the
channel offers.

Each node goes through: version check, download and sha256 verification of
every artifact into the node cache, backup of <root>/etc, then for each
component in manifest order: install (unpack), stop, migrate, switch, start,
health; then node.json records the release and the node's components are
restarted. Nodes go in role order (dea, controller, router, base, primary),
the core node last.

Every step is written to a journal first. If the run is interrupted (Ctrl-C,
a crash, a lost node), 'sentinel upgrade --resume' finishes it. If a
component fails to migrate, start or become healthy, the components this run
replaced on that node go back to their previous release and the run stops
with exit code 1; 'sentinel status' shows the failed step and the hook's
output.

Where artifacts come from: the cache node the cluster file's cache section
names (or --cache-ip; fill it first with --download-only), else the
channel, through the cluster file's mirrors (or --mirror, an oci:// registry
or an http(s) mirror, tried in order) first. --no-cache skips the cache
node. On a cluster whose mirrors include a registry, --download-only prints the
'sentinel channel copy' command that fills them instead.

--stage fetches every node's artifacts into its node cache ahead of the
maintenance window (a run of its own; nothing else on the nodes changes):
the window's upgrade then finds them there, even with every source gone,
and only unpacks.`,
		Example: `  sentinel upgrade --dry-run                                # show the plan, change nothing
  sentinel upgrade 3.4.2 --yes                              # upgrade without asking
  sentinel upgrade --resume                                 # finish an interrupted run
  sentinel upgrade 3.4.2 --download-only --cache-ip 10.0.0.1  # fill the cache node now...
  sentinel upgrade 3.4.2 --cache-ip 10.0.0.1 --yes            # ...upgrade from it later, even offline
  sentinel upgrade 3.4.2 --stage --yes                      # put every node's artifacts in its node cache now...
  sentinel upgrade 3.4.2 --yes                              # ...and in the window only unpack`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := uf.job(cmd, args)
			if err != nil {
				return err
			}
			return uf.run.do(cmd, stopping, job)
		},
	}
	f := cmd.Flags()
	run.add(cmd, true)
	f.BoolVar(&u.Force, "force", false, "reinstall the target release on nodes already on it")
	f.BoolVar(&run.o.Resume, "resume", false, "finish the unfinished run instead of starting a new one")
	f.BoolVar(&run.o.DryRun, "dry-run", false, "print the plan (nodes, components, versions, steps) and change nothing")
	f.BoolVar(&uf.downloadOnly, "download-only", false, "only fill the cache node (--cache-ip) with every artifact and document the upgrade needs; change no node. On a cluster whose mirrors include a registry it changes nothing and prints the 'sentinel channel copy' command that fills them")
	f.BoolVar(&uf.stage, "stage", false, "only put every node's artifacts into its node cache, verified, ahead of the window (a journaled run of its own, resumable with --resume); nothing else on the nodes changes")
	f.IntVar(&uf.stageParallel, "stage-parallel", rollout.DefaultStageParallel, "with --stage: how many nodes fetch at once (each fetches one artifact at a time, so no source serves more transfers than this)")
	f.BoolVar(&u.SkipDownload, "skip-download", false, "download nothing: use only what the node caches hold, and refuse before any change if something is missing or damaged")
	f.BoolVar(&run.o.SkipDrain, "skip-drain", false, "do not wait for DEAs to move their apps away before upgrading them (their apps stop meanwhile); also with --resume")
	f.IntVar(&uf.nodeRetries, "node-retries", 4, "how many times a step is tried again, waiting 1s, 2s, 4s..., when its node cannot be reached, before the run stops (resumable)")
	f.DurationVar(&u.DrainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
	f.StringSliceVar(&u.RoleOrder, "role-order", nil, "order of roles, e.g. router,dea,controller (default dea,controller,router,base,primary); the core node is always last")
	f.StringSliceVar(&u.Only, "node", nil, "upgrade only these nodes (NAME[,NAME...]); the others are left as they are")
	f.StringVar(&run.o.Update.MaxInFlight, "max-in-flight", "", "how many nodes may be upgraded at once, N or a percentage of the nodes (25%); nodes that share a role two or more nodes have never go together (so such a role always has a node up, and DEAs go one at a time), and the core node goes last, alone. Also with --resume (default 1, or the cluster file's update.max_in_flight)")
	f.StringVar(&run.o.Update.Canaries, "canaries", "", "how many nodes of each redundant role go first, each alone, before the others of the role (default 0, or the cluster file's update.canaries)")
	f.StringVar(&run.o.Update.WatchTime, "watch-time", "", "how long every component of a node must stay healthy after its start before the node counts as done, e.g. 30s (default 0s, or the cluster file's update.watch_time)")
	f.StringVar(&run.o.Update.MaxFailures, "max-failures", "", "how many nodes may fail (each is rolled back) while the run goes on with the others, N or a percentage (10%); never the core or a canary (default 0, or the cluster file's update.max_failures)")
	f.StringArrayVar(&run.o.Exclude, "exclude-node", nil, "with --resume: leave this node out of the unfinished run (repeatable), journaled with --reason; the run finishes the others and a later run catches it up")
	f.StringVar(&run.o.Update.ClosingRestart, "closing-restart", "", "true: after the core, restart every node upgraded before it, rolling, DEAs retired around it (the docs' \"kato restart on all nodes\"); the core's own restart after its commit counts as its closing restart (default false, or the cluster file's update.closing_restart)")
	f.Lookup("closing-restart").NoOptDefVal = "true"
	f.BoolVar(&run.o.NoMaintenance, "no-maintenance", false, "leave maintenance mode alone, though the cluster file's maintenance: block says how to switch it (the run otherwise turns it on before its first change and off after its last)")
	f.StringVar(&run.o.ExcludeReason, "reason", "", "why the --exclude-node nodes are left out (kept in the journal with who and from where)")
	f.BoolVar(&run.o.UpdateSelf, "update-self", false, "update sentinel itself to the newest signed build the channel offers (also a development build), then go on with the run in the new build; without VERSION or --resume, only update")
	for _, name := range []string{"max-in-flight", "node-retries", "drain-timeout", "skip-drain", "no-cache", "no-self-update"} {
		_ = f.SetAnnotation(name, keptOnResume, []string{"upgrade"})
	}
	return cmd
}

// upgradeFlags are upgrade's flags.
type upgradeFlags struct {
	run          runFlags
	u            lifecycle.UpgradeOptions
	downloadOnly bool
	nodeRetries  int

	stage         bool
	stageParallel int
}

// job checks the flags together and says what the run is.
func (uf *upgradeFlags) job(cmd *cobra.Command, args []string) (*lifecycle.Job, error) {
	run, u := &uf.run, &uf.u
	if len(args) == 1 {
		u.Target = args[0]
		if _, err := release.ParseVersion(u.Target); err != nil {
			return nil, usagef("%q is not a release version (expected something like 3.4.2): %v", u.Target, err)
		}
	}
	if err := checkUpdateFlags(&run.o); err != nil {
		return nil, err
	}
	if err := checkDuration("drain-timeout", u.DrainTimeout, maxDrainTimeout); err != nil {
		return nil, err
	}
	if uf.nodeRetries < 0 {
		return nil, usagef("--node-retries must be 0 or more, not %d", uf.nodeRetries)
	}
	run.o.UnreachableRetries = uf.nodeRetries
	if uf.nodeRetries == 0 {
		run.o.UnreachableRetries = -1 // none
	}
	for _, n := range u.Only {
		if strings.TrimSpace(n) == "" {
			return nil, usagef("--node takes node names from the cluster file; an empty one names none")
		}
	}
	switch {
	case run.o.Resume && (u.Target != "" || u.Force || run.o.DryRun || uf.downloadOnly || u.SkipDownload || len(u.RoleOrder) > 0 || len(u.Only) > 0):
		return nil, usagef("--resume finishes the unfinished run as it was planned: it takes no VERSION, --force, --dry-run, --download-only, --skip-download, --role-order or --node (only --cache-ip or --no-cache, to change where the artifacts left to fetch come from, --skip-drain, --max-in-flight, and --exclude-node with --reason)")
	case run.o.NoCache && uf.downloadOnly:
		return nil, usagef("--no-cache and --download-only contradict each other: download-only fills the cache node")
	case uf.downloadOnly && u.SkipDownload:
		return nil, usagef("--download-only and --skip-download contradict each other")
	case uf.stage && (run.o.Resume || uf.downloadOnly || u.SkipDownload):
		return nil, usagef("--stage starts a staging run: it takes no --resume (`sentinel upgrade --resume` finishes an interrupted one), --download-only or --skip-download")
	case uf.stageParallel < 1:
		return nil, usagef("--stage-parallel must be 1 or more, not %d", uf.stageParallel)
	case cmd.Flags().Changed("stage-parallel") && !uf.stage:
		return nil, usagef("--stage-parallel says how many nodes stage at once: it goes with --stage (an upgrade's nodes at once is --max-in-flight)")
	case uf.downloadOnly:
		return lifecycle.DownloadOnly(*u), nil
	case uf.stage:
		return lifecycle.Stage(*u, uf.stageParallel), nil
	}
	return lifecycle.Upgrade(*u), nil
}

// checkUpdateFlags refuses bad --canaries, --watch-time, --max-in-flight,
// --max-failures, --exclude-node and --reason before anything is read.
func checkUpdateFlags(o *lifecycle.Options) error {
	if _, err := o.Update.Parse(func(f string) string { return "--" + f }); err != nil {
		return usagef("%v", err)
	}
	u := o.Update
	switch {
	case o.Resume && (u.Canaries != "" || u.WatchTime != "" || u.MaxFailures != "" || u.ClosingRestart != "" || o.NoMaintenance):
		return usagef("--resume keeps the run's own --canaries, --watch-time, --max-failures, --closing-restart and --no-maintenance (journaled with its plan); only --max-in-flight may change")
	case len(o.Exclude) > 0 && !o.Resume:
		return usagef("--exclude-node leaves a node out of an unfinished run: it goes with --resume (a new run with --node NAME,... upgrades only the nodes named)")
	case len(o.Exclude) > 0 && strings.TrimSpace(o.ExcludeReason) == "":
		return usagef("--exclude-node needs --reason TEXT: the journal keeps why a node was left behind")
	case o.ExcludeReason != "" && len(o.Exclude) == 0:
		return usagef("--reason goes with --exclude-node")
	}
	for _, n := range o.Exclude {
		if strings.TrimSpace(n) == "" {
			return usagef("--exclude-node takes a node name from the cluster file")
		}
	}
	return nil
}
