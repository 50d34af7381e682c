package main

import (
	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/runctl"
	"github.com/sentinel-paas/sentinel/ui"
)

func newAttachCmd() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "attach [RUN-ID]",
		Short: "Follow a running run (the current one by default) with its live display; Ctrl-C only detaches",
		Long: `Show what a run in another process does (one started with --detach, or in
another terminal), as that run shows it: what it did since it started (or
last resumed), then each step as it comes, until it ends. Ctrl-C stops
following; the run goes on.

It reads the run's events file (<state_dir>/runs/RUN-ID.events). When the
run ends while attached, attach exits with the run's exit code (0, 1, 75);
detached with Ctrl-C it exits 0.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := rf.inventory()
			if err != nil {
				return err
			}
			runs, dir := rollout.Runs{Dir: inv.State()}, runctl.For(inv.State())
			id, err := runToFollow(runs, args)
			if err != nil {
				return err
			}
			show := ui.NewFollower(rf.output, cmd.OutOrStdout())
			end, err := runctl.Follow(cmd.Context(), dir, runs, id, func(line []byte, _ runctl.Entry) { show.Line(line) })
			show.Close()
			switch {
			case err != nil:
				return err
			case end != nil && end.ExitCode != nil && *end.ExitCode != 0:
				return &silentExit{code: *end.ExitCode}
			case end != nil:
				return nil
			case cmd.Context().Err() != nil:
				show.Notef("Detached from run %s; it goes on (`sentinel attach %s` to follow it again).", id, id)
				return nil
			}
			show.Notef("Run %s is no longer running and did not record its end (killed?): `sentinel status %s` shows where it stopped.", id, id)
			return runStandingOf(runs, id)
		},
	}
	cmd.Flags().StringVar(&rf.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().StringVarP(&rf.output, "output", "o", "text", "output format: text (the run's display) or json (its events, as --output json prints them)")
	return cmd
}

// runToFollow is the run named, or the one running now, or the last one.
func runToFollow(runs rollout.Runs, args []string) (string, error) {
	if len(args) == 1 {
		if runs.PathOf(args[0]) == "" {
			return "", usagef("no run %q: `sentinel runs` lists the runs", args[0])
		}
		return args[0], nil
	}
	if cur, err := runctl.Current(runs); err != nil || cur != nil {
		if cur != nil {
			return cur.ID, nil
		}
		return "", err
	}
	last, _, err := runs.Latest()
	if err != nil {
		return "", err
	}
	if last == nil {
		return "", usagef("there is no run to attach to: start one with `sentinel upgrade --detach`")
	}
	return last.ID, nil
}

// runStandingOf is the exit code of how run id stands, as status gives it.
func runStandingOf(runs rollout.Runs, id string) error {
	run, _, err := runs.Read(runs.PathOf(id))
	if err != nil {
		return err
	}
	switch run.Status {
	case "succeeded":
		return nil
	case "failed":
		return &silentExit{code: exitFailed}
	}
	return &silentExit{code: exitInterrupted}
}
