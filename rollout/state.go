package rollout

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/resume"
)

// Journal record types, in the order a run writes them.
const (
	recRunStart      = "run-start"      // runStart
	recStepStart     = "step-start"     // stepRef
	recStepDone      = "step-done"      // stepOutcome
	recStepFailed    = "step-failed"    // stepOutcome
	recRollbackStart = "rollback-start" // rollbackStart
	recInterrupted   = "run-interrupted"
	recRunEnd        = "run-end"       // runEnd
	recExcluded      = "node-excluded" // Exclusion
)

type runStart struct {
	RunID   string   `json:"run_id"`
	Kind    string   `json:"kind"` // "upgrade"
	Command []string `json:"command"`
	Binary  string   `json:"binary_version"`
	Plan    *Plan    `json:"plan"`
}

type stepRef struct {
	Node string `json:"node"`
	Step string `json:"step"`
}

type stepOutcome struct {
	Node        string `json:"node"`
	Step        string `json:"step"`
	Changed     bool   `json:"changed,omitempty"`
	Note        string `json:"note,omitempty"`
	Error       string `json:"error,omitempty"`
	Output      string `json:"output,omitempty"`
	Unreachable bool   `json:"unreachable,omitempty"`
}

type rollbackStart struct {
	Node    string `json:"node"`
	Release string `json:"release"`
	Cause   string `json:"cause"` // the step that failed
	Steps   []Step `json:"steps"`
}

type runEnd struct {
	Status string `json:"status"` // "succeeded", "partial" or "failed"
	Error  string `json:"error,omitempty"`
	// Failed names the nodes that failed and were rolled back.
	Failed []string `json:"failed,omitempty"`
}

// Exclusion is a node the operator took out of an unfinished run: the run
// finishes without it, and a later run catches it up.
type Exclusion struct {
	Node   string    `json:"node"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`   // the operator's user name
	Host   string    `json:"host"` // where sentinel ran
	Time   time.Time `json:"-"`    // the record's
}

// Step states as status shows them.
const (
	StatePending = "pending"
	StateRunning = "running" // started, no outcome: interrupted or in progress
	StateDone    = "done"
	StateFailed  = "failed"
)

// Run is a run as its journal tells it.
type Run struct {
	ID       string
	Command  []string
	Plan     *Plan
	Started  time.Time
	Ended    time.Time
	Status   string // "running", "interrupted", "succeeded", "failed"
	Error    string
	Steps    map[string]map[string]*StepState // node -> step id -> state
	Rollback map[string]*rollbackStart        // node -> rollback under way or done
	Records  int
	// Excluded are the nodes taken out of the run, in the order they were.
	Excluded []Exclusion
	// FailedNodes are the nodes a finished run rolled back.
	FailedNodes []string
	// Maintenance is how far each switch of maintenance mode went:
	// "on"/"off" -> "intent" or "done".
	Maintenance map[string]string
	binaries    []BinaryUse // see Binaries

	mu sync.RWMutex // nodes in flight read and write their steps at once
}

// StepState is what the journal says of one step.
type StepState struct {
	State   string
	Started time.Time
	Ended   time.Time
	Note    string
	Error   string
	Output  string
}

// Finished reports whether the run ended, successfully or not.
func (r *Run) Finished() bool {
	return r.Status == "succeeded" || r.Status == RunPartial || r.Status == "failed"
}

// Done reports whether the run finished every node it did not leave out.
func (r *Run) Done() bool { return r.Status == "succeeded" || r.Status == RunPartial }

// IsExcluded reports whether the operator took the node out of the run.
func (r *Run) IsExcluded(node string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, x := range r.Excluded {
		if x.Node == node {
			return true
		}
	}
	return false
}

// state returns the state of a step, pending if never started.
func (r *Run) state(node, id string) *StepState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := r.Steps[node][id]; s != nil {
		return s
	}
	return &StepState{State: StatePending}
}

func (r *Run) rollbackOf(node string) *rollbackStart {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.Rollback[node]
}

// Where names the first step that is not done, for "stopped at" messages.
func (r *Run) Where() string {
	for _, np := range r.allNodes() {
		if r.IsExcluded(np.Node) || r.rolledBack(np.Node) {
			continue // left behind: nothing more happens there in this run
		}
		for _, s := range r.nodeSteps(np) {
			switch st := r.state(np.Node, s.ID); st.State {
			case StateRunning:
				return fmt.Sprintf("node %s, step %s (started, not finished)", np.Node, s.ID)
			case StatePending:
				return fmt.Sprintf("node %s, before step %s", np.Node, s.ID)
			case StateFailed:
				return fmt.Sprintf("node %s, step %s (failed)", np.Node, s.ID)
			}
		}
	}
	return "after its last step"
}

// rolledBack reports whether the node's rollback ran to its end.
func (r *Run) rolledBack(node string) bool {
	rb := r.rollbackOf(node)
	if rb == nil {
		return false
	}
	for _, s := range rb.Steps {
		if st := r.state(node, s.ID).State; st != StateDone && st != StateFailed {
			return false
		}
	}
	return true
}

// allNodes is the plan's nodes, then its final clean-up, in execution order.
func (r *Run) allNodes() []NodePlan {
	out := append(append([]NodePlan(nil), r.Plan.Nodes...), r.Plan.Closing...)
	if r.Plan.Finally != nil {
		out = append(out, *r.Plan.Finally)
	}
	return out
}

// nodeSteps is the node's planned steps followed by its rollback steps, if
// a rollback began.
func (r *Run) nodeSteps(np NodePlan) []Step {
	if rb := r.rollbackOf(np.Node); rb != nil {
		return append(append([]Step(nil), np.Steps...), rb.Steps...)
	}
	return np.Steps
}

// ReplayRun rebuilds a run from its journal records.
func ReplayRun(recs []resume.Record) (*Run, error) {
	if len(recs) == 0 || recs[0].Type != recRunStart {
		return nil, &RecordError{Record: 1, Err: fmt.Errorf("journal does not begin with a run-start record")}
	}
	var rs runStart
	if err := json.Unmarshal(recs[0].Data, &rs); err != nil {
		return nil, &RecordError{Record: 1, Err: fmt.Errorf("journal record 1: %w", err)}
	}
	r := &Run{ID: rs.RunID, Command: rs.Command, Plan: rs.Plan, Started: recs[0].Time, Status: "running",
		Steps: map[string]map[string]*StepState{}, Rollback: map[string]*rollbackStart{}, Records: 1}
	r.binaries = []BinaryUse{{Version: rs.Binary, Since: recs[0].Time, Record: recs[0].Seq}}
	for _, rec := range recs[1:] {
		if err := r.apply(rec); err != nil {
			return nil, &RecordError{Record: rec.Seq, Err: err}
		}
	}
	if r.Status == "running" {
		r.Status = "interrupted" // nobody is writing it: the lock tells callers
	}
	return r, nil
}

// StepView is a planned step with its state, for status displays.
type StepView struct {
	Step
	*StepState
}

// View lists the node's steps in execution order with their states.
func (r *Run) View(node string) []StepView {
	var out []StepView
	for _, np := range r.allNodes() {
		if np.Node == node {
			for _, s := range r.nodeSteps(np) {
				out = append(out, StepView{Step: s, StepState: r.state(node, s.ID)})
			}
		}
	}
	return out
}

// apply folds one more record into the run.
func (r *Run) apply(rec resume.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Records++
	get := func(node, step string) *StepState {
		if r.Steps[node] == nil {
			r.Steps[node] = map[string]*StepState{}
		}
		s := r.Steps[node][step]
		if s == nil {
			s = &StepState{State: StatePending}
			r.Steps[node][step] = s
		}
		return s
	}
	switch rec.Type {
	case recStepStart:
		var v stepRef
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Seq, err)
		}
		s := get(v.Node, v.Step)
		s.State, s.Started, s.Error, s.Output = StateRunning, rec.Time, "", ""
		r.Status = "running"
	case recStepDone, recStepFailed:
		var v stepOutcome
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Seq, err)
		}
		s := get(v.Node, v.Step)
		s.Ended, s.Note, s.Error, s.Output = rec.Time, v.Note, v.Error, v.Output
		s.State = StateDone
		if rec.Type == recStepFailed {
			s.State = StateFailed
			if v.Unreachable {
				s.State = StateRunning // its effect is unknown: it runs again on resume
			}
		}
	case recMaintenance:
		return r.applyMaintenance(rec.Data, rec.Seq)
	case recStepReset:
		return r.applyReset(rec.Data, rec.Seq)
	case recBinary:
		return r.applyBinary(rec)
	case recRollbackStart:
		var v rollbackStart
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Seq, err)
		}
		r.Rollback[v.Node] = &v
	case recInterrupted:
		var v runEnd
		_ = json.Unmarshal(rec.Data, &v)
		r.Status, r.Error = "interrupted", v.Error
	case recRunEnd:
		var v runEnd
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Seq, err)
		}
		r.Status, r.Error, r.Ended, r.FailedNodes = v.Status, v.Error, rec.Time, v.Failed
	case recExcluded:
		var v Exclusion
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Seq, err)
		}
		v.Time = rec.Time
		r.Excluded = append(r.Excluded, v)
	default:
		return fmt.Errorf("journal record %d has unknown type %q", rec.Seq, rec.Type)
	}
	return nil
}
