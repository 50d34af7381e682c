package lifecycle

import (
	"fmt"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// runLevel adds the run-level line to a run's progress: it counts the
// nodes the plan changes, says when one begins and when one is done, and
// estimates the time left from the nodes finished in this process (none
// finished: no estimate, rather than a wild one).
type runLevel struct {
	next  rollout.Progress
	start time.Time

	mu               sync.Mutex
	last, first      map[string]string // node -> its last, first planned step
	begun, finished  map[string]bool
	nodes, doneHere  int
	started, doneAll int

	// What the fetch steps did in this process: downloaded, or found in
	// the node cache.
	fetched, fromCache int
	fetchedBytes       int64

	// A staging run's fleet-wide bytes: each fetch step's latest count.
	bytesTotal, bytesDone int64
	stepBytes             map[string]int64
	shownTenth            int64
}

func newRunLevel(next rollout.Progress, run *rollout.Run) *runLevel {
	l := &runLevel{next: next, start: time.Now(), last: map[string]string{}, first: map[string]string{},
		begun: map[string]bool{}, finished: map[string]bool{}, stepBytes: map[string]int64{}}
	if run.Plan.Kind == rollout.KindStage {
		l.bytesTotal = run.Plan.StagedBytes()
	}
	for _, np := range run.Plan.Nodes {
		if len(np.Steps) == 0 {
			continue
		}
		l.nodes++
		l.first[np.Node], l.last[np.Node] = np.Steps[0].ID, np.Steps[len(np.Steps)-1].ID
		view := run.View(np.Node)
		if len(view) > 0 && view[0].State != rollout.StatePending {
			l.begun[np.Node] = true
			l.started++
		}
		if allDone(view, len(np.Steps)) {
			l.finished[np.Node] = true
			l.doneAll++
		}
	}
	return l
}

func allDone(view []rollout.StepView, planned int) bool {
	for i := 0; i < planned && i < len(view); i++ {
		if view[i].State != rollout.StateDone {
			return false
		}
	}
	return planned > 0
}

func (l *runLevel) StepStarted(node string, s rollout.Step) {
	l.mu.Lock()
	rp, show := l.note(node, !l.begun[node] && l.first[node] != "", "node-started")
	l.mu.Unlock()
	if show {
		l.show(rp)
	}
	l.next.StepStarted(node, s)
}

func (l *runLevel) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	l.next.StepFinished(node, s, res, err)
	l.mu.Lock()
	if err == nil && s.Op == steps.OpFetch {
		if res.Changed {
			l.fetched++
			l.fetchedBytes += s.Request.Artifact.Size
		} else {
			l.fromCache++
		}
	}
	rp, show := l.note(node, err == nil && s.ID == l.last[node] && !l.finished[node], "node-done")
	l.mu.Unlock()
	if show {
		l.show(rp)
	}
}

// note counts what happened to node, when it is news; l.mu is held.
func (l *runLevel) note(node string, news bool, event string) (rollout.RunProgress, bool) {
	if !news {
		return rollout.RunProgress{}, false
	}
	if event == "node-started" {
		l.begun[node] = true
		l.started++
	} else {
		l.finished[node] = true
		l.doneAll++
		l.doneHere++
	}
	rp := rollout.RunProgress{Nodes: l.nodes, Started: l.started, Done: l.doneAll, Node: node, Event: event, Elapsed: time.Since(l.start),
		BytesDone: l.bytesDone, BytesTotal: l.bytesTotal}
	if l.doneHere > 0 && l.doneAll < l.nodes {
		rp.ETA = rp.Elapsed / time.Duration(l.doneHere) * time.Duration(l.nodes-l.doneAll)
	}
	return rp, true
}

func (l *runLevel) show(rp rollout.RunProgress) {
	if s, ok := l.next.(rollout.RunProgressShower); ok {
		s.RunProgress(rp)
	}
}

func (l *runLevel) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	l.next.Transfer(node, s, tp)
	if l.bytesTotal == 0 {
		return
	}
	l.mu.Lock()
	key := node + "\x00" + s.ID
	l.bytesDone += tp.Done - l.stepBytes[key]
	l.stepBytes[key] = tp.Done
	// One fleet line per tenth of the total, not one per transfer event.
	tenth := l.bytesDone * 10 / l.bytesTotal
	show := tenth > l.shownTenth
	if show {
		l.shownTenth = tenth
	}
	rp := rollout.RunProgress{Nodes: l.nodes, Started: l.started, Done: l.doneAll, Node: node, Event: "bytes",
		Elapsed: time.Since(l.start), BytesDone: l.bytesDone, BytesTotal: l.bytesTotal}
	l.mu.Unlock()
	if show {
		l.show(rp)
	}
}

func (l *runLevel) Logf(node, format string, args ...any) { l.next.Logf(node, format, args...) }

// fetchedLine says what the run's fetch steps moved in this process: the
// window after staging should say nothing was fetched.
func (l *runLevel) fetchedLine() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.fetched == 0 && l.fromCache == 0:
		return ""
	case l.fetched == 0:
		return fmt.Sprintf("Nothing fetched: all %d artifacts were in the node caches, verified.\n", l.fromCache)
	}
	return fmt.Sprintf("Fetched %d artifacts (%s); %d were in the node caches already.\n", l.fetched, preflight.FormatBytes(l.fetchedBytes), l.fromCache)
}
