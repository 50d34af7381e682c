package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// maxRebootTimeout bounds --reboot-timeout: a typo of hours for minutes.
const maxRebootTimeout = 24 * time.Hour

func newMaintainCmd(stopping <-chan struct{}) *cobra.Command {
	rf := &runFlags{}
	o := &lifecycle.MaintainOptions{}
	var nodeRetries int
	cmd := &cobra.Command{
		Use:   "maintain ACTION",
		Short: "Run an action of the cluster file on every node, one at a time, and reboot each (OS security updates)",
		Long: `Run ACTION, a command of the cluster file's actions: block, as root on the
selected nodes (all, --role, --node), one node at a time: the node's
components stopped, the action run with the run's proxy in its
environment, the node rebooted (--reboot always, if-required: when
/var/run/reboot-required exists under the node root, or never), the run
waiting for it to come back (SSH with the host key it knows, the agent
answering), every component started and healthy. DEAs are retired first
(after the capacity check) and unretired after; a redundant role is never
all down; the core node goes last, and the machine sentinel runs on after
it. Journaled: 'sentinel maintain --resume' finishes an interrupted run.`,
		Example: `  sentinel maintain os-security-updates --dry-run
  sentinel maintain os-security-updates --yes
  sentinel maintain os-security-updates --role dea --reboot always --yes
  sentinel maintain --resume
  sentinel maintain --resume --exclude-node dea-2 --reason "did not boot"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Action = args[0]
			}
			if err := checkMaintainFlags(&rf.o, o, nodeRetries); err != nil {
				return err
			}
			rf.o.NoSelfUpdate = true // maintenance installs no release
			return rf.do(cmd, stopping, lifecycle.Maintain(*o))
		},
	}
	f := cmd.Flags()
	rf.addCommon(f)
	f.BoolVarP(&rf.o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&rf.o.Resume, "resume", false, "finish the unfinished maintenance run (after a crash, a node that did not come back, or the reboot of this machine)")
	f.BoolVar(&rf.o.DryRun, "dry-run", false, "print the order, the steps and which roles go down, and change nothing")
	f.BoolVar(&rf.o.Detach, "detach", false, "once confirmed, go on in the background ('sentinel attach' follows it)")
	f.StringSliceVar(&o.Roles, "role", nil, "only the nodes with one of these roles (ROLE[,ROLE...])")
	f.StringSliceVar(&o.Only, "node", nil, "only these nodes (NAME[,NAME...])")
	f.StringVar(&o.Reboot, "reboot", steps.RebootIfRequired, "reboot after the action: always, if-required (the node's /var/run/reboot-required exists) or never")
	f.DurationVar(&o.RebootTimeout, "reboot-timeout", rollout.DefaultRebootTimeout, "how long a rebooted node may take to come back before the run stops (exit 75, resumable)")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
	f.BoolVar(&rf.o.SkipDrain, "skip-drain", false, "do not wait for DEAs to move their apps away (their apps stop meanwhile)")
	f.IntVar(&nodeRetries, "node-retries", 4, "how many times a step is tried again when its node cannot be reached, before the run stops (resumable)")
	f.StringVar(&rf.o.Update.MaxInFlight, "max-in-flight", "", "how many nodes at once, N or a percentage (the schedule's rules still hold; default 1)")
	f.StringVar(&rf.o.Update.Canaries, "canaries", "", "how many nodes of each redundant role go first, each alone")
	f.StringVar(&rf.o.Update.WatchTime, "watch-time", "", "accepted for symmetry with upgrade; maintenance has no watch step")
	f.StringVar(&rf.o.Update.MaxFailures, "max-failures", "", "how many nodes may fail (their components are started again) while the run goes on, N or a percentage")
	f.StringVar(&rf.ignore, "ignore-preflight-errors", "", "preflight checks whose failures are only warnings: NAME,... or all")
	f.StringArrayVar(&rf.o.Exclude, "exclude-node", nil, "with --resume: leave this node out of the unfinished run (repeatable), with --reason")
	f.StringVar(&rf.o.ExcludeReason, "reason", "", "why the --exclude-node nodes are left out (kept in the journal)")
	return cmd
}

// checkMaintainFlags refuses bad input before anything is read.
func checkMaintainFlags(ro *lifecycle.Options, o *lifecycle.MaintainOptions, nodeRetries int) error {
	switch {
	case ro.Resume && (o.Action != "" || ro.DryRun || len(o.Roles) > 0 || len(o.Only) > 0):
		return usagef("--resume finishes the unfinished run as it was planned: it takes no ACTION, --dry-run, --role or --node (only --max-in-flight, --skip-drain and --exclude-node with --reason)")
	case !ro.Resume && o.Action == "":
		return usagef("which action? `sentinel maintain ACTION` runs one of the cluster file's actions: block")
	}
	switch o.Reboot {
	case steps.RebootAlways, steps.RebootIfRequired, steps.RebootNever:
	default:
		return usagef("--reboot %q: want always, if-required or never", o.Reboot)
	}
	for _, v := range append(append([]string(nil), o.Roles...), o.Only...) {
		if strings.TrimSpace(v) == "" {
			return usagef("--role and --node take names; an empty one names none")
		}
	}
	if err := checkDuration("reboot-timeout", o.RebootTimeout, maxRebootTimeout); err != nil {
		return err
	}
	if err := checkDuration("drain-timeout", o.DrainTimeout, maxDrainTimeout); err != nil {
		return err
	}
	if nodeRetries < 0 {
		return usagef("--node-retries must be 0 or more, not %d", nodeRetries)
	}
	ro.UnreachableRetries = nodeRetries
	if nodeRetries == 0 {
		ro.UnreachableRetries = -1
	}
	return checkUpdateFlags(ro)
}
