package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

type statusOptions struct {
	cluster  string
	allSteps bool
	output   string
	watch    bool
	interval time.Duration
}

func newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the current or last run per node and step, and each node's component versions",
		Long: `Show the current or last run: its command, state, and per node the steps
done, the step it stopped at, and the failed step with its hook's output.
Then each node's components: the release its current link points at and the
one node.json records. --watch shows it again every --interval while a run
is running, and stops once it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("interval") && !o.watch {
				return usagef("--interval goes with --watch")
			}
			if o.watch {
				return watchStatus(cmd.Context(), o, cmd.OutOrStdout())
			}
			return runStatus(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().BoolVar(&o.allSteps, "steps", false, "list every step of the run, not only a summary")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", false, "refresh every --interval until the run is no longer running (Ctrl-C to stop watching; the run goes on); with --output json, one JSON document per line per refresh")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "how often --watch refreshes")
	return cmd
}

// watchStatus shows the status again every interval, until the run is no
// longer running: the screen redrawn on a terminal, one report after the
// other otherwise.
func watchStatus(ctx context.Context, o statusOptions, w io.Writer) error {
	if o.interval <= 0 {
		return usagef("--interval must be positive, not %s", o.interval)
	}
	f, tty := w.(*os.File)
	tty = tty && o.output == "text" && isTerminal(f)
	for {
		var buf bytes.Buffer
		report, err := buildStatus(ctx, o)
		if err != nil {
			return err
		}
		if o.output == "json" {
			if err := json.NewEncoder(&buf).Encode(report); err != nil {
				return err
			}
		} else {
			if tty {
				buf.WriteString("\033[H\033[2J") // home, clear: one screen, redrawn
			}
			fmt.Fprintf(&buf, "%s (every %s)\n\n", time.Now().Format(time.TimeOnly), o.interval)
			printStatus(&buf, report, o.allSteps)
			if !tty {
				buf.WriteString("\n")
			}
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		if report.Run == nil || report.Run.Status != "running" {
			return nil
		}
		t := time.NewTimer(o.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// statusReport is the JSON shape of `sentinel status --output json`.
type statusReport struct {
	Run   *runReport   `json:"run"`
	Nodes []nodeReport `json:"nodes"`
}

type runReport struct {
	ID       string     `json:"id"`
	Command  []string   `json:"command"`
	From     string     `json:"from"`
	To       string     `json:"to"`
	Kind     string     `json:"kind,omitempty"`    // a patch run: patch-install or patch-revert
	Patches  []string   `json:"patches,omitempty"` // of a patch run
	Status   string     `json:"status"`
	Error    string     `json:"error,omitempty"`
	Started  time.Time  `json:"started"`
	Ended    *time.Time `json:"ended,omitempty"`
	Where    string     `json:"stopped_at,omitempty"`
	TornTail string     `json:"torn_tail,omitempty"`
	// Binaries are the sentinel builds that ran the run, in order (more
	// than one after a self-update or a recovery with another build).
	Binaries []string     `json:"binaries,omitempty"`
	Steps    []stepReport `json:"steps"`
}

type stepReport struct {
	Node     string     `json:"node"`
	Step     string     `json:"step"`
	State    string     `json:"state"`
	Started  *time.Time `json:"started,omitempty"`
	Ended    *time.Time `json:"ended,omitempty"`
	Note     string     `json:"note,omitempty"`
	Error    string     `json:"error,omitempty"`
	Output   string     `json:"output,omitempty"`
	Rollback bool       `json:"rollback,omitempty"`
}

type nodeReport struct {
	Node  string   `json:"node"`
	Roles []string `json:"roles"`
	// Of the last run: the step the node is at (running, failed,
	// interrupted, or the next pending one; "" when all are done), and
	// how many of its steps are done.
	Step        string            `json:"step,omitempty"`
	StepState   string            `json:"step_state,omitempty"`
	StepsDone   int               `json:"steps_done"`
	StepsTotal  int               `json:"steps_total"`
	Release     string            `json:"release,omitempty"`
	Current     map[string]string `json:"current,omitempty"`
	Recorded    map[string]string `json:"recorded,omitempty"`
	Unreachable string            `json:"unreachable,omitempty"`
}

func runStatus(ctx context.Context, o statusOptions, w io.Writer) error {
	report, err := buildStatus(ctx, o)
	if err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	printStatus(w, report, o.allSteps)
	return nil
}

func buildStatus(ctx context.Context, o statusOptions) (statusReport, error) {
	report := statusReport{}
	if o.output != "text" && o.output != "json" {
		return report, usagef("--output must be text or json, not %q", o.output)
	}
	inv, err := loadInventory(o.cluster)
	if err != nil {
		return report, err
	}
	runs := rollout.Runs{Dir: inv.State()}
	run, rep, err := runs.Latest()
	if err != nil {
		return report, err
	}
	if run != nil {
		report.Run = describeRun(run, rep, runs)
	}
	tr, err := dialAll(inv)
	if err != nil {
		return report, err
	}
	for _, n := range inv.Nodes {
		nr := nodeReport{Node: n.Name, Roles: n.Roles}
		var res steps.Result
		if err := tr[n.Name].Call(ctx, steps.OpFacts, steps.Request{}, &res, nil); err != nil {
			nr.Unreachable = err.Error()
		} else if f := res.Facts; f != nil {
			nr.Current = f.Current
			if f.Record != nil {
				nr.Release, nr.Recorded = f.Record.Release, f.Record.Components
			}
		}
		if report.Run != nil {
			for _, s := range report.Run.Steps {
				if s.Node != n.Name {
					continue
				}
				nr.StepsTotal++
				switch {
				case s.State == rollout.StateDone:
					nr.StepsDone++
				case nr.Step == "" || nr.StepState == rollout.StatePending && s.State != rollout.StatePending:
					nr.Step, nr.StepState = s.Step, s.State
				}
			}
		}
		report.Nodes = append(report.Nodes, nr)
	}
	return report, nil
}

func describeRun(run *rollout.Run, rep *resume.Replay, runs rollout.Runs) *runReport {
	rr := &runReport{ID: run.ID, Command: run.Command, From: run.Plan.From, To: run.Plan.To, Status: run.Status,
		Error: run.Error, Started: run.Started, Kind: run.Plan.Kind, Patches: run.Plan.Patches}
	if !run.Ended.IsZero() {
		rr.Ended = &run.Ended
	}
	if !run.Finished() {
		// An unfinished run whose lock is held is still going.
		if held, _, err := runs.LockHeld(); err == nil && held {
			rr.Status = "running"
		}
		rr.Where = run.Where()
	}
	for _, b := range run.Binaries() {
		rr.Binaries = append(rr.Binaries, b.Version)
	}
	if rep.TornTail != nil {
		rr.TornTail = fmt.Sprintf("%d bytes at offset %d (set aside on resume)", rep.TornTail.Length, rep.TornTail.Offset)
	}
	for _, np := range run.Plan.Nodes {
		for _, v := range run.View(np.Node) {
			sr := stepReport{Node: np.Node, Step: v.ID, State: v.State, Note: v.Note, Error: v.Error, Output: v.Output,
				Rollback: strings.HasPrefix(v.ID, "rollback/")}
			if sr.State == rollout.StateRunning && rr.Status != "running" {
				sr.State = "interrupted" // started, and nobody is running it now
			}
			if !v.Started.IsZero() {
				sr.Started = &v.Started
			}
			if !v.StepState.Ended.IsZero() {
				sr.Ended = &v.StepState.Ended
			}
			rr.Steps = append(rr.Steps, sr)
		}
	}
	return rr
}

func printStatus(w io.Writer, r statusReport, allSteps bool) {
	if r.Run == nil {
		fmt.Fprintln(w, "No run yet.")
	} else {
		run := r.Run
		resumeCmd := "sentinel upgrade --resume"
		if run.Kind != "" {
			verb := strings.TrimPrefix(run.Kind, "patch-")
			resumeCmd = "sentinel patch " + verb + " --resume"
			fmt.Fprintf(w, "Run %s: patch %s of %s on %s, %s\n", run.ID, verb, strings.Join(run.Patches, ", "), run.To, strings.ToUpper(run.Status))
		} else {
			fmt.Fprintf(w, "Run %s: %s -> %s, %s\n", run.ID, run.From, run.To, strings.ToUpper(run.Status))
		}
		fmt.Fprintf(w, "  command: %s\n", commandLine(run.Command))
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
				fmt.Fprintf(w, "\noutput of %s on %s:\n%s\n", s.Step, s.Node, indent(s.Output))
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

func stepTime(s stepReport) string {
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
