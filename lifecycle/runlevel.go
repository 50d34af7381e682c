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
	// Fetch steps done by an earlier process of the run (resumed).
	fetchedBefore int

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
		l.countDoneBefore(np, view)
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

// countDoneBefore counts the fetch steps of np that an earlier process
// of the run finished, and their bytes in the fleet's.
func (l *runLevel) countDoneBefore(np rollout.NodePlan, view []rollout.StepView) {
	for i, s := range np.Steps {
		if s.Op != steps.OpFetch || i >= len(view) || view[i].State != rollout.StateDone {
			continue
		}
		l.fetchedBefore++
		if l.bytesTotal > 0 {
			l.bytesDone += s.Request.Artifact.Size
			l.stepBytes[np.Node+"\x00"+s.ID] = s.Request.Artifact.Size
		}
	}
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
		if l.bytesTotal > 0 { // all of it is in the node cache now
			key := node + "\x00" + s.ID
			l.bytesDone += s.Request.Artifact.Size - l.stepBytes[key]
			l.stepBytes[key] = s.Request.Artifact.Size
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
	before := ""
	if l.fetchedBefore > 0 {
		before = fmt.Sprintf(" %s before this resume.", plural(l.fetchedBefore, "artifact was", "artifacts were")+" fetched")
	}
	switch {
	case l.fetched == 0 && l.fromCache == 0 && before == "":
		return ""
	case l.fetched == 0 && l.fromCache == 0:
		return "Nothing left to fetch:" + before + "\n"
	case l.fetched == 0:
		return fmt.Sprintf("Nothing fetched: all %d artifacts were in the node caches, verified.%s\n", l.fromCache, before)
	}
	return fmt.Sprintf("Fetched %s (%s); %s in the node caches already.%s\n", plural(l.fetched, "artifact", "artifacts"),
		preflight.FormatBytes(l.fetchedBytes), plural(l.fromCache, "was", "were"), before)
}

// plural is "1 one" or "n many".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
