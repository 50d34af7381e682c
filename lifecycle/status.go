package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
)

// StatusReport is the JSON shape of `sentinel status --output json`.
type StatusReport struct {
	Run   *RunReport   `json:"run"`
	Nodes []NodeReport `json:"nodes"`
}

// RunReport is a run, as status shows it.
type RunReport struct {
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
	Steps    []StepReport `json:"steps"`
	// Excluded are the nodes the operator left out of the run; FailedNodes
	// those a finished run rolled back (within its failure budget, for a
	// partial run).
	Excluded    []ExclusionReport `json:"excluded,omitempty"`
	FailedNodes []string          `json:"failed_nodes,omitempty"`
}

// ExclusionReport is a node left out of a run: who did it, from where,
// when and why.
type ExclusionReport struct {
	Node   string    `json:"node"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Host   string    `json:"host"`
	Time   time.Time `json:"time"`
}

// StepReport is one step of a run.
type StepReport struct {
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

// NodeReport is one node, as status shows it.
type NodeReport struct {
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
	// Behind says why a node is not where the last run took the others:
	// excluded from it, or rolled back by it.
	Behind string `json:"behind,omitempty"`
}

// statusAskTimeout bounds how long status waits for the nodes' answers.
const statusAskTimeout = 20 * time.Second

// Status reads run id ("" for the cluster's last run) from its journal,
// and asks every node what it runs through tr (a watch asks through the
// same agents and connections each time): a *UsageError when there is no
// such run; an unreachable node is reported, not an error.
func Status(ctx context.Context, inv *cluster.Inventory, tr map[string]cluster.Transport, id string) (StatusReport, error) {
	report := StatusReport{}
	runs := rollout.Runs{Dir: inv.State()}
	run, rep, err := runs.Latest()
	if id != "" {
		p := runs.PathOf(id)
		if p == "" {
			return report, usagef("no run %q in %s: `sentinel runs` lists the runs", id, inv.State())
		}
		run, rep, err = runs.Read(p)
	}
	if err != nil {
		return report, err
	}
	if run != nil {
		report.Run = describeRun(run, rep, runs)
	}
	// All nodes at once, within a bound: a node that went silent (a
	// connection half-open since it lost power) is reported as such
	// rather than holding up the others, or a watch's next refresh.
	askCtx, cancel := context.WithTimeout(ctx, statusAskTimeout)
	facts, failed := rollout.GatherSome(askCtx, inv.Nodes, tr)
	cancel()
	for _, n := range inv.Nodes {
		nr := NodeReport{Node: n.Name, Roles: n.Roles}
		if err := failed[n.Name]; err != nil {
			nr.Unreachable = err.Error()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				nr.Unreachable = fmt.Sprintf("node %s: no answer within %s: the node is down, or its connection hangs", n.Name, statusAskTimeout)
			}
		} else if f := facts[n.Name]; f != nil {
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
		if report.Run != nil {
			nr.Behind = behind(report.Run, n.Name)
		}
		report.Nodes = append(report.Nodes, nr)
	}
	return report, nil
}

func describeRun(run *rollout.Run, rep *resume.Replay, runs rollout.Runs) *RunReport {
	rr := &RunReport{ID: run.ID, Command: run.Command, From: run.Plan.From, To: run.Plan.To, Status: run.Status,
		Error: run.Error, Started: run.Started, Kind: run.Plan.Kind, Patches: run.Plan.Patches}
	if !run.Ended.IsZero() {
		rr.Ended = &run.Ended
	}
	if !run.Finished() {
		// An unfinished run whose lock is held is still going (only the
		// latest run can be).
		latest, _ := runs.LatestPath()
		if held, _, err := runs.LockHeld(); err == nil && held && latest == runs.PathOf(run.ID) {
			rr.Status = "running"
		}
		rr.Where = run.Where()
	}
	for _, x := range run.Excluded {
		rr.Excluded = append(rr.Excluded, ExclusionReport{Node: x.Node, Reason: x.Reason, By: x.By, Host: x.Host, Time: x.Time})
	}
	rr.FailedNodes = run.FailedNodes
	for _, b := range run.Binaries() {
		rr.Binaries = append(rr.Binaries, b.Version)
	}
	if rep.TornTail != nil {
		rr.TornTail = fmt.Sprintf("%d bytes at offset %d (set aside on resume)", rep.TornTail.Length, rep.TornTail.Offset)
	}
	for _, np := range run.Plan.Nodes {
		for _, v := range run.View(np.Node) {
			sr := StepReport{Node: np.Node, Step: v.ID, State: v.State, Note: v.Note, Error: v.Error, Output: v.Output,
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

// behind says why the run left node where it was, or "".
func behind(run *RunReport, node string) string {
	for _, x := range run.Excluded {
		if x.Node == node {
			return fmt.Sprintf("excluded from run %s by %s@%s (%s): a new run catches it up", run.ID, x.By, x.Host, x.Reason)
		}
	}
	for _, n := range run.FailedNodes {
		if n == node {
			return fmt.Sprintf("failed in run %s and rolled back: a new run catches it up once the cause is fixed", run.ID)
		}
	}
	return ""
}
