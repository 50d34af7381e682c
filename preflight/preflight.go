// Package preflight checks every node before an upgrade changes anything,
// in the manner of kubeadm's preflight: a check is a small value with a
// stable name and a Check method; operators can ignore a check by name
// (--ignore-preflight-errors NAME,...|all), which turns its errors into
// warnings. Unlike kubeadm, checks take a context (each runs under its own
// timeout), a check that panics or hangs fails instead of taking the run
// down, and every failure stays inspectable with errors.As (*Failure, and
// whatever error the check returned beneath it).
//
// The node probes (Disk, Memory, Reach) run on the node, in the agent, and
// return plain facts; the checks (DiskCheck, MemoryCheck, ReachCheck) run
// on the orchestrator and compare those facts with the thresholds.
package preflight

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// The stable names of sentinel's checks: what users pass to
// --ignore-preflight-errors. Checkers living in other packages use these.
const (
	NameDiskSpace        = "DiskSpace"
	NameMemory           = "Memory"
	NameReachability     = "Reachability"
	NameReleaseVersion   = "ReleaseVersion"
	NameArtifactsPresent = "ArtifactsPresent"
	NameDEACapacity      = "DEACapacity"
	NameRunLock          = "RunLock"
	NameMaintenanceMode  = "MaintenanceMode"
	NameCustomizations   = "Customizations"
	// NameNodeReachable fails when a node could not be probed at all; it
	// cannot be ignored: nothing is known about that node.
	NameNodeReachable = "NodeReachable"
)

// Names lists every check name sentinel knows, for ParseIgnore and help texts.
func Names() []string {
	return []string{
		NameDiskSpace, NameMemory, NameReachability, NameReleaseVersion, NameArtifactsPresent,
		NameDEACapacity, NameRunLock, NameMaintenanceMode, NameCustomizations, NameNodeReachable, NameClockSkew,
	}
}

// Unignorable marks a failure that --ignore-preflight-errors, even "all",
// does not turn into a warning: going on would break a promise (a node
// nothing is known about, --skip-download without the artifacts).
func Unignorable(err error) error { return &unignorableError{err} }

type unignorableError struct{ error }

func (e *unignorableError) Unwrap() error { return e.error }

func anyUnignorable(errs []error) bool {
	for _, e := range errs {
		var u *unignorableError
		if errors.As(e, &u) {
			return true
		}
	}
	return false
}

// Checker is one check on one node (or cluster-wide: node ""). Name is
// stable: users pass it to --ignore-preflight-errors. Check should return
// once ctx is done; one that does not is abandoned and fails.
type Checker interface {
	Name() string
	Check(ctx context.Context) (warnings, errs []error)
}

// Func makes a Checker of a function, for checks that need no type of their own.
func Func(name string, check func(ctx context.Context) (warnings, errs []error)) Checker {
	return funcChecker{name, check}
}

type funcChecker struct {
	name  string
	check func(ctx context.Context) (warnings, errs []error)
}

func (f funcChecker) Name() string                                       { return f.name }
func (f funcChecker) Check(ctx context.Context) (warnings, errs []error) { return f.check(ctx) }

// Statuses of a Result.
const (
	StatusPass = "PASS"
	StatusWarn = "WARN" // warnings, or errors of an ignored check
	StatusFail = "FAIL"
)

// Defaults of a Runner.
const (
	DefaultTimeout = 30 * time.Second // per check
	DefaultNodes   = 8                // nodes checked at once
)

// Runner runs checks. The zero value uses the defaults.
type Runner struct {
	Timeout time.Duration // per check; 0 means DefaultTimeout
	Nodes   int           // nodes checked at once; 0 means DefaultNodes
}

// Run runs the checks with the default Runner.
func Run(ctx context.Context, checks map[string][]Checker, ignore IgnoreSet) *Report {
	return Runner{}.Run(ctx, checks, ignore)
}

// Run runs every node's checks (node name -> checks), the nodes
// concurrently and the checks of one node in order, and reports on each.
// Errors of the checks that ignore names become warnings marked ignored.
// Once ctx is done the checks still running fail as interrupted and the
// others as not run; those failures cannot be ignored.
func (rn Runner) Run(ctx context.Context, checks map[string][]Checker, ignore IgnoreSet) *Report {
	nodes := make([]string, 0, len(checks))
	for n := range checks {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	perNode := make([][]Result, len(nodes))
	var g errgroup.Group
	g.SetLimit(cmp.Or(rn.Nodes, DefaultNodes))
	for i, node := range nodes {
		g.Go(func() error {
			for _, c := range checks[node] {
				if c != nil {
					perNode[i] = append(perNode[i], rn.runOne(ctx, node, c, ignore))
				}
			}
			return nil
		})
	}
	_ = g.Wait() // the closures return no errors
	rep := &Report{Results: slices.Concat(perNode...)}
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Check, b.Check))
	})
	return rep
}

func (rn Runner) runOne(ctx context.Context, node string, c Checker, ignore IgnoreSet) Result {
	res := Result{Node: node, Check: checkName(c)}
	if d, ok := c.(detailer); ok {
		res.Detail = d.Detail()
	}
	if ctx.Err() != nil {
		return res.finish([]error{&interruptedError{started: false, cause: context.Cause(ctx)}}, nil, false)
	}
	timeout := cmp.Or(rn.Timeout, DefaultTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	type outcome struct{ warnings, errs []error }
	done := make(chan outcome, 1) // buffered: an abandoned check does not block forever
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- outcome{errs: []error{&PanicError{Value: v, Stack: debug.Stack()}}}
			}
		}()
		w, e := c.Check(cctx)
		done <- outcome{w, e}
	}()

	var out outcome
	finished := false
	select {
	case out = <-done:
		finished = true
	case <-cctx.Done():
		select {
		case out = <-done: // finished just in time
			finished = true
		default: // abandoned: it goes on in the background, its result unread
		}
	}
	errs := nonNil(out.errs)
	interrupted := ctx.Err() != nil
	timedOut := !interrupted && cctx.Err() != nil
	switch {
	case interrupted && (!finished || len(errs) > 0):
		// Whatever the check said, it could not do its job.
		errs = append([]error{&interruptedError{started: true, cause: context.Cause(ctx)}}, withoutContextErrs(errs)...)
		return res.finish(errs, out.warnings, false)
	case timedOut && (!finished || len(errs) > 0):
		// Say so plainly rather than "context deadline exceeded".
		errs = append([]error{&TimeoutError{After: timeout}}, withoutContextErrs(errs)...)
	}
	return res.finish(errs, out.warnings, ignore.Has(res.Check) && !anyUnignorable(errs))
}

// withoutContextErrs drops the errors that only repeat that the context is done.
func withoutContextErrs(errs []error) []error {
	var out []error
	for _, e := range errs {
		if !errors.Is(e, context.Canceled) && !errors.Is(e, context.DeadlineExceeded) {
			out = append(out, e)
		}
	}
	return out
}

// checkName is c.Name(), or its type if Name panics.
func checkName(c Checker) (name string) {
	defer func() {
		if recover() != nil {
			name = fmt.Sprintf("%T", c)
		}
	}()
	return c.Name()
}

func nonNil(errs []error) []error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

func (r Result) finish(errs, warnings []error, ignorable bool) Result {
	warnings = nonNil(warnings)
	r.Errs = errs
	for _, e := range errs {
		r.Messages = append(r.Messages, e.Error())
	}
	for _, w := range warnings {
		r.Messages = append(r.Messages, w.Error())
	}
	switch {
	case len(errs) > 0 && ignorable:
		r.Status, r.Ignored = StatusWarn, true
	case len(errs) > 0:
		r.Status = StatusFail
	case len(warnings) > 0:
		r.Status = StatusWarn
	default:
		r.Status = StatusPass
	}
	return r
}

// Report is the outcome of a Run: one Result per check, sorted by node
// (cluster-wide checks, node "", first) then check name; checks of the same
// name on one node keep the order they were given in.
type Report struct {
	Results []Result `json:"results"`
}

// Result is the outcome of one check on one node.
type Result struct {
	Node     string   `json:"node"` // "" for a cluster-wide check
	Check    string   `json:"check"`
	Status   string   `json:"status"`             // StatusPass, StatusWarn or StatusFail
	Messages []string `json:"messages,omitempty"` // the errors, then the warnings
	Ignored  bool     `json:"ignored,omitempty"`  // the check failed and was ignored: Status is WARN
	Errs     []error  `json:"-"`                  // the errors (also when ignored)
	// Detail: the figures a passing check compared (disk, memory), so that
	// a PASS can be read too.
	Detail string `json:"detail,omitempty"`
}

// detailer is a check that can say what it compared.
type detailer interface{ Detail() string }

// Err is nil when no check failed, else an *Error listing every failure
// and saying how to ignore a check.
func (r *Report) Err() error {
	var e Error
	for _, res := range r.Results {
		if res.Status != StatusFail {
			continue
		}
		for _, err := range res.Errs {
			e.Failures = append(e.Failures, &Failure{Node: res.Node, Check: res.Check, Err: err})
		}
	}
	if len(e.Failures) == 0 {
		return nil
	}
	return &e
}

// String renders the report, one line per check and message:
//
//	[PASS] core: DiskSpace
//	[FAIL] dea-1: Memory: 500.0 MiB available ...
//	[WARN] dea-1: Reachability (ignored): reaching ...
func (r *Report) String() string {
	var b strings.Builder
	for _, res := range r.Results {
		head := fmt.Sprintf("[%s] %s: %s", res.Status, where(res.Node), res.Check)
		if res.Ignored {
			head += " (ignored)"
		}
		if len(res.Messages) == 0 {
			fmt.Fprintln(&b, head)
		}
		for _, m := range res.Messages {
			fmt.Fprintf(&b, "%s: %s\n", head, m)
		}
	}
	return b.String()
}

func where(node string) string {
	if node == "" {
		return "cluster"
	}
	return node
}

// Error is what Report.Err returns: every failure of a run. errors.As
// finds each *Failure, and the errors the checks returned beneath them.
type Error struct {
	Failures []*Failure
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "preflight found %d %s:", len(e.Failures), plural(len(e.Failures), "error", "errors"))
	var names []string
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  %s", strings.ReplaceAll(f.Error(), "\n", "\n    "))
		var ie *interruptedError
		var ue *unignorableError // no flag lets it by: do not offer one
		if !errors.As(f.Err, &ie) && !errors.As(f.Err, &ue) && !slices.Contains(names, f.Check) {
			names = append(names, f.Check)
		}
	}
	switch len(names) {
	case 0:
	case 1:
		fmt.Fprintf(&b, "\nto ignore one, add --ignore-preflight-errors=%s (or all)", names[0])
	default:
		fmt.Fprintf(&b, "\nto ignore one, add --ignore-preflight-errors=NAME with NAME one of %s (several: comma-separated; or all)", strings.Join(names, ", "))
	}
	return b.String()
}

// Unwrap gives the failures, for errors.As and errors.Is.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f
	}
	return errs
}

// Failure is one error of one failed check on one node (Node "" for a
// cluster-wide check).
type Failure struct {
	Node, Check string
	Err         error
}

func (f *Failure) Error() string {
	if f.Node == "" {
		return fmt.Sprintf("check %s: %v", f.Check, f.Err)
	}
	return fmt.Sprintf("node %s: check %s: %v", f.Node, f.Check, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

// PanicError is the failure of a check that panicked.
type PanicError struct {
	Value any
	Stack []byte // of the panicking goroutine, for a log; not in the message
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("the check panicked (a bug in sentinel): %v", e.Value)
}

// TimeoutError is the failure of a check that did not finish within the
// Runner's timeout. errors.Is(err, context.DeadlineExceeded) holds.
type TimeoutError struct {
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("the check did not finish within %s", e.After)
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// interruptedError is the failure of a check cut short (or never started)
// because the run's context was done. It cannot be ignored.
type interruptedError struct {
	started bool
	cause   error
}

func (e *interruptedError) Error() string {
	if e.started {
		return fmt.Sprintf("interrupted before the check finished: %v", e.cause)
	}
	return fmt.Sprintf("not run: %v", e.cause)
}

func (e *interruptedError) Unwrap() error { return e.cause }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// IgnoreSet is the set of check names whose errors become warnings, in
// lower case; "all" ignores every check. The zero value ignores nothing.
type IgnoreSet map[string]bool

// Has reports whether the errors of the check called name are ignored.
func (s IgnoreSet) Has(name string) bool {
	return s["all"] || s[strings.ToLower(name)]
}

// ParseIgnore reads the value of --ignore-preflight-errors: check names
// separated by commas, matched case-insensitively against known (as
// kubeadm does), or "all". An unknown name is an error naming it and
// listing the known ones, so a typo does not silently ignore nothing.
func ParseIgnore(list string, known []string) (IgnoreSet, error) {
	set := IgnoreSet{}
	var unknown []string
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		low := strings.ToLower(item)
		if low == "all" || slices.ContainsFunc(known, func(k string) bool { return strings.EqualFold(k, item) }) {
			set[low] = true
			continue
		}
		unknown = append(unknown, fmt.Sprintf("%q", item))
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--ignore-preflight-errors: unknown %s %s (known: %s, or all)",
			plural(len(unknown), "check", "checks"), strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return set, nil
}
