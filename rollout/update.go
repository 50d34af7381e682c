package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/release"
)

// What a run does with a node that goes wrong, defined here once (the
// operator's guide, "When a node goes wrong", says the same):
//
//   - A node that cannot be reached, after its retries, interrupts the run
//     (InterruptedError, exit 75): nothing is known of what it did, so
//     nothing is rolled back. `--resume` tries it again; `--resume
//     --exclude-node NAME --reason TEXT` leaves it out, journaled, and the
//     run finishes the others. A later run catches the node up.
//   - A node whose step fails while its components are replaced is rolled
//     back (StepFailedError): one failure of the run's budget
//     (--max-failures, default 0). Within the budget a node that is not
//     the core and not a canary lets the run go on with the others; past
//     it, or on the core or a canary, the run stops (exit 1).
//   - A run whose every other node is done, with nodes excluded or failed
//     within the budget, ends "partial" and returns *PartialError (exit 4
//     when nodes were excluded only, 5 when some failed).

// RunPartial is the status of a run that finished every node it could,
// with some excluded or failed within its failure budget.
const RunPartial = "partial"

// PartialError is a run that finished without some of its nodes: those
// excluded by the operator and those that failed within the budget (rolled
// back). Nothing is left half done.
type PartialError struct {
	RunID    string
	To       string
	Excluded []Exclusion
	Failed   []error // *StepFailedError, one per node rolled back
	Advice   Advice
}

// FailedNodes names the nodes that failed within the budget.
func (e *PartialError) FailedNodes() []string {
	var out []string
	for _, f := range e.Failed {
		var fe *StepFailedError
		if errors.As(f, &fe) {
			out = append(out, fe.Node)
		}
	}
	return out
}

func (e *PartialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s done without %d node(s)", e.RunID, len(e.Excluded)+len(e.Failed))
	for _, x := range e.Excluded {
		fmt.Fprintf(&b, "\n  %s: excluded by %s@%s: %s", x.Node, x.By, x.Host, x.Reason)
	}
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "\n  %s", f.Error())
	}
	fmt.Fprintf(&b, "\nThose nodes are behind; once they are fixed, `%s` catches them up", e.Advice.rerun()+catchUpTarget(e.To))
	return b.String()
}

func catchUpTarget(to string) string {
	if to == "" {
		return ""
	}
	return " " + to
}

// Amount is a number of nodes, or a percentage of them ("2", "25%").
type Amount struct {
	N       int
	Percent bool
}

// ParseAmount reads "N" or "P%"; what says which flag or field it is.
func ParseAmount(what, s string) (Amount, error) {
	s = strings.TrimSpace(s)
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil:
		return Amount{}, fmt.Errorf("%s %q: want a number of nodes (2) or a percentage of them (25%%)", what, s)
	case n < 0:
		return Amount{}, fmt.Errorf("%s %q: must not be negative", what, s)
	case pct && n > 100:
		return Amount{}, fmt.Errorf("%s %q: a percentage goes up to 100%%", what, s)
	}
	return Amount{N: n, Percent: pct}, nil
}

// Of is the amount among total nodes, rounded down.
func (a Amount) Of(total int) int {
	if !a.Percent {
		return a.N
	}
	return total * a.N / 100
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// UpdateSpec is how a run's nodes go, as written in the cluster file's
// update: block or given by flags; "" leaves a setting to the one below.
type UpdateSpec struct {
	Canaries    string
	WatchTime   string
	MaxInFlight string
	MaxFailures string
	// ClosingRestart is "true" or "false" (restart.go).
	ClosingRestart string
}

// Over returns s with the settings it leaves empty taken from base.
func (s UpdateSpec) Over(base UpdateSpec) UpdateSpec {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return UpdateSpec{Canaries: pick(s.Canaries, base.Canaries), WatchTime: pick(s.WatchTime, base.WatchTime),
		MaxInFlight: pick(s.MaxInFlight, base.MaxInFlight), MaxFailures: pick(s.MaxFailures, base.MaxFailures),
		ClosingRestart: pick(s.ClosingRestart, base.ClosingRestart)}
}

// maxWatchTime bounds --watch-time: longer is a typo, not a watch.
const maxWatchTime = 24 * time.Hour

// Update is an UpdateSpec read and checked.
type Update struct {
	Canaries    int
	WatchTime   time.Duration
	MaxInFlight Amount // zero: one at a time
	MaxFailures Amount
	// ClosingRestart restarts, after the core, every node upgraded before it.
	ClosingRestart bool
}

// Parse checks every setting; the error names the first bad one as where
// says it came from ("--max-failures", "update.max_failures").
func (s UpdateSpec) Parse(name func(field string) string) (Update, error) {
	var u Update
	var err error
	if s.Canaries != "" {
		if u.Canaries, err = strconv.Atoi(strings.TrimSpace(s.Canaries)); err != nil || u.Canaries < 0 {
			return u, fmt.Errorf("%s %q: want a number of nodes per redundant role (0 or more)", name("canaries"), s.Canaries)
		}
	}
	if s.WatchTime != "" {
		if u.WatchTime, err = time.ParseDuration(strings.TrimSpace(s.WatchTime)); err != nil || u.WatchTime < 0 || u.WatchTime > maxWatchTime {
			return u, fmt.Errorf("%s %q: want a duration from 0s to %s, such as 30s or 2m", name("watch-time"), s.WatchTime, maxWatchTime)
		}
	}
	if s.MaxInFlight != "" {
		if u.MaxInFlight, err = ParseAmount(name("max-in-flight"), s.MaxInFlight); err != nil {
			return u, err
		}
		if u.MaxInFlight.N == 0 {
			return u, fmt.Errorf("%s %q: must be 1 or more (or a percentage above 0%%)", name("max-in-flight"), s.MaxInFlight)
		}
	}
	if s.MaxFailures != "" {
		if u.MaxFailures, err = ParseAmount(name("max-failures"), s.MaxFailures); err != nil {
			return u, err
		}
	}
	if s.ClosingRestart != "" {
		if u.ClosingRestart, err = strconv.ParseBool(s.ClosingRestart); err != nil {
			return u, fmt.Errorf("%s %q: want true or false", name("closing-restart"), s.ClosingRestart)
		}
	}
	return u, nil
}

// apply fixes the update's settings in the plan, percentages taken of the
// nodes that have work (the core aside for the failure budget).
func (u Update) apply(p *Plan) {
	working, nonCore := 0, 0
	for _, np := range p.Nodes {
		if np.Skip == "" {
			working++
			if !isCore(np) {
				nonCore++
			}
		}
	}
	p.MaxInFlight = 0
	if u.MaxInFlight.N > 0 {
		p.MaxInFlight = max(1, u.MaxInFlight.Of(working))
	}
	p.MaxFailures = u.MaxFailures.Of(nonCore)
	p.Canaries = u.Canaries
	p.WatchTime = release.Duration(u.WatchTime)
}

// MaxInFlightOf resolves an --max-in-flight given on resume against the
// resumed plan.
func (p *Plan) MaxInFlightOf(a Amount) int {
	return max(1, a.Of(len(p.WorkingNodes())))
}
