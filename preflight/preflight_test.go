package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pass, warn and fail are checks with a fixed outcome.
func pass(name string) Checker {
	return Func(name, func(context.Context) ([]error, []error) { return nil, nil })
}

func warn(name, msg string) Checker {
	return Func(name, func(context.Context) ([]error, []error) { return []error{errors.New(msg)}, nil })
}

func fail(name, msg string) Checker {
	return Func(name, func(context.Context) ([]error, []error) { return nil, []error{errors.New(msg)} })
}

// barrier lets n checks through once all n have arrived; a check that
// waits until its context is done (the Runner's timeout) fails instead.
type barrier struct {
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("only %d of %d nodes' checks started together: the nodes do not run concurrently", b.arrived, b.n)
	}
}

func TestRunChecksNodesConcurrently(t *testing.T) {
	const nodes = 6
	b := newBarrier(nodes)
	checks := map[string][]Checker{}
	for i := range nodes {
		node := fmt.Sprintf("dea-%d", i)
		checks[node] = []Checker{
			pass(NameDiskSpace),
			Func(NameMemory, func(ctx context.Context) ([]error, []error) {
				if err := b.wait(ctx); err != nil {
					return nil, []error{err}
				}
				return nil, nil
			}),
		}
	}
	rep := Runner{Timeout: 10 * time.Second}.Run(context.Background(), checks, nil)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2*nodes {
		t.Fatalf("%d results, want %d:\n%s", len(rep.Results), 2*nodes, rep)
	}
}

func TestRunBoundsConcurrentNodes(t *testing.T) {
	var running, most atomic.Int32
	check := Func(NameMemory, func(context.Context) ([]error, []error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		return nil, nil
	})
	checks := map[string][]Checker{}
	for i := range 20 {
		checks[fmt.Sprintf("n%02d", i)] = []Checker{check, check}
	}
	rep := Runner{Nodes: 2}.Run(context.Background(), checks, nil)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d checks ran at once with Nodes: 2 (the checks of one node run in order)", m)
	}
}

func TestRunIgnore(t *testing.T) {
	checks := map[string][]Checker{
		"core":  {fail(NameDiskSpace, "disk too small"), pass(NameReachability)},
		"dea-1": {fail(NameMemory, "memory too small"), warn(NameReachability, "slow")},
	}
	tests := []struct {
		ignore   string
		statuses map[string]string // node/check -> status
		ignored  []string
		failures []string
	}{
		{
			ignore:   "",
			statuses: map[string]string{"core/DiskSpace": "FAIL", "core/Reachability": "PASS", "dea-1/Memory": "FAIL", "dea-1/Reachability": "WARN"},
			failures: []string{"node core: check DiskSpace: disk too small", "node dea-1: check Memory: memory too small"},
		},
		{
			ignore:   "memory",
			statuses: map[string]string{"core/DiskSpace": "FAIL", "core/Reachability": "PASS", "dea-1/Memory": "WARN", "dea-1/Reachability": "WARN"},
			ignored:  []string{"dea-1/Memory"},
			failures: []string{"node core: check DiskSpace: disk too small"},
		},
		{
			ignore:   "Memory,DiskSpace",
			statuses: map[string]string{"core/DiskSpace": "WARN", "core/Reachability": "PASS", "dea-1/Memory": "WARN", "dea-1/Reachability": "WARN"},
			ignored:  []string{"core/DiskSpace", "dea-1/Memory"},
		},
		{
			ignore:   "all",
			statuses: map[string]string{"core/DiskSpace": "WARN", "core/Reachability": "PASS", "dea-1/Memory": "WARN", "dea-1/Reachability": "WARN"},
			ignored:  []string{"core/DiskSpace", "dea-1/Memory"},
		},
	}
	for _, tt := range tests {
		t.Run("ignore="+tt.ignore, func(t *testing.T) {
			ignore, err := ParseIgnore(tt.ignore, Names())
			if err != nil {
				t.Fatal(err)
			}
			rep := Run(context.Background(), checks, ignore)
			statuses := map[string]string{}
			var ignored []string
			for _, r := range rep.Results {
				statuses[r.Node+"/"+r.Check] = r.Status
				if r.Ignored {
					ignored = append(ignored, r.Node+"/"+r.Check)
					if len(r.Messages) == 0 || len(r.Errs) == 0 {
						t.Errorf("ignored %s/%s lost its error: %+v", r.Node, r.Check, r)
					}
				}
			}
			if !reflect.DeepEqual(statuses, tt.statuses) {
				t.Errorf("statuses %v, want %v", statuses, tt.statuses)
			}
			if !reflect.DeepEqual(ignored, tt.ignored) {
				t.Errorf("ignored %v, want %v", ignored, tt.ignored)
			}
			err = rep.Err()
			if len(tt.failures) == 0 {
				if err != nil {
					t.Errorf("Err() = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Err() = %v, want an *Error", err)
			}
			var got []string
			for _, f := range e.Failures {
				got = append(got, f.Error())
			}
			if !reflect.DeepEqual(got, tt.failures) {
				t.Errorf("failures %q, want %q", got, tt.failures)
			}
			if !strings.Contains(rep.String(), "(ignored)") && len(tt.ignored) > 0 {
				t.Errorf("the text report does not mark ignored checks:\n%s", rep)
			}
		})
	}
}

func TestParseIgnore(t *testing.T) {
	tests := []struct {
		list    string
		has     []string // checks ignored
		hasNot  []string
		wantErr []string // substrings of the error
	}{
		{list: "", hasNot: []string{"Memory", "DiskSpace"}},
		{list: "Memory", has: []string{"Memory", "memory", "MEMORY"}, hasNot: []string{"DiskSpace"}},
		{list: " memory , DISKSPACE,, ", has: []string{"Memory", "DiskSpace"}, hasNot: []string{"RunLock"}},
		{list: "all", has: Names()},
		{list: "ALL", has: []string{"Customizations", "anything at all"}},
		{list: "Memroy", wantErr: []string{`unknown check "Memroy"`, "known: DiskSpace, Memory, Reachability", "Customizations", "or all"}},
		{list: "Memory,Foo,bar", wantErr: []string{`unknown checks "Foo", "bar"`}},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			set, err := ParseIgnore(tt.list, Names())
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, set %v", set)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.has {
				if !set.Has(n) {
					t.Errorf("%s not ignored", n)
				}
			}
			for _, n := range tt.hasNot {
				if set.Has(n) {
					t.Errorf("%s ignored", n)
				}
			}
		})
	}
}

func TestRunPanicAndTimeoutFail(t *testing.T) {
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // lets the abandoned check end
	checks := map[string][]Checker{
		"core": {
			Func(NameRunLock, func(context.Context) ([]error, []error) { panic("lock table is nil") }),
			Func(NameMemory, func(context.Context) ([]error, []error) { <-stuck; return nil, nil }), // ignores its context
			Func(NameDiskSpace, func(ctx context.Context) ([]error, []error) { <-ctx.Done(); return nil, []error{ctx.Err()} }),
			pass(NameReachability), // after the stuck ones: still runs
		},
		"dea-1": {pass(NameMemory)},
	}
	rep := Runner{Timeout: 100 * time.Millisecond}.Run(context.Background(), checks, nil)
	want := map[string]string{"core/RunLock": "FAIL", "core/Memory": "FAIL", "core/DiskSpace": "FAIL", "core/Reachability": "PASS", "dea-1/Memory": "PASS"}
	for _, r := range rep.Results {
		key := r.Node + "/" + r.Check
		if r.Status != want[key] {
			t.Errorf("%s: %s %q, want %s", key, r.Status, r.Messages, want[key])
		}
		switch key {
		case "core/RunLock":
			var pe *PanicError
			if len(r.Errs) != 1 || !errors.As(r.Errs[0], &pe) || len(pe.Stack) == 0 || !strings.Contains(r.Messages[0], "panicked") || !strings.Contains(r.Messages[0], "lock table is nil") {
				t.Errorf("panic reported as %q", r.Messages)
			}
		case "core/Memory", "core/DiskSpace":
			var te *TimeoutError
			if len(r.Errs) != 1 || !errors.As(r.Errs[0], &te) || !errors.Is(r.Errs[0], context.DeadlineExceeded) {
				t.Errorf("timeout reported as %q: want exactly one TimeoutError", r.Messages)
			}
			if r.Messages[0] != "the check did not finish within 100ms" {
				t.Errorf("timeout message %q", r.Messages[0])
			}
		}
	}
	if len(rep.Results) != len(want) {
		t.Errorf("%d results, want %d:\n%s", len(rep.Results), len(want), rep)
	}
	// A timed-out check can be ignored like any other.
	rep = Runner{Timeout: 10 * time.Millisecond}.Run(context.Background(), map[string][]Checker{"core": checks["core"][1:2]}, IgnoreSet{"memory": true})
	if r := rep.Results[0]; r.Status != StatusWarn || !r.Ignored {
		t.Errorf("ignored timeout: %+v", r)
	}
}

func TestRunInterrupted(t *testing.T) {
	all := IgnoreSet{"all": true}
	ctx, cancel := context.WithCancel(context.Background())
	checks := map[string][]Checker{
		"core": {
			Func(NameRunLock, func(ctx context.Context) ([]error, []error) {
				cancel() // the operator presses Ctrl-C while this runs
				<-ctx.Done()
				return nil, []error{ctx.Err()}
			}),
			pass(NameMemory), // never starts
		},
	}
	rep := Run(ctx, checks, all)
	got := map[string]string{}
	for _, r := range rep.Results {
		if r.Status != StatusFail || r.Ignored {
			t.Errorf("%s: %s ignored=%v: an interruption fails even with all ignored", r.Check, r.Status, r.Ignored)
		}
		got[r.Check] = strings.Join(r.Messages, "; ")
	}
	if want := "interrupted before the check finished: context canceled"; got[NameRunLock] != want {
		t.Errorf("RunLock: %q, want %q", got[NameRunLock], want)
	}
	if want := "not run: context canceled"; got[NameMemory] != want {
		t.Errorf("Memory: %q, want %q", got[NameMemory], want)
	}
	err := rep.Err()
	if err == nil || !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "--ignore-preflight-errors") {
		t.Errorf("Err() = %v: want context.Canceled, with no advice to ignore an interruption", err)
	}
}

// notFound is a typed error a check might return.
type notFound struct{ artifact string }

func (e *notFound) Error() string { return e.artifact + " is not in the node cache" }

func TestReportErrListsFailures(t *testing.T) {
	checks := map[string][]Checker{
		"":      {fail(NameRunLock, "another run holds the lock")},
		"dea-1": {fail(NameMemory, "500.0 MiB available, 512.0 MiB needed")},
		"dea-2": {
			fail(NameMemory, "100.0 MiB available, 512.0 MiB needed"),
			Func(NameArtifactsPresent, func(context.Context) ([]error, []error) {
				return nil, []error{&notFound{"router-3.4.2.tgz"}, fmt.Errorf("checking: %w", fs.ErrPermission)}
			}),
		},
		"core": {pass(NameMemory)},
	}
	err := Run(context.Background(), checks, nil).Err()
	if err == nil {
		t.Fatal("no error")
	}
	want := `preflight found 5 errors:
  check RunLock: another run holds the lock
  node dea-1: check Memory: 500.0 MiB available, 512.0 MiB needed
  node dea-2: check ArtifactsPresent: router-3.4.2.tgz is not in the node cache
  node dea-2: check ArtifactsPresent: checking: permission denied
  node dea-2: check Memory: 100.0 MiB available, 512.0 MiB needed
to ignore one, add --ignore-preflight-errors=NAME with NAME one of RunLock, Memory, ArtifactsPresent (several: comma-separated; or all)`
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	var f *Failure
	if !errors.As(err, &f) || f.Node != "" || f.Check != NameRunLock {
		t.Errorf("errors.As gave %+v, want the RunLock failure first", f)
	}
	var nf *notFound
	if !errors.As(err, &nf) || nf.artifact != "router-3.4.2.tgz" {
		t.Errorf("errors.As does not reach the check's own error type: %+v", nf)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("errors.Is does not reach a wrapped error of a check")
	}
	var nodes []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var f *Failure
		if errors.As(e, &f) {
			nodes = append(nodes, f.Node+"/"+f.Check)
		}
	}
	if want := []string{"/RunLock", "dea-1/Memory", "dea-2/ArtifactsPresent", "dea-2/ArtifactsPresent", "dea-2/Memory"}; !reflect.DeepEqual(nodes, want) {
		t.Errorf("failures %v, want %v", nodes, want)
	}

	one := Run(context.Background(), map[string][]Checker{"dea-1": {fail(NameMemory, "low"), fail(NameMemory, "lower")}}, nil).Err()
	if !strings.HasSuffix(one.Error(), "\nto ignore one, add --ignore-preflight-errors=Memory (or all)") {
		t.Errorf("error %q: want it to end saying how to ignore Memory", one)
	}
}

func TestReportOrderIsStable(t *testing.T) {
	checks := map[string][]Checker{
		"router": {warn(NameReachability, "r"), pass(NameDiskSpace)},
		"":       {pass(NameRunLock), pass(NameMaintenanceMode)},
		"core":   {warn(NameDiskSpace, "second /s"), warn(NameDiskSpace, "first? no, third"), pass(NameMemory), warn(NameDiskSpace, "fourth")},
		"dea-1":  {pass(NameMemory)},
	}
	var first []string
	for i := range 20 {
		rep := Run(context.Background(), checks, nil)
		var order []string
		for _, r := range rep.Results {
			order = append(order, r.Node+"/"+r.Check+"/"+strings.Join(r.Messages, ""))
		}
		if i == 0 {
			first = order
			want := []string{
				"/MaintenanceMode/", "/RunLock/",
				"core/DiskSpace/second /s", "core/DiskSpace/first? no, third", "core/DiskSpace/fourth", "core/Memory/",
				"dea-1/Memory/",
				"router/DiskSpace/", "router/Reachability/r",
			}
			if !reflect.DeepEqual(order, want) {
				t.Fatalf("order\n%q\nwant\n%q", order, want)
			}
		} else if !reflect.DeepEqual(order, first) {
			t.Fatalf("run %d ordered\n%q\nrun 0\n%q", i, order, first)
		}
	}
}

func TestReportJSON(t *testing.T) {
	rep := Run(context.Background(), map[string][]Checker{"dea-1": {fail(NameMemory, "low"), pass(NameDiskSpace)}}, IgnoreSet{"memory": true})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"results":[{"node":"dea-1","check":"DiskSpace","status":"PASS"},{"node":"dea-1","check":"Memory","status":"WARN","messages":["low"],"ignored":true}]}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
}

// A failure no flag lets by is not offered --ignore-preflight-errors: the
// advice would only lead the operator round in a loop.
func TestErrorOffersIgnoreOnlyForIgnorable(t *testing.T) {
	only := &Error{Failures: []*Failure{{Node: "n1", Check: NameArtifactsPresent, Err: Unignorable(errors.New("missing"))}}}
	if strings.Contains(only.Error(), "ignore-preflight-errors") {
		t.Errorf("an unignorable failure is offered the flag:\n%s", only.Error())
	}
	mixed := &Error{Failures: append(only.Failures, &Failure{Node: "n1", Check: NameDiskSpace, Err: errors.New("full")})}
	if msg := mixed.Error(); !strings.Contains(msg, "--ignore-preflight-errors="+NameDiskSpace+" (or all)") {
		t.Errorf("an ignorable failure is not offered the flag:\n%s", msg)
	}
}
