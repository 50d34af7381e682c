package rollout

import (
	"context"
	"encoding/json"
	"fmt"
)

// Maintenance switches the cluster's maintenance mode (the cluster file's
// maintenance: block); declared here, where the run uses it.
type Maintenance interface {
	Switch(ctx context.Context, on bool) error
	IsOn(ctx context.Context) (bool, error)
}

// recMaintenance journals a switch of maintenance mode: an intent before
// the commands run, done after. A crash between the two leaves an intent
// that a resumed run settles by asking the status commands, so each switch
// happens once per run, whatever the crashes.
const recMaintenance = "maintenance"

type maintenanceRec struct {
	Mode  string `json:"mode"`  // "on" or "off"
	Phase string `json:"phase"` // "intent" or "done"
	Note  string `json:"note,omitempty"`
}

func modeName(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// switchMaintenance turns maintenance mode on (before the first change) or
// off (after the last), once per run. A command that fails interrupts the
// run: fix it, and --resume switches again.
func (x *Executor) switchMaintenance(ctx context.Context, run *Run, on bool) error {
	if !run.Plan.Maintenance {
		return nil
	}
	mode := modeName(on)
	step := "maintenance/" + mode
	if x.Maintenance == nil {
		return &InterruptedError{Node: "cluster", Step: step, Reason: "the run switches maintenance mode, and the cluster file has no maintenance: block any more: put it back"}
	}
	switch run.maintenancePhase(mode) {
	case "done":
		return nil
	case "intent":
		// Crashed after the intent: the commands may have run.
		if is, err := x.Maintenance.IsOn(ctx); err == nil && is == on {
			return x.record(run, recMaintenance, maintenanceRec{Mode: mode, Phase: "done", Note: "found " + mode + " on resume: not switched again"})
		}
	default:
		if err := x.record(run, recMaintenance, maintenanceRec{Mode: mode, Phase: "intent"}); err != nil {
			return &InterruptedError{Node: "cluster", Step: step, Reason: err.Error()}
		}
	}
	x.Progress.Logf("cluster", "switching maintenance mode %s", mode)
	if err := x.Maintenance.Switch(ctx, on); err != nil {
		return &InterruptedError{Node: "cluster", Step: step, Reason: fmt.Sprintf("switching maintenance mode %s failed: %v; fix the maintenance: commands in the cluster file", mode, err)}
	}
	if err := x.record(run, recMaintenance, maintenanceRec{Mode: mode, Phase: "done"}); err != nil {
		return &InterruptedError{Node: "cluster", Step: step, Reason: err.Error()}
	}
	return nil
}

// maintenancePhase is how far the journal says the switch went: "",
// "intent" or "done".
func (r *Run) maintenancePhase(mode string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.Maintenance[mode]
}

func (r *Run) applyMaintenance(data json.RawMessage, seq uint64) error {
	var v maintenanceRec
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("journal record %d: %w", seq, err)
	}
	if r.Maintenance == nil {
		r.Maintenance = map[string]string{}
	}
	r.Maintenance[v.Mode] = v.Phase
	return nil
}
