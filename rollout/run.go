package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// Progress receives what a run does, for display. Implementations live in
// the CLI (text lines, JSON lines).
type Progress interface {
	StepStarted(node string, s Step)
	StepFinished(node string, s Step, res steps.Result, err error)
	Logf(node string, format string, args ...any)
}

// Executor carries out a run's plan through the nodes' transports, writing
// every transition to the journal before and after it happens.
type Executor struct {
	Transports map[string]cluster.Transport
	Journal    *resume.Journal
	Progress   Progress
	// Stopping is closed when the operator asked to stop: the run stops
	// cleanly before its next step and can be resumed.
	Stopping <-chan struct{}
}

// StepFailedError is a step that failed on a node; the run ended.
type StepFailedError struct {
	Node, Step, Component string
	Err                   string
	Output                string
	RolledBack            []string // components returned to their previous release
	RollbackErr           string
}

func (e *StepFailedError) Error() string {
	msg := fmt.Sprintf("node %s: step %s failed: %s", e.Node, e.Step, e.Err)
	switch {
	case e.RollbackErr != "":
		msg += fmt.Sprintf("; rollback failed too: %s (fix the node by hand, then run `sentinel upgrade` again)", e.RollbackErr)
	case len(e.RolledBack) > 0:
		msg += fmt.Sprintf("; rolled back %v to their previous release, node.json unchanged", e.RolledBack)
	}
	return msg
}

// InterruptedError: the run stopped before its end and `sentinel upgrade
// --resume` continues it.
type InterruptedError struct {
	Node, Step string
	Reason     string
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("run interrupted at node %s, step %s: %s; run `sentinel upgrade --resume` to continue", e.Node, e.Step, e.Reason)
}

// Begin writes the run's first record.
func (x *Executor) Begin(id string, command []string, binaryVersion string, plan *Plan) (*Run, error) {
	rec, err := x.Journal.Append(recRunStart, runStart{RunID: id, Kind: "upgrade", Command: command, Binary: binaryVersion, Plan: plan})
	if err != nil {
		return nil, err
	}
	return ReplayRun([]resume.Record{rec})
}

// Execute runs every step of the plan that the journal does not show done.
func (x *Executor) Execute(ctx context.Context, run *Run) error {
	for _, np := range run.Plan.Nodes {
		if np.Skip != "" {
			continue
		}
		if err := x.node(ctx, run, np); err != nil {
			var ie *InterruptedError
			if errors.As(err, &ie) {
				_, jerr := x.Journal.Append(recInterrupted, runEnd{Status: "interrupted", Error: err.Error()})
				return errors.Join(err, jerr)
			}
			if _, jerr := x.Journal.Append(recRunEnd, runEnd{Status: "failed", Error: err.Error()}); jerr != nil {
				return errors.Join(err, jerr)
			}
			return err
		}
	}
	_, err := x.Journal.Append(recRunEnd, runEnd{Status: "succeeded"})
	return err
}

func (x *Executor) node(ctx context.Context, run *Run, np NodePlan) error {
	if rb := run.Rollback[np.Node]; rb != nil {
		return x.rollback(ctx, run, np, rb)
	}
	for _, s := range np.Steps {
		st := run.state(np.Node, s.ID)
		switch st.State {
		case StateDone:
			continue
		case StateFailed: // failed before a crash: handle it as the run would have
			return x.failed(ctx, run, np, s, st.Error, st.Output)
		}
		res, err := x.step(ctx, run, np.Node, s)
		if err == nil {
			continue
		}
		var ue *cluster.UnreachableError
		if errors.As(err, &ue) {
			return &InterruptedError{Node: np.Node, Step: s.ID, Reason: err.Error()}
		}
		var ie *InterruptedError
		if errors.As(err, &ie) {
			return err
		}
		_ = res
		output := ""
		var ae *cluster.AgentError
		if errors.As(err, &ae) {
			output = ae.Output
		}
		return x.failed(ctx, run, np, s, err.Error(), output)
	}
	return nil
}

// step runs one step, journaled before and after.
func (x *Executor) step(ctx context.Context, run *Run, node string, s Step) (steps.Result, error) {
	select {
	case <-x.Stopping:
		return steps.Result{}, &InterruptedError{Node: node, Step: s.ID, Reason: "stopped by the operator"}
	default:
	}
	if err := x.record(run, recStepStart, stepRef{Node: node, Step: s.ID}); err != nil {
		return steps.Result{}, err
	}
	x.Progress.StepStarted(node, s)
	var res steps.Result
	err := x.Transports[node].Call(ctx, s.Op, s.Request, &res, func(msg string) { x.Progress.Logf(node, "%s", msg) })
	x.Progress.StepFinished(node, s, res, err)
	out := stepOutcome{Node: node, Step: s.ID, Changed: res.Changed, Note: res.Note}
	if err != nil {
		out.Error = err.Error()
		var ae *cluster.AgentError
		if errors.As(err, &ae) {
			out.Error, out.Output = ae.Message, ae.Output
		}
		var ue *cluster.UnreachableError
		out.Unreachable = errors.As(err, &ue)
		return res, errors.Join(err, x.record(run, recStepFailed, out))
	}
	return res, x.record(run, recStepDone, out)
}

// record appends to the journal and keeps the in-memory run in step with it.
func (x *Executor) record(run *Run, typ string, data any) error {
	rec, err := x.Journal.Append(typ, data)
	if err != nil {
		return fmt.Errorf("writing the run journal %s: %w (the run stops here; fix the disk and resume)", x.Journal.Path(), err)
	}
	return run.apply(rec)
}

// failed handles a step that failed for good: a failure while components
// are being replaced rolls the node's release back.
func (x *Executor) failed(ctx context.Context, run *Run, np NodePlan, s Step, msg, output string) error {
	fe := &StepFailedError{Node: np.Node, Step: s.ID, Component: s.Component, Err: msg, Output: output}
	if !s.inUpgrade() {
		return fe
	}
	rb := &rollbackStart{Node: np.Node, Release: s.Release, Cause: s.ID, Steps: rollbackSteps(run, np, s.Release)}
	if err := x.record(run, recRollbackStart, rb); err != nil {
		return errors.Join(fe, err)
	}
	return x.rollback(ctx, run, np, rb)
}

// rollbackSteps returns, newest first, every component of the release that
// this run stopped on the node to the release it ran before.
func rollbackSteps(run *Run, np NodePlan, rel string) []Step {
	var touched []Step
	for _, s := range np.Steps {
		if s.Release == rel && s.Op == steps.OpStop && run.state(np.Node, s.ID).State != StatePending {
			touched = append(touched, s)
		}
	}
	var out []Step
	for i := len(touched) - 1; i >= 0; i-- {
		t := touched[i]
		prefix := "rollback/" + rel + "/" + t.Component + "/"
		out = append(out, Step{ID: prefix + steps.OpStop, Op: steps.OpStop, Release: rel, Component: t.Component,
			Request: steps.Request{Component: t.Component, Hooks: t.Request.Hooks}})
		if t.From == "" {
			continue // new in this release: nothing to go back to, it stays stopped
		}
		back := steps.Request{Component: t.Component, Version: t.From, Hooks: t.Request.Hooks}
		for _, op := range []string{steps.OpSwitch, steps.OpStart, steps.OpHealth} {
			out = append(out, Step{ID: prefix + op, Op: op, Release: rel, Component: t.Component, Version: t.From, Request: back})
		}
	}
	return out
}

func (x *Executor) rollback(ctx context.Context, run *Run, np NodePlan, rb *rollbackStart) error {
	cause := run.state(np.Node, rb.Cause)
	fe := &StepFailedError{Node: np.Node, Step: rb.Cause, Err: cause.Error, Output: cause.Output}
	for _, s := range np.Steps {
		if s.ID == rb.Cause {
			fe.Component = s.Component
		}
	}
	x.Progress.Logf(np.Node, "rolling back %s: %d steps", rb.Release, len(rb.Steps))
	for _, s := range rb.Steps {
		if st := run.state(np.Node, s.ID); st.State == StateDone {
			continue
		} else if st.State == StateFailed {
			fe.RollbackErr = fmt.Sprintf("step %s: %s", s.ID, st.Error)
			return fe
		}
		if _, err := x.step(ctx, run, np.Node, s); err != nil {
			var ue *cluster.UnreachableError
			var ie *InterruptedError
			if errors.As(err, &ue) || errors.As(err, &ie) {
				return &InterruptedError{Node: np.Node, Step: s.ID, Reason: err.Error()}
			}
			fe.RollbackErr = fmt.Sprintf("step %s: %v", s.ID, err)
			return fe
		}
		if s.Op == steps.OpHealth {
			fe.RolledBack = append(fe.RolledBack, s.Component)
		}
	}
	return fe
}
