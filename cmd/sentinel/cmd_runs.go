package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/runctl"
	"github.com/sentinel-paas/sentinel/ui"
)

func newRunsCmd() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the cluster's runs: id, command, who ran it, from where, when, and how it ended",
		Long: `List every run the cluster's state directory holds, oldest first: its id,
what it did, the command, the user and host that started it (and the SSH
client's address when over SSH), when it started and ended, its result
(succeeded, failed, interrupted, running) and the exit code it last ended
with. 'sentinel status RUN-ID' shows one run step by step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := rf.inventory()
			if err != nil {
				return err
			}
			list, err := runctl.List(rollout.Runs{Dir: inv.State()}, runctl.For(inv.State()))
			if err != nil {
				return err
			}
			if rf.output == ui.JSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"runs": orEmpty(list)})
			}
			printRuns(cmd.OutOrStdout(), list)
			return nil
		},
	}
	cmd.Flags().StringVar(&rf.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().StringVarP(&rf.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func orEmpty(l []runctl.Summary) []runctl.Summary {
	if l == nil {
		return []runctl.Summary{}
	}
	return l
}

func printRuns(w io.Writer, list []runctl.Summary) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No runs yet.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tWHAT\tBY\tFROM\tSTARTED\tRESULT\tEXIT\tCOMMAND")
	for _, s := range list {
		by, from, exit := orDash(s.User), orDash(s.Host), "-"
		if s.Client != "" {
			from += " (" + s.Client + ")"
		}
		if s.ExitCode != nil {
			exit = fmt.Sprint(*s.ExitCode)
		}
		started := "-"
		if !s.Started.IsZero() {
			started = s.Started.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, runWhat(s), by, from, started, s.Result, exit, strings.Join(s.Command, " "))
	}
	tw.Flush()
}

// runWhat says what a run did, as `sentinel status` says it.
func runWhat(s runctl.Summary) string {
	kind := s.Kind
	if kind == "upgrade" {
		kind = ""
	}
	return lifecycle.PlanSummary(kind, s.From, s.To, s.Patches)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
