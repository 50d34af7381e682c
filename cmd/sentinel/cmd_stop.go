package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/runctl"
	"github.com/sentinel-paas/sentinel/ui"
)

func newStopCmd() *cobra.Command {
	var (
		rf     = runFlags{output: ui.Text}
		noWait bool
	)
	cmd := &cobra.Command{
		Use:   "stop [RUN-ID]",
		Short: "Ask the running run to stop at its next safe point (it ends interrupted, resumable)",
		Long: `Ask the run that is running (RUN-ID, or the current one) to stop once the
step under way has finished, as a Ctrl-C in its terminal would: SIGTERM to
the process the run lock names. The run ends interrupted (exit 75), and
'sentinel upgrade --resume' (or 'patch install --resume') goes on with it.
A rollback under way is not stopped. stop waits until the run's process has
ended, unless --no-wait.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := rf.inventory()
			if err != nil {
				return err
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			runs := rollout.Runs{Dir: inv.State()}
			cur, err := runctl.RequestStop(runs, id)
			var nr *runctl.NotRunningError
			if errors.As(err, &nr) {
				return usagef("%s", nr.Msg)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if noWait {
				fmt.Fprintf(out, "Asked run %s (pid %d) to stop after the step under way.\n", cur.ID, cur.PID)
				return nil
			}
			fmt.Fprintf(out, "Asked run %s (pid %d) to stop after the step under way; waiting for it...\n", cur.ID, cur.PID)
			if err := runctl.WaitEnded(cmd.Context(), runs); err != nil {
				return err
			}
			run, _, err := runs.Read(runs.PathOf(cur.ID))
			if err != nil {
				return err
			}
			if run.Finished() {
				fmt.Fprintf(out, "Run %s ended before it could stop: %s.\n", cur.ID, run.Status)
				return nil
			}
			fmt.Fprintf(out, "Run %s stopped: %s at %s. `sentinel upgrade --resume` goes on with it.\n", cur.ID, run.Status, run.Where())
			return nil
		},
	}
	cmd.Flags().StringVar(&rf.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once asked, without waiting for the run to stop")
	return cmd
}
