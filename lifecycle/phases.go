package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Phase is one named stage of a run, in the manner of kubeadm's workflow
// runner: RunIf says from the run's state whether it applies.
type Phase struct {
	Name  string
	RunIf func(*Run) bool // nil: always
	Do    func(*Run, context.Context) error
}

// errDone ends a run early and successfully: a phase said everything
// (nothing to do, a dry run shown, the run already finished).
var errDone = fmt.Errorf("done")

// Runner runs phases in order. Skip names phases not to run; a name that
// is not a phase is refused before anything runs.
type Runner struct {
	Phases []Phase
	Skip   []string
	// Ran lists the phases that ran, in order (for tests and the log).
	Ran []string
}

// Names lists the phases, in order.
func (r *Runner) Names() []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, p.Name)
	}
	return out
}

// Run runs every phase that applies, stopping at the first error.
func (r *Runner) Run(ctx context.Context, run *Run) error {
	names := r.Names()
	for _, s := range r.Skip {
		if !slices.Contains(names, s) {
			return &UsageError{Msg: fmt.Sprintf("no phase %q: the phases are %s", s, strings.Join(names, ", "))}
		}
	}
	for _, p := range r.Phases {
		if slices.Contains(r.Skip, p.Name) || p.RunIf != nil && !p.RunIf(run) {
			continue
		}
		r.Ran = append(r.Ran, p.Name)
		if err := p.Do(run, ctx); err == errDone {
			return nil
		} else if err != nil {
			return err
		}
	}
	return nil
}
