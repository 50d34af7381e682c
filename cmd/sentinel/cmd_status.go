package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/ui"
)

func newStatusCmd() *cobra.Command {
	var (
		clusterFile, output string
		allSteps, watch     bool
		interval            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [RUN-ID]",
		Short: "Show the current or last run (or RUN-ID) per node and step, and each node's component versions",
		Long: `Show the current or last run, or the run RUN-ID ('sentinel runs' lists them):
its command, state, and per node the steps done, the step it stopped at, and
the failed step with its hook's output. Then each node's components: the
release its current link points at and the one node.json records. --watch
shows it again every --interval while a run is running, and stops once it
is not.

The exit code says how the run stands, for scripts: 0 succeeded (or no run
yet); 1 failed; 4 done without the nodes excluded; 5 done with nodes
rolled back within the failure budget; 75 interrupted (resumable) or still
running.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			if cmd.Flags().Changed("interval") && !watch {
				return usagef("--interval goes with --watch")
			}
			if err := checkDuration("interval", interval, time.Hour); watch && err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			inv, err := loadInventory(clusterFile)
			if err != nil {
				return err
			}
			tr, err := dialAll(inv)
			if err != nil {
				return err
			}
			defer cluster.CloseAll(tr)
			w := cmd.OutOrStdout()
			var report lifecycle.StatusReport
			if !watch {
				if report, err = lifecycle.Status(cmd.Context(), inv, tr, id); err == nil {
					err = showStatus(w, output, report, allSteps, false)
				}
			} else {
				report, err = watchStatus(cmd.Context(), inv, tr, w, output, allSteps, interval, id)
			}
			if err != nil {
				return err
			}
			return runStanding(report.Run)
		},
	}
	cmd.Flags().StringVar(&clusterFile, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().BoolVar(&allSteps, "steps", false, "list every step of the run, not only a summary")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every --interval until the run is no longer running (Ctrl-C to stop watching; the run goes on); with --output json, one JSON document per line per refresh")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch refreshes")
	return cmd
}

func showStatus(w io.Writer, output string, report lifecycle.StatusReport, allSteps, oneLine bool) error {
	if output == ui.JSON {
		enc := json.NewEncoder(w)
		if !oneLine {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(report)
	}
	ui.PrintStatus(w, report, allSteps)
	return nil
}

// watchStatus shows the status again every interval, until the run is no
// longer running: the screen redrawn on a terminal, one report after the
// other otherwise.
func watchStatus(ctx context.Context, inv *cluster.Inventory, tr map[string]cluster.Transport, w io.Writer, output string, allSteps bool, interval time.Duration, id string) (lifecycle.StatusReport, error) {
	tty := output == ui.Text && ui.IsTerminal(w)
	for {
		var buf bytes.Buffer
		report, err := lifecycle.Status(ctx, inv, tr, id)
		if err != nil {
			return report, err
		}
		if output == ui.Text {
			if tty {
				buf.WriteString("\033[H\033[2J") // home, clear: one screen, redrawn
			}
			fmt.Fprintf(&buf, "%s (every %s)\n\n", time.Now().Format(time.TimeOnly), interval)
		}
		if err := showStatus(&buf, output, report, allSteps, true); err != nil {
			return report, err
		}
		if output == ui.Text && !tty {
			buf.WriteString("\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return report, err
		}
		if report.Run == nil || report.Run.Status != "running" {
			return report, nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return report, nil
		case <-t.C:
		}
	}
}

// runStanding is status's exit code: how the run stands.
func runStanding(run *lifecycle.RunReport) error {
	if run == nil {
		return nil
	}
	switch run.Status {
	case "succeeded":
		return nil
	case "failed":
		return &silentExit{code: exitFailed}
	case "partial":
		if len(run.FailedNodes) > 0 {
			return &silentExit{code: exitFailedWithinBudget}
		}
		return &silentExit{code: exitExcluded}
	}
	return &silentExit{code: exitInterrupted} // interrupted, running
}
