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
		if np.Skip != "" || run.rollbackOf(np.Node) != nil || run.IsExcluded(np.Node) {
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
		for _, s := range stepsToRedo(np, from) {
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
//
// For each component, the run's switches form a chain (3.4.1 -> 3.4.2 ->
// 3.4.3). What the node shows is fine when it is the last switch the
// journal shows done, or one the run had started (a crash between the
// switch and its record); when it is an earlier link of the chain, or
// nothing the run knows, the component's steps are done again from the
// first switch the node does not show. node.json is judged the same way
// against the run's commits.
func firstUndone(run *Run, np NodePlan, f *steps.Facts) (int, string) {
	type link struct {
		index   int
		version string
		state   string
	}
	switches := map[string][]link{}
	var order []string
	var commits []link
	for i, s := range np.Steps {
		st := run.state(np.Node, s.ID).State
		switch s.Op {
		case steps.OpSwitch:
			if _, ok := switches[s.Component]; !ok {
				order = append(order, s.Component)
			}
			switches[s.Component] = append(switches[s.Component], link{i, s.Version, st})
		case steps.OpCommit:
			commits = append(commits, link{i, s.Release, st})
		}
	}
	first, reason := -1, ""
	consider := func(i int, why string) {
		if first < 0 || i < first {
			first, reason = i, why
		}
	}
	// behind returns the first link the node does not show, or -1.
	behind := func(chain []link, shows string) int {
		lastDone := -1
		for k, l := range chain {
			if l.state == StateDone {
				lastDone = k
			}
		}
		if lastDone < 0 {
			return -1 // nothing done yet: nothing to contradict
		}
		for k := len(chain) - 1; k >= 0; k-- {
			switch {
			case chain[k].version != shows:
			case k >= lastDone:
				return -1 // where the journal left it, or a step further
			default:
				return k + 1
			}
		}
		return 0 // before the run, or something the run never installed
	}
	for _, c := range order {
		chain := switches[c]
		k := behind(chain, f.Current[c])
		if k < 0 {
			continue
		}
		// Do the component's upgrade again from that hop's install.
		sw := np.Steps[chain[k].index]
		start := chain[k].index
		for j := start; j >= 0; j-- {
			if s := np.Steps[j]; s.Component == c && s.Release == sw.Release && s.Op == steps.OpInstall {
				start = j
				break
			}
		}
		var done string
		for _, l := range chain {
			if l.state == StateDone {
				done = l.version
			}
		}
		consider(start, fmt.Sprintf("%s points at %s, but this run switched it to %s (restored from a snapshot, or changed by hand?)", c, orNothing(f.Current[c]), done))
	}
	shows := ""
	if f.Record != nil {
		shows = f.Record.Release
	}
	if k := behind(commits, shows); k >= 0 {
		var done string
		for _, l := range commits {
			if l.state == StateDone {
				done = l.version
			}
		}
		got := "no node.json"
		if f.Record != nil {
			got = "release " + f.Record.Release
		}
		consider(commits[k].index, fmt.Sprintf("node.json records %s, but this run recorded %s", got, done))
	}
	return first, reason
}

// stepsToRedo is every step from index from on, and the earlier steps
// they need again: the fetch of an artifact to install again (a restored
// node may have lost its cache), and the retirement of a DEA that is to
// be unretired again (its components go down again meanwhile).
func stepsToRedo(np NodePlan, from int) []Step {
	redo := append([]Step(nil), np.Steps[from:]...)
	digests := map[string]bool{}
	unretire := false
	for _, s := range redo {
		switch s.Op {
		case steps.OpInstall:
			digests[s.Request.Artifact.SHA256] = true
		case steps.OpUnretire:
			unretire = true
		}
	}
	var before []Step
	for _, s := range np.Steps[:from] {
		if s.Op == steps.OpFetch && digests[s.Request.Artifact.SHA256] || s.Op == steps.OpRetire && unretire {
			before = append(before, s)
		}
	}
	return append(before, redo...)
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
