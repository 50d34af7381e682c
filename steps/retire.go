package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// DEA retirement: before a DEA is upgraded its app instances move to the
// other DEAs. dea_ng's drain hook follows the contract of BOSH drain
// scripts: it exits 0 and prints an integer N; N >= 0: wait N seconds and
// the DEA is drained; N < 0: wait -N seconds and call it again; a non-zero
// exit fails. The contract has no overall limit; sentinel adds one
// (OpRetire, OpUnretire).

// DefaultDrainDeadline bounds a DEA's drain unless the run says otherwise.
const DefaultDrainDeadline = 10 * time.Minute

// DrainDeadlineError: the DEA did not drain in time. The run stops, and
// can be resumed (or resumed with --skip-drain).
type DrainDeadlineError struct {
	Node     string
	Deadline time.Duration
	Calls    int
}

func (e *DrainDeadlineError) Error() string {
	return fmt.Sprintf("DEA %s did not drain within %s (its drain hook asked for more time %d times): its apps are still on it, so it was not upgraded; check its instances, then run `sentinel upgrade --resume` (with --skip-drain to upgrade it anyway: its apps stop meanwhile)",
		e.Node, e.Deadline, e.Calls)
}

func (a *Agent) retire(ctx context.Context, req Request) (Result, error) {
	if req.SkipDrain {
		return Result{Note: "drain skipped (--skip-drain): the apps on this DEA stop while it is upgraded"}, nil
	}
	cur, err := a.currentVersion("dea_ng")
	if err != nil || cur == "" {
		return Result{Note: "no dea_ng here: nothing to drain"}, err
	}
	deadline := time.Duration(req.DrainDeadline)
	if deadline <= 0 {
		deadline = DefaultDrainDeadline
	}
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	dir := a.Layout.ReleaseDir("dea_ng", cur)
	env := hookEnv{Root: a.Layout.Root, Node: a.Node, Component: "dea_ng", Version: cur}
	for calls := 1; ; calls++ {
		n, err := a.drainOnce(dctx, dir, env)
		if err != nil {
			if dctx.Err() != nil && ctx.Err() == nil {
				return Result{}, &DrainDeadlineError{Node: a.Node, Deadline: deadline, Calls: calls}
			}
			return Result{}, err
		}
		if n == nil {
			return Result{Note: "dea_ng ships no drain hook: nothing to drain"}, nil
		}
		wait := time.Duration(*n) * time.Second
		if *n < 0 {
			wait = -wait
			a.logf("DEA %s still draining (call %d): the drain hook asks to wait %s and call again", a.Node, calls, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-dctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			if *n >= 0 {
				return Result{Note: fmt.Sprintf("drained after %d call(s)", calls)}, nil
			}
			return Result{}, &DrainDeadlineError{Node: a.Node, Deadline: deadline, Calls: calls}
		case <-t.C:
		}
		if *n >= 0 {
			return Result{Changed: true, Note: fmt.Sprintf("drained after %d call(s)", calls)}, nil
		}
	}
}

// drainOnce runs the drain hook and reads the integer it prints; nil when
// there is no drain hook.
func (a *Agent) drainOnce(ctx context.Context, dir string, env hookEnv) (*int, error) {
	out, err := os.CreateTemp(a.Layout.TmpDir(), "drain-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ran, err := a.runHookTo(ctx, dir, "drain", env, time.Minute, out, true)
	if !ran {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, errors.New("the drain hook of dea_ng printed " + strconv.Quote(strings.TrimSpace(string(data))) + ", not an integer (the BOSH drain contract)")
	}
	return &n, nil
}

func (a *Agent) unretire(ctx context.Context, _ Request) (Result, error) {
	cur, err := a.currentVersion("dea_ng")
	if err != nil || cur == "" {
		return Result{Note: "no dea_ng here"}, err
	}
	ran, err := a.runHook(ctx, a.Layout.ReleaseDir("dea_ng", cur), "unretire", hookEnv{Root: a.Layout.Root, Node: a.Node, Component: "dea_ng", Version: cur}, time.Minute)
	if !ran {
		return Result{Note: "dea_ng ships no unretire hook"}, nil
	}
	return Result{Changed: true, Note: "the DEA takes instances again"}, err
}
