package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// Progress receives what a run does, for display. Implementations live in
// the CLI (text lines, JSON lines).
type Progress interface {
	StepStarted(node string, s Step)
	StepFinished(node string, s Step, res steps.Result, err error)
	Logf(node string, format string, args ...any)
	// Transfer reports a download under way in a fetch step.
	Transfer(node string, s Step, p steps.FetchProgress)
}

// Executor carries out a run's plan through the nodes' transports, writing
// every transition to the journal before and after it happens.
type Executor struct {
	Transports map[string]cluster.Transport
	Journal    *resume.Journal
	Progress   Progress
	// Source is where fetch steps take artifacts from.
	Source source.Fetch
	// SkipDrain upgrades DEAs without waiting for their apps to move.
	SkipDrain bool
	// UnreachableRetries is how many more times a step is tried when its
	// node cannot be reached, waiting RetryBase, then twice as long each
	// time, before the run stops (resumable). Zero values: 4 and 1s; a
	// negative count: no retry.
	UnreachableRetries int
	RetryBase          time.Duration
	// Stopping is closed when the operator asked to stop: the run stops
	// cleanly before its next forward step and can be resumed. A rollback
	// under way is finished first: it is what makes the node whole again.
	Stopping <-chan struct{}
	// DEAs names every DEA of the cluster, for the capacity check before a
	// retirement: one added since the run began takes instances too. Nil:
	// the DEAs of the plan.
	DEAs []string
	// Advice words the commands errors advise (zero: an upgrade's).
	Advice Advice
	// Maintenance switches maintenance mode when the plan says so.
	Maintenance Maintenance
	// Proxy is the operator's proxy settings, sent with every fetch that
	// does not go to the cluster's cache daemon (nil: each node's own).
	Proxy *release.ProxySettings
	// WatchInterval is how often a watch step asks for health (zero: 1s,
	// or half the watch time when that is shorter).
	WatchInterval time.Duration

	halt     chan struct{} // closed when a node failed: others stop at a safe point
	haltOnce sync.Once

	budget      sync.Mutex
	budgetLeft  int             // failures the run may still take
	spent       map[string]bool // nodes whose failure the budget took
	canaryNodes map[string]bool
}

// Advice words the commands an error tells the operator to run next; the
// CLI gives them, per kind of run.
type Advice struct {
	Resume string // finishes the unfinished run, e.g. "sentinel upgrade --resume"
	Rerun  string // starts it anew, e.g. "sentinel upgrade"
}

func (a Advice) resume() string { return or(a.Resume, "sentinel upgrade --resume") }
func (a Advice) rerun() string  { return or(a.Rerun, "sentinel upgrade") }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// StepFailedError is a step that failed on a node.
type StepFailedError struct {
	Node, Step, Component string
	Err                   string
	Output                string
	// Resumable: the run stays open; fix the cause and --resume retries
	// the step. Otherwise the run ended (after a rollback).
	Resumable   bool
	RolledBack  []string // components returned to their previous release
	RolledTo    string   // the release the node is on after the rollback
	RollbackErr string
	// Kept says what the node's record keeps after a rollback.
	Kept   string
	Advice Advice
	// Recovered: a maintenance run's failed node, its components started
	// again where they were (there is no release to roll back to).
	Recovered bool
	Unretired bool // and its DEA took instances again
	// FromCache: the failed step fetched from this cache daemon, which a
	// resume may leave for the upstream (--no-cache).
	FromCache string
}

func (e *StepFailedError) Error() string {
	msg := fmt.Sprintf("node %s: step %s failed: %s", e.Node, e.Step, clause(e.Err))
	rolled := slices.DeleteFunc(slices.Clone(e.RolledBack), func(c string) bool { return c == "" })
	to := ""
	if e.RolledTo != "" {
		to = " to " + e.RolledTo
	}
	switch {
	case e.Resumable && e.FromCache != "":
		msg += fmt.Sprintf("; it fetched from the cache node %s: fix the cause, then run `%s` to retry it (or, if that node is down, `%s --no-cache` to take what is left to fetch from the mirrors or the upstream)", e.FromCache, e.Advice.resume(), e.Advice.resume())
	case e.Resumable:
		msg += fmt.Sprintf("; fix the cause, then run `%s` to retry it", e.Advice.resume())
	case e.Recovered && e.RollbackErr == "":
		dea := ""
		if e.Unretired {
			dea = " and the DEA unretired"
		}
		msg += fmt.Sprintf("; its components were started again as they were (%s)%s. Fix the cause, then run `%s` again", strings.Join(rolled, ", "), dea, e.Advice.rerun())
	case e.RollbackErr != "":
		msg += fmt.Sprintf("; rolling back%s failed too: %s. Look at `sentinel status`, bring those components up by hand, then run `%s` again", to, clause(e.RollbackErr), e.Advice.rerun())
	case len(rolled) == 0:
		msg += fmt.Sprintf("; no component had been replaced yet, so none was rolled back (the node stays%s; %s). Fix the cause, then run `%s` again", or(to, " as it was"), or(e.Kept, "node.json unchanged"), e.Advice.rerun())
	default:
		msg += fmt.Sprintf("; rolled back %s%s (%s). Fix the cause, then run `%s` again", strings.Join(rolled, ", "), to, or(e.Kept, "node.json unchanged"), e.Advice.rerun())
	}
	return msg
}

// clause makes an error text fit inside a sentence: one line, no space
// runs, no final full stop or comma.
func clause(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.TrimRight(s, ".,; ")
}

// InterruptedError: the run stopped before its end and its resume command
// continues it.
type InterruptedError struct {
	Node, Step string
	Reason     string
	Advice     Advice
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("run interrupted at node %s, step %s: %s; run `%s` to continue", e.Node, e.Step, e.Reason, e.Advice.resume())
}

// advise sets the run's advice and what a rolled-back node keeps on every
// error of err's tree.
func advise(err error, a Advice, kept string) {
	switch e := err.(type) {
	case nil:
		return
	case *StepFailedError:
		e.Advice, e.Kept = a, kept
	case *InterruptedError:
		e.Advice = a
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		advise(u.Unwrap(), a, kept)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			advise(e, a, kept)
		}
	}
}

// Execute runs every step of the plan that the journal does not show done,
// up to Plan.MaxInFlight nodes at a time under the rules of schedule.go.
// After a failure no node starts; the nodes in flight stop at their next
// safe point (see safePoint), and the run ends failed, or interrupted when
// every failure can be resumed.
func (x *Executor) Execute(ctx context.Context, run *Run) error {
	err := x.execute(ctx, run)
	advise(err, x.Advice, keptAfterFailure(run.Plan.Kind))
	return err
}

// keptAfterFailure says what a failed node's record keeps, by run kind:
// only a patch run records something (the patch) that a failure leaves out.
func keptAfterFailure(kind string) string {
	if strings.HasPrefix(kind, "patch-") {
		return "the patch is not recorded on that node"
	}
	return "node.json unchanged"
}

func (x *Executor) execute(ctx context.Context, run *Run) error {
	x.halt, x.haltOnce = make(chan struct{}), sync.Once{}
	x.budgetLeft, x.spent = run.Plan.MaxFailures, map[string]bool{}
	x.canaryNodes = canaries(run.Plan)
	progress := x.Progress
	x.Progress = &lockedProgress{next: progress}
	defer func() { x.Progress = progress }()

	if err := x.switchMaintenance(ctx, run, true); err != nil {
		_ = x.record(run, recInterrupted, runEnd{Status: "interrupted", Error: err.Error()})
		return err
	}
	p := x.pass(ctx, run, run.Plan.Nodes, x.canaryNodes)
	if len(p.failures) == 0 && len(run.Plan.Closing) > 0 {
		c := x.closingRestart(ctx, run)
		p.failures, p.halted, p.tolerated = c.failures, append(p.halted, c.halted...), append(p.tolerated, c.tolerated...)
	}
	failures, halted, tolerated := p.failures, p.halted, p.tolerated
	if len(failures) == 0 && run.Plan.Finally != nil {
		if err := x.node(ctx, run, *run.Plan.Finally); err != nil {
			failures = append(failures, err)
		}
	}
	if len(failures) == 0 {
		if err := x.switchMaintenance(ctx, run, false); err != nil {
			_ = x.record(run, recInterrupted, runEnd{Status: "interrupted", Error: err.Error()})
			return err
		}
		return x.end(run, tolerated)
	}
	if run.Plan.Maintenance {
		x.Progress.Logf("cluster", "maintenance mode stays on: the run did not finish")
	}
	failures = append(tolerated, failures...) // the summary names every failed node
	err := failures[0]
	if len(failures) > 1 {
		err = errors.Join(failures...)
	}
	if len(halted) > 0 {
		err = &HaltedNodesError{Cause: err, Halted: halted}
	}
	if anyResumable(failures) {
		// A node stopped where --resume can finish it: the run stays open,
		// and a node that failed for good says so again on resume, after
		// the others have reached a safe point.
		// Best effort: when the journal itself failed this fails too,
		// and the run reads as interrupted all the same.
		_ = x.record(run, recInterrupted, runEnd{Status: "interrupted", Error: err.Error()})
		return err
	}
	if jerr := x.record(run, recRunEnd, runEnd{Status: "failed", Error: err.Error()}); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// end closes a run whose every node is done, or left out: by the operator,
// or rolled back within the failure budget.
func (x *Executor) end(run *Run, tolerated []error) error {
	if len(tolerated) == 0 && len(run.Excluded) == 0 {
		return x.record(run, recRunEnd, runEnd{Status: "succeeded"})
	}
	pe := &PartialError{RunID: run.ID, To: run.Plan.To, Excluded: run.Excluded, Failed: tolerated, Advice: x.Advice}
	if run.Plan.Kind != "" {
		pe.To = ""
	}
	if err := x.record(run, recRunEnd, runEnd{Status: RunPartial, Error: pe.Error(), Failed: pe.FailedNodes()}); err != nil {
		return errors.Join(pe, err)
	}
	return pe
}

// spend takes a failure of node from the run's budget, if there is one
// left and the node may use it: not the core, not a canary.
func (x *Executor) spend(np NodePlan) bool {
	x.budget.Lock()
	defer x.budget.Unlock()
	if x.spent[np.Node] {
		return true
	}
	if isCore(np) || x.canaryNodes[np.Node] || x.budgetLeft <= 0 {
		return false
	}
	x.budgetLeft--
	x.spent[np.Node] = true
	return true
}

// tolerated reports whether err is a node's failure the budget took: the
// node was rolled back whole, and the run goes on.
func (x *Executor) tolerated(node string, err error) bool {
	x.budget.Lock()
	spent := x.spent[node]
	x.budget.Unlock()
	fe, ok := err.(*StepFailedError)
	return ok && spent && !fe.Resumable && fe.RollbackErr == ""
}

// passResult is how a pass over some nodes ended.
type passResult struct{ failures, halted, tolerated []error }

// pass runs the nodes under the scheduling rules until each is done, or
// a failure (past the budget) or the operator stops it.
func (x *Executor) pass(ctx context.Context, run *Run, nodes []NodePlan, canary map[string]bool) passResult {
	// A resumed run first finishes the nodes it had begun: they do not
	// share a redundant role with each other, and a fresh node that does
	// must not go down beside one left half done.
	var begun, fresh []NodePlan
	for _, np := range nodes {
		switch {
		case np.Skip != "", run.IsExcluded(np.Node):
		case nodeBegun(run, np):
			begun = append(begun, np)
		default:
			fresh = append(fresh, np)
		}
	}
	sched := newScheduler(run.Plan.Nodes, append(begun, fresh...), run.Plan.MaxInFlight, canary)
	sched.last = run.Plan.Last
	sched.free = run.Plan.Kind == KindStage
	type outcome struct {
		node string
		err  error
	}
	results := make(chan outcome)
	inFlight := 0
	var p passResult
	stopped := false
	for {
		if len(p.failures) == 0 && !stopped && !closed(x.halt) {
			select {
			case <-x.Stopping:
				stopped = true // in-flight nodes stop at their next step on their own
			default:
				for _, np := range sched.next() {
					inFlight++
					go func() { results <- outcome{np.Node, x.node(ctx, run, np)} }()
				}
			}
		}
		if inFlight == 0 {
			break
		}
		r := <-results
		inFlight--
		sched.finished(r.node)
		var he *haltedError
		switch {
		case r.err == nil:
		case errors.As(r.err, &he):
			p.halted = append(p.halted, r.err)
		case x.tolerated(r.node, r.err):
			p.tolerated = append(p.tolerated, r.err)
		default:
			x.haltNow()
			p.failures = append(p.failures, r.err)
		}
	}
	if !stopped && len(p.failures) == 0 && len(p.halted) == 0 && len(sched.pending) > 0 {
		// Cannot happen under the scheduling rules; never report success.
		p.failures = append(p.failures, fmt.Errorf("internal error: %d node(s) could never start (%s); run `%s --max-in-flight 1`", len(sched.pending), sched.pending[0].Node, x.Advice.resume()))
	}
	if stopped && len(p.failures) == 0 && len(sched.pending) > 0 {
		np := sched.pending[0]
		p.failures = append(p.failures, &InterruptedError{Node: np.Node, Step: firstPending(run, np), Reason: "stopped by the operator"})
	}
	return p
}

// closingRestart is the docs' closing restart: after the core, every node
// upgraded before it, but those the run rolled back (restart.go).
func (x *Executor) closingRestart(ctx context.Context, run *Run) passResult {
	var closing []NodePlan
	for _, np := range run.Plan.Closing {
		if !x.spentOn(np.Node) {
			closing = append(closing, np)
		}
	}
	x.Progress.Logf("cluster", "closing restart of %d node(s) upgraded before the core", len(closing))
	return x.pass(ctx, run, closing, nil)
}

// spentOn reports whether the node failed within the budget.
func (x *Executor) spentOn(node string) bool {
	x.budget.Lock()
	defer x.budget.Unlock()
	return x.spent[node]
}

// anyResumable reports whether one of the errors left a node that
// --resume must finish.
func anyResumable(errs []error) bool {
	for _, err := range errs {
		var ie *InterruptedError
		var fe *StepFailedError
		if errors.As(err, &ie) || errors.As(err, &fe) && fe.Resumable {
			return true
		}
	}
	return false
}

// nodeBegun reports whether the journal shows a step of the node started.
func nodeBegun(run *Run, np NodePlan) bool {
	for _, s := range np.Steps {
		if run.state(np.Node, s.ID).State != StatePending {
			return true
		}
	}
	return false
}

// deaRetired reports whether the node is a DEA this run retired and has
// not yet let take instances again: it must not be left so.
func deaRetired(run *Run, np NodePlan) bool {
	retired, unretired := false, false
	for _, s := range np.Steps {
		switch s.Op {
		case steps.OpRetire:
			// Begun is enough: an interrupted retirement may have
			// drained the DEA already.
			retired = run.state(np.Node, s.ID).State != StatePending
		case steps.OpUnretire:
			unretired = run.state(np.Node, s.ID).State == StateDone
		}
	}
	return retired && !unretired
}

// haltNow stops new nodes from starting and the nodes in flight at their
// next safe point: a node failed.
func (x *Executor) haltNow() { x.haltOnce.Do(func() { close(x.halt) }) }

func firstPending(run *Run, np NodePlan) string {
	for _, s := range np.Steps {
		if run.state(np.Node, s.ID).State != StateDone {
			return s.ID
		}
	}
	return "(none)"
}

// haltedError: a node stopped at a safe point because another failed.
type haltedError struct{ Node, Step string }

func (e *haltedError) Error() string {
	return fmt.Sprintf("node %s stopped before step %s", e.Node, e.Step)
}

// HaltedNodesError is a failure that stopped other nodes in flight.
type HaltedNodesError struct {
	Cause  error
	Halted []error // *haltedError, one per node stopped
}

func (e *HaltedNodesError) Error() string {
	var names []string
	for _, h := range e.Halted {
		names = append(names, h.Error())
	}
	return fmt.Sprintf("%v\n(nodes upgraded at the same time were stopped at a safe point: %s; they continue with the next run)", e.Cause, strings.Join(names, "; "))
}

func (e *HaltedNodesError) Unwrap() error { return e.Cause }

// safePoint reports whether a node may stop before step s when another
// node failed: only between whole units of work, never with a component
// stopped or a DEA retired half-way.
func safePoint(s Step) bool {
	switch s.Op {
	case steps.OpFetch, steps.OpRetire, steps.OpBackup, steps.OpInstall:
		return true
	}
	return false
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// lockedProgress serialises the progress calls of nodes in flight.
type lockedProgress struct {
	mu   sync.Mutex
	next Progress
}

func (p *lockedProgress) StepStarted(node string, s Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next.StepStarted(node, s)
}

func (p *lockedProgress) StepFinished(node string, s Step, res steps.Result, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next.StepFinished(node, s, res, err)
}

func (p *lockedProgress) Logf(node string, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next.Logf(node, format, args...)
}

func (p *lockedProgress) Transfer(node string, s Step, fp steps.FetchProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next.Transfer(node, s, fp)
}

func (x *Executor) node(ctx context.Context, run *Run, np NodePlan) error {
	if rb := run.rollbackOf(np.Node); rb != nil {
		if !x.spend(np) {
			x.haltNow() // the node failed before: nothing new starts meanwhile
		}
		return x.rollback(ctx, run, np, rb)
	}
	for _, s := range np.Steps {
		st := run.state(np.Node, s.ID)
		if st.State == StateDone {
			continue
		}
		if st.State == StateFailed && s.inUpgrade() {
			// Failed before a crash, before its rollback began.
			return x.failed(ctx, run, np, s, st.Error, st.Output)
		}
		select {
		case <-x.Stopping:
			return &InterruptedError{Node: np.Node, Step: s.ID, Reason: "stopped by the operator"}
		default:
		}
		// A DEA retired by this run runs on to its unretire: halted
		// before, it would stay drained with no instances.
		if closed(x.halt) && safePoint(s) && !deaRetired(run, np) {
			return &haltedError{Node: np.Node, Step: s.ID}
		}
		_, err := x.step(ctx, run, np.Node, s)
		if err == nil {
			continue
		}
		var ie *InterruptedError
		if errors.As(err, &ie) {
			return ie
		}
		msg, output := failure(err)
		if s.inUpgrade() {
			return x.failed(ctx, run, np, s, msg, output)
		}
		// Nothing is half-replaced: the run stays open and --resume retries.
		fe := &StepFailedError{Node: np.Node, Step: s.ID, Component: s.Component, Err: msg, Output: output, Resumable: true}
		if s.Op == steps.OpFetch {
			fe.FromCache = x.Source.CacheURL
		}
		return fe
	}
	return nil
}

// failure splits an agent's error into its message and the hook output.
func failure(err error) (msg, output string) {
	var ae *cluster.AgentError
	if errors.As(err, &ae) {
		return ae.Message, ae.Output
	}
	return err.Error(), ""
}

// step runs one step, journaled before and after. A journal that cannot be
// written, or an agent that cannot be reached, interrupts the run.
func (x *Executor) step(ctx context.Context, run *Run, node string, s Step) (steps.Result, error) {
	// Started before and never finished: its effect may be in place.
	retry := run.state(node, s.ID).State != StatePending
	started, err := x.recordStart(run, node, s)
	if err != nil {
		return steps.Result{}, &InterruptedError{Node: node, Step: s.ID, Reason: err.Error()}
	}
	x.Progress.StepStarted(node, s)
	req := s.Request
	req.Retry = retry
	switch s.Op {
	case steps.OpFetch:
		req = FetchRequest(x.Source, req)
		if NeedsProxy(req) {
			req.Proxy = x.Proxy
		}
	case steps.OpAction:
		req.Proxy = x.Proxy
	case steps.OpReboot:
		if req.Reboot != nil && req.Reboot.Self {
			x.Progress.Logf(node, "node %s is the machine this run runs on: it reboots now, and this process with it; the journal records where the run is. Once the machine is back, run `%s`", node, x.Advice.resume())
		}
	case steps.OpRetire:
		req.SkipDrain = x.SkipDrain
		if err := x.roomToRetire(ctx, run, node, s); err != nil {
			return steps.Result{}, err
		}
	}
	if !writtenAhead(s.Op) {
		// A retirement's start went to disk while its capacity check ran:
		// it is on disk before the DEA hears of it, like every start that
		// takes a node somewhere a resume must know about.
		if jerr := started(); jerr != nil {
			return steps.Result{}, &InterruptedError{Node: node, Step: s.ID, Reason: x.journalError(jerr).Error()}
		}
	}
	var res steps.Result
	call := func() error {
		res = steps.Result{}
		if s.Op == OpWatch {
			var err error
			res, err = x.watch(ctx, run, node, s)
			return err
		}
		if s.Op == OpWaitBack {
			var err error
			res, err = x.waitBack(ctx, node, s)
			return err
		}
		return x.Transports[node].Call(ctx, s.Op, req, &res, func(ev cluster.Event) {
			switch ev.Kind {
			case "log":
				x.Progress.Logf(node, "%s", ev.Message)
			case "progress":
				var p steps.FetchProgress
				if json.Unmarshal(ev.Progress, &p) == nil {
					x.Progress.Transfer(node, s, p)
				}
			}
		})
	}
	switch s.Op {
	case OpWaitBack: // waits for the node up to its own deadline
		err = call()
	case steps.OpReboot:
		err = call()
		if errors.As(err, new(*cluster.UnreachableError)) {
			// The node went away before its answer reached us: what a
			// reboot does. wait-back tells whether it came back rebooted.
			err, res = nil, steps.Result{Changed: true, Note: "the node went away (rebooting)"}
		}
	default:
		err = x.retryUnreachable(ctx, node, s, call)
	}
	// Nothing is concluded from the step before its start is on disk.
	if jerr := started(); jerr != nil {
		return res, &InterruptedError{Node: node, Step: s.ID, Reason: x.journalError(jerr).Error()}
	}
	x.Progress.StepFinished(node, s, res, err)
	out := stepOutcome{Node: node, Step: s.ID, Changed: res.Changed, Note: res.Note}
	if err != nil {
		out.Error, out.Output = failure(err)
		var ue *cluster.UnreachableError
		out.Unreachable = errors.As(err, &ue)
	}
	// A step's success need not be durable before the next step begins:
	// the next record's fsync makes it so, and a machine crash before that
	// only repeats the step, which is idempotent.
	record := x.record
	if err == nil {
		record = x.recordDeferred
	}
	if jerr := record(run, map[bool]string{true: recStepFailed, false: recStepDone}[err != nil], out); jerr != nil {
		return res, &InterruptedError{Node: node, Step: s.ID, Reason: jerr.Error()}
	}
	var ae *cluster.AgentError
	if out.Unreachable || (errors.As(err, &ae) && ae.Retryable) {
		return res, &InterruptedError{Node: node, Step: s.ID, Reason: out.Error}
	}
	return res, err
}

// roomToRetire checks again, right before a retirement, that the DEA's
// instances fit on the others: their load changed since preflight. When
// they do not, it is like a drain past its deadline: nothing changed, and
// the run goes on once there is room.
func (x *Executor) roomToRetire(ctx context.Context, run *Run, node string, s Step) error {
	if x.SkipDrain {
		return nil
	}
	err := x.deaRoomFor(ctx, run, node)
	if err == nil {
		return nil
	}
	x.Progress.StepFinished(node, s, steps.Result{}, err)
	out := stepOutcome{Node: node, Step: s.ID, Error: err.Error()}
	if jerr := x.record(run, recStepFailed, out); jerr != nil {
		return &InterruptedError{Node: node, Step: s.ID, Reason: jerr.Error()}
	}
	return &InterruptedError{Node: node, Step: s.ID, Reason: err.Error()}
}

// retryUnreachable runs call, and again with growing pauses while the node
// cannot be reached: steps are idempotent, so trying again is safe. It
// gives up on the operator's stop, or after the last retry.
func (x *Executor) retryUnreachable(ctx context.Context, node string, s Step, call func() error) error {
	retries := x.UnreachableRetries
	switch {
	case retries == 0:
		retries = 4
	case retries < 0:
		retries = 0
	}
	wait := x.RetryBase
	if wait == 0 {
		wait = time.Second
	}
	for attempt := 0; ; attempt++ {
		err := call()
		var ue *cluster.UnreachableError
		if err == nil || !errors.As(err, &ue) || ctx.Err() != nil || attempt >= retries {
			return err
		}
		x.Progress.Logf(node, "cannot reach node %s for step %s (%v); trying again in %s (%d of %d)", node, s.ID, ue.Err, wait, attempt+1, retries)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-x.Stopping:
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 2
	}
}

// deaRoomFor checks that the instances of DEA node fit on the other DEAs
// (first-fit decreasing). It asks the others for their figures a batch at
// a time, at once within a batch, and stops as soon as the instances fit:
// on a cluster of hundreds of DEAs a retirement costs a few probes, not
// one per DEA, and waits for the first answers that make room, not for
// the slowest DEA of the batch.
func (x *Executor) deaRoomFor(ctx context.Context, run *Run, node string) error {
	var candidates []string
	if x.DEAs == nil {
		for _, np := range run.Plan.Nodes {
			if slices.Contains(np.Roles, release.RoleDEA) {
				candidates = append(candidates, np.Node)
			}
		}
	}
	for _, name := range x.DEAs {
		candidates = append(candidates, name)
	}
	// An excluded DEA is gone: it takes no instances.
	candidates = slices.DeleteFunc(candidates, run.IsExcluded)
	// capacity is a DEA's figures, or nil and why there are none.
	capacity := func(ctx context.Context, name string) (*steps.DEACapacity, string) {
		tr := x.Transports[name]
		// A probe whose check already returned starts no agent.
		if tr == nil || ctx.Err() != nil {
			return nil, "not asked: no connection to it"
		}
		// A DEA that hangs must not hold the retirement up for good.
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var res steps.Result
		err := tr.Call(pctx, steps.OpProbe, steps.Request{Probe: &steps.ProbeRequest{Capacity: true}}, &res, nil)
		switch {
		case err != nil:
			msg, _ := failure(err)
			return nil, msg
		case res.Probe == nil || res.Probe.Capacity == nil && res.Probe.CapacityErr == "":
			return nil, "its agent sent no figures"
		}
		return res.Probe.Capacity, res.Probe.CapacityErr
	}
	probe := func(ctx context.Context, name string) *steps.DEACapacity {
		c, _ := capacity(ctx, name)
		return c // a DEA without figures takes nothing
	}
	own, why := capacity(ctx, node)
	if own == nil && ctx.Err() != nil {
		return nil // the run is stopping: the retirement is not sent either
	}
	if own == nil {
		// As in preflight, a DEA without figures is not held back: its
		// drain still waits for its instances to move. But not silently.
		x.Progress.Logf(node, "no capacity figures for DEA %s (%s): retiring it without checking that its instances fit on the other DEAs; its drain still waits for them to move", node, why)
		return nil
	}
	if len(own.Instances) == 0 {
		return nil // nothing to move
	}
	caps := map[string]*steps.DEACapacity{node: own}
	deas := []string{node}
	var others []string
	for _, name := range candidates {
		if name != node {
			others = append(others, name)
		}
	}
	if len(others) == 0 {
		return nil // a lone DEA: its apps stop, as preflight said
	}
	const batch = 16
	var missing, biggest int64
	for start := 0; start < len(others); start += batch {
		names := others[start:min(start+batch, len(others))]
		var fits bool
		if deas, fits, missing, biggest = probeBatch(ctx, probe, node, names, deas, caps); fits {
			return nil
		}
	}
	if len(deas) == 1 {
		return fmt.Errorf("DEA %s cannot be retired now: none of the other DEAs (%s) answered its capacity probe, so nothing says its instances have somewhere to go: check those nodes", node, strings.Join(others, ", "))
	}
	return fmt.Errorf("DEA %s cannot be retired now: its instances need %d MB more than the other DEAs have free (largest instance %d MB): add a DEA node to the cluster (and to cluster.yaml) first", node, missing, biggest)
}

// probeBatch asks the DEAs names for their figures at once and returns
// deas with those that answered added, in the order of names, and whether
// node's instances fit on them; if not, what is missing. It returns as
// soon as the answers so far make room, cancelling the probes still out.
func probeBatch(ctx context.Context, probe func(context.Context, string) *steps.DEACapacity, node string, names, deas []string, caps map[string]*steps.DEACapacity) (_ []string, fits bool, missing, biggest int64) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		name string
		cap  *steps.DEACapacity
	}
	answers := make(chan answer, len(names))
	for _, name := range names {
		go func() { answers <- answer{name, probe(bctx, name)} }()
	}
	answered := func() []string {
		out := slices.Clone(deas)
		for _, name := range names {
			if caps[name] != nil {
				out = append(out, name)
			}
		}
		return out
	}
	for left := len(names); left > 0; left-- {
		a := <-answers
		if a.cap == nil {
			continue
		}
		caps[a.name] = a.cap
		if missing, biggest = fitElsewhere(node, answered(), caps); missing == 0 {
			// The probes still out are cancelled, not waited for: the
			// retirement must not wait on the slowest DEA's answer, nor on
			// its transport noticing the cancel. Their answers go into
			// the buffered channel and nowhere else.
			return answered(), true, 0, 0
		}
	}
	out := answered()
	missing, biggest = fitElsewhere(node, out, caps)
	return out, missing == 0, missing, biggest
}

// recordStart journals a step's start. A step that changes nothing the
// run or a resume reads (a fetch, a backup, an unpack, a health check, a
// watch, a wait) has its start written while it is dispatched, and the
// returned wait says when it is durable: its outcome is recorded only
// after that. A crash can then lose that start, and the previous step's
// success written with it: the node looks one step behind, and both run
// again, which changes nothing. Every other step (a stop, a switch, a
// start, a migration, a retirement, a commit, an action, a reboot) takes
// the node somewhere a resume must know about: the rollback reads which
// stops and switches began, a halt stops only at a safe point, and a
// retry asks the status hook or the node whether it rebooted. Its start
// is on disk before it is sent: at once, or for a retirement, whose
// capacity check asks the DEAs first and changes nothing, once step has
// waited for it after the check.
func (x *Executor) recordStart(run *Run, node string, s Step) (wait func() error, err error) {
	ref := stepRef{Node: node, Step: s.ID}
	if !writtenAhead(s.Op) && (s.Op != steps.OpRetire || x.SkipDrain) {
		return func() error { return nil }, x.record(run, recStepStart, ref)
	}
	rec, wait, err := x.Journal.AppendAhead(recStepStart, ref)
	if err != nil {
		return nil, x.journalError(err)
	}
	return wait, run.apply(rec)
}

// writtenAhead reports whether a step's start may still be on its way to
// disk while the node carries the step out (see recordStart).
func writtenAhead(op string) bool {
	switch op {
	case steps.OpFetch, steps.OpBackup, steps.OpInstall, steps.OpHealth, OpWatch, OpWaitBack:
		return true
	}
	return false
}

// record appends to the journal and keeps the in-memory run in step with it.
func (x *Executor) record(run *Run, typ string, data any) error {
	return x.appendRecord(run, typ, data, x.Journal.Append)
}

func (x *Executor) recordDeferred(run *Run, typ string, data any) error {
	return x.appendRecord(run, typ, data, x.Journal.AppendDeferred)
}

func (x *Executor) appendRecord(run *Run, typ string, data any, appendRec func(string, any) (resume.Record, error)) error {
	// No lock around the append: the journal orders records and lets steps
	// that finish together share one fsync (group commit). Each node's
	// records come from its own goroutine, in order, and the run applies
	// them under its own lock.
	rec, err := appendRec(typ, data)
	if err != nil {
		return x.journalError(err)
	}
	return run.apply(rec)
}

func (x *Executor) journalError(err error) error {
	return fmt.Errorf("cannot write the run journal %s: %w (fix the disk, then resume)", x.Journal.Path(), err)
}

// failed handles a step that failed while components were being replaced:
// the node's release is rolled back.
func (x *Executor) failed(ctx context.Context, run *Run, np NodePlan, s Step, msg, output string) error {
	if !x.spend(np) {
		x.haltNow() // before the rollback, which may take minutes: nothing new starts meanwhile
	}
	rb := &rollbackStart{Node: np.Node, Release: s.Release, Cause: s.ID, Steps: rollbackSteps(run, np, s.Release)}
	if err := x.record(run, recRollbackStart, rb); err != nil {
		return &InterruptedError{Node: np.Node, Step: s.ID, Reason: fmt.Sprintf("%s failed (%s), and its rollback could not start: %v", s.ID, msg, err)}
	}
	return x.rollback(ctx, run, np, rb)
}

// rollbackSteps returns, newest first, every component of the release that
// this run stopped, or tried to stop, on the node to the release it ran
// before; and every component it switched, or tried to switch, without
// stopping it (a patch's switch-only components, --no-restart) back to
// what it had before, switched only, as it was never restarted.
func rollbackSteps(run *Run, np NodePlan, rel string) []Step {
	if run.Plan.Kind == KindMaintain {
		return maintainRecovery(run, np)
	}
	stopped := map[string]bool{} // components the release stops on the node
	for _, s := range np.Steps {
		if s.Release == rel && s.Op == steps.OpStop {
			stopped[s.Component] = true
		}
	}
	var touched []Step
	for _, s := range np.Steps {
		if s.Release != rel || run.state(np.Node, s.ID).State == StatePending {
			continue
		}
		if s.Op == steps.OpStop || (s.Op == steps.OpSwitch && !stopped[s.Component]) {
			touched = append(touched, s)
		}
	}
	var out []Step
	for i := len(touched) - 1; i >= 0; i-- {
		t := touched[i]
		prefix := "rollback/" + rel + "/" + t.Component + "/"
		if t.Op == steps.OpSwitch {
			back := steps.Request{Component: t.Component, Version: t.From, Hooks: t.Request.Hooks}
			out = append(out, Step{ID: prefix + steps.OpSwitch, Op: steps.OpSwitch, Release: rel, Component: t.Component, Version: t.From, Request: back})
			continue
		}
		// Its stop never finished: it was never switched, and stopping it
		// again would only fail again.
		if run.state(np.Node, t.ID).State == StateDone {
			out = append(out, Step{ID: prefix + steps.OpStop, Op: steps.OpStop, Release: rel, Component: t.Component,
				Request: steps.Request{Component: t.Component, Hooks: t.Request.Hooks}})
		}
		back := steps.Request{Component: t.Component, Version: t.From, Hooks: t.Request.Hooks}
		out = append(out, Step{ID: prefix + steps.OpSwitch, Op: steps.OpSwitch, Release: rel, Component: t.Component, Version: t.From, Request: back})
		if t.From == "" {
			continue // new in this release: no current link, nothing to start
		}
		for _, op := range []string{steps.OpStart, steps.OpHealth} {
			out = append(out, Step{ID: prefix + op, Op: op, Release: rel, Component: t.Component, Version: t.From, Request: back})
		}
	}
	// A DEA retired for this run takes its instances back.
	for _, s := range np.Steps {
		if s.Op == steps.OpRetire && run.state(np.Node, s.ID).State != StatePending {
			out = append(out, Step{ID: "rollback/" + rel + "/unretire", Op: steps.OpUnretire, Release: rel})
		}
	}
	return out
}

// releaseBefore is the release the node was on before hop rel of this run.
func releaseBefore(np NodePlan, rel string) string {
	prev := np.From
	for _, s := range np.Steps {
		if s.Op == steps.OpCommit {
			if s.Release == rel {
				return prev
			}
			prev = s.Release
		}
	}
	return prev
}

// rollback carries out the rollback steps. It is best effort per
// component: a component that cannot be brought back is reported, and the
// others are still brought back. Only a second Ctrl-C (ctx) stops it.
func (x *Executor) rollback(ctx context.Context, run *Run, np NodePlan, rb *rollbackStart) error {
	cause := run.state(np.Node, rb.Cause)
	fe := &StepFailedError{Node: np.Node, Step: rb.Cause, Err: cause.Error, Output: cause.Output, RolledTo: releaseBefore(np, rb.Release)}
	if run.Plan.Kind == KindMaintain {
		fe.RolledTo, fe.Recovered = "", true
		fe.Unretired = slices.ContainsFunc(rb.Steps, func(s Step) bool { return s.Op == steps.OpUnretire })
	}
	for _, s := range np.Steps {
		if s.ID == rb.Cause {
			fe.Component = s.Component
		}
	}
	x.Progress.Logf(np.Node, "rolling back %s to %s: %d steps", rb.Release, fe.RolledTo, len(rb.Steps))
	broken := map[string]string{} // component -> why it could not be brought back
	var order []string
	for _, s := range rb.Steps {
		if _, ok := broken[s.Component]; ok {
			continue
		}
		st := run.state(np.Node, s.ID)
		if st.State != StateDone && st.State != StateFailed {
			if _, err := x.step(ctx, run, np.Node, s); err != nil {
				var ie *InterruptedError
				if errors.As(err, &ie) {
					return ie
				}
			}
			st = run.state(np.Node, s.ID)
		}
		if st.State == StateFailed {
			broken[s.Component] = fmt.Sprintf("%s: %s", s.ID, st.Error)
			order = append(order, s.Component)
		}
	}
	seen := map[string]bool{"": true} // a DEA's unretire is no component
	for _, s := range rb.Steps {
		if _, bad := broken[s.Component]; !bad && !seen[s.Component] {
			seen[s.Component] = true
			fe.RolledBack = append(fe.RolledBack, s.Component)
		}
	}
	var errs []string
	for _, c := range order {
		errs = append(errs, broken[c])
	}
	fe.RollbackErr = strings.Join(errs, "; ")
	return fe
}
