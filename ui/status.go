package ui

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/rollout"
)

// PrintStatus shows the last run and every node's components.
func PrintStatus(w io.Writer, r lifecycle.StatusReport, allSteps bool) {
	if r.Run == nil {
		fmt.Fprintln(w, "No run yet.")
	} else {
		run := r.Run
		resumeCmd := lifecycle.ResumeCommand(run.Kind)
		fmt.Fprintf(w, "Run %s: %s, %s\n", run.ID, lifecycle.PlanSummary(run.Kind, run.From, run.To, run.Patches), strings.ToUpper(run.Status))
		fmt.Fprintf(w, "  command: %s\n", lifecycle.CommandLine(run.Command))
		fmt.Fprintf(w, "  started: %s", run.Started.Local().Format(time.DateTime))
		if run.Ended != nil {
			fmt.Fprintf(w, ", ended: %s (%s)", run.Ended.Local().Format(time.DateTime), run.Ended.Sub(run.Started).Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		switch {
		case run.Where == "":
		case run.Status == "running": // its own process is on it
			fmt.Fprintf(w, "  at: %s\n", strings.Replace(run.Where, "(started, not finished)", "(running)", 1))
		default:
			fmt.Fprintf(w, "  stopped at: %s; `%s` continues\n", run.Where, resumeCmd)
		}
		if len(run.Binaries) > 1 {
			fmt.Fprintf(w, "  sentinel builds: %s\n", strings.Join(run.Binaries, ", then "))
		}
		if run.TornTail != "" {
			fmt.Fprintf(w, "  journal: torn last record, %s\n", run.TornTail)
		}
		for _, x := range run.Excluded {
			fmt.Fprintf(w, "  excluded: %s by %s@%s at %s: %s\n", x.Node, x.By, x.Host, x.Time.Local().Format(time.DateTime), x.Reason)
		}
		if len(run.FailedNodes) > 0 {
			fmt.Fprintf(w, "  failed and rolled back: %s\n", strings.Join(run.FailedNodes, ", "))
		}
		if run.Error != "" && run.Status != "running" {
			fmt.Fprintf(w, "  error: %s\n", run.Error)
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		header := false
		counts := map[string]map[string]int{}
		for _, s := range run.Steps {
			if counts[s.Node] == nil {
				counts[s.Node] = map[string]int{}
			}
			counts[s.Node][s.State]++
			if allSteps || (s.State != rollout.StateDone && s.State != rollout.StatePending) || s.Rollback {
				if !header {
					fmt.Fprintln(tw, "NODE\tSTEP\tSTATE\tTIME\tNOTE")
					header = true
				}
				note := s.Note
				if s.Error != "" {
					note = s.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Node, s.Step, s.State, stepTime(s), note)
			}
		}
		tw.Flush()
		for _, s := range run.Steps {
			if s.Output != "" {
				fmt.Fprintf(w, "\noutput of %s on %s:\n%s\n", s.Step, s.Node, Indent(s.Output))
			}
		}
		if header {
			fmt.Fprintln(w)
		}
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLES\tRELEASE\tSTEPS\tAT")
		for _, n := range r.Nodes {
			at := "done"
			switch {
			case n.Behind != "":
				at = "behind: " + n.Behind
			case n.StepsTotal == 0:
				at = "not in this run"
			case n.Step != "":
				at = n.Step + " (" + n.StepState + ")"
			}
			if c := counts[n.Node]; c[rollout.StateFailed] > 0 {
				at += fmt.Sprintf(", %d failed", c[rollout.StateFailed])
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", n.Node, strings.Join(n.Roles, ","), orDash(n.Release), n.StepsDone, n.StepsTotal, at)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRELEASE\tCOMPONENT\tCURRENT\tRECORDED")
	for _, n := range r.Nodes {
		if n.Unreachable != "" {
			fmt.Fprintf(tw, "%s\t?\t\t\tunreachable: %s\n", n.Node, n.Unreachable)
			continue
		}
		names := map[string]bool{}
		for c := range n.Current {
			names[c] = true
		}
		for c := range n.Recorded {
			names[c] = true
		}
		var sorted []string
		for c := range names {
			sorted = append(sorted, c)
		}
		sort.Strings(sorted)
		for _, c := range sorted {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node, n.Release, c, orDash(n.Current[c]), orDash(n.Recorded[c]))
		}
	}
	tw.Flush()
}

func stepTime(s lifecycle.StepReport) string {
	if s.Started == nil {
		return "-"
	}
	if s.Ended == nil {
		return s.Started.Local().Format(time.TimeOnly)
	}
	return s.Ended.Sub(*s.Started).Round(time.Millisecond).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
