package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/steps"
)

// recStepReset sets a done step back to pending: the node no longer shows
// its effect (stepReset).
const recStepReset = "step-reset"

type stepReset struct {
	Node   string `json:"node"`
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// Reset is a step a resumed run does again, and why.
type Reset struct {
	Node, Step, Reason string
}

// Recheck asks every node with work left what it runs now, before a
// resumed run goes on, rather than trusting the journal blindly: a node
// restored from a snapshot, or a link changed by hand, no longer shows what
// the run did. The steps from the first one whose effect is gone are
// journaled as pending again, so the run does them again. A node that
// cannot be reached now is left as the journal says (its steps are tried,
// with retries, when its turn comes) and named in unreached.
func (x *Executor) Recheck(ctx context.Context, run *Run) (resets []Reset, unreached []string, err error) {
	var check []NodePlan
	for _, np := range run.Plan.Nodes {
		if np.Skip != "" || run.rollbackOf(np.Node) != nil {
			continue
		}
		done, left := 0, 0
		for _, s := range np.Steps {
			if run.state(np.Node, s.ID).State == StateDone {
				done++
			} else {
				left++
			}
		}
		if done > 0 && left > 0 {
			check = append(check, np)
		}
	}
	facts := make([]*steps.Facts, len(check))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, np := range check {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var res steps.Result
			if x.Transports[np.Node].Call(fctx, steps.OpFacts, steps.Request{}, &res, nil) == nil {
				facts[i] = res.Facts
			}
		})
	}
	wg.Wait()
	for i, np := range check {
		if facts[i] == nil {
			unreached = append(unreached, np.Node)
			continue
		}
		from, reason := firstUndone(run, np, facts[i])
		if from < 0 {
			continue
		}
		for _, s := range np.Steps[from:] {
			if run.state(np.Node, s.ID).State != StateDone {
				continue
			}
			if err := x.record(run, recStepReset, stepReset{Node: np.Node, Step: s.ID, Reason: reason}); err != nil {
				return resets, unreached, err
			}
			resets = append(resets, Reset{Node: np.Node, Step: s.ID, Reason: reason})
		}
	}
	return resets, unreached, nil
}

// firstUndone returns the index of the first step whose effect the node's
// facts contradict, and why; -1 when they agree with the journal.
func firstUndone(run *Run, np NodePlan, f *steps.Facts) (int, string) {
	// The last done switch of each component says what it must point at.
	lastSwitch := map[string]int{}
	lastCommit := -1
	for i, s := range np.Steps {
		if run.state(np.Node, s.ID).State != StateDone {
			continue
		}
		switch s.Op {
		case steps.OpSwitch:
			lastSwitch[s.Component] = i
		case steps.OpCommit:
			lastCommit = i
		}
	}
	first, reason := -1, ""
	consider := func(i int, why string) {
		if first < 0 || i < first {
			first, reason = i, why
		}
	}
	for c, i := range lastSwitch {
		sw := np.Steps[i]
		if f.Current[c] == sw.Version {
			continue
		}
		// Do the component's upgrade again from its install.
		start := i
		for j := i; j >= 0; j-- {
			if s := np.Steps[j]; s.Component == c && s.Release == sw.Release && s.Op == steps.OpInstall {
				start = j
				break
			}
		}
		consider(start, fmt.Sprintf("%s points at %s, but this run switched it to %s (restored from a snapshot, or changed by hand?)", c, orNothing(f.Current[c]), sw.Version))
	}
	if lastCommit >= 0 {
		want := np.Steps[lastCommit].Release
		if f.Record == nil || f.Record.Release != want {
			got := "no node.json"
			if f.Record != nil {
				got = "release " + f.Record.Release
			}
			consider(lastCommit, fmt.Sprintf("node.json records %s, but this run recorded %s", got, want))
		}
	}
	return first, reason
}

func orNothing(v string) string {
	if v == "" {
		return "nothing"
	}
	return v
}

func (r *Run) applyReset(data json.RawMessage, seq uint64) error {
	var v stepReset
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("journal record %d: %w", seq, err)
	}
	if s := r.Steps[v.Node][v.Step]; s != nil {
		s.State, s.Note, s.Error, s.Output = StatePending, "reset: "+v.Reason, "", ""
	}
	return nil
}
