package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// Runs is the state directory of a cluster: its run lock and journals.
type Runs struct{ Dir string }

func (r Runs) journalDir() string { return filepath.Join(r.Dir, "journal") }

// Lock takes the cluster's run lock.
func (r Runs) Lock(cmdline string) (*resume.Lock, error) {
	return resume.AcquireLock(filepath.Join(r.Dir, "run.lock"), cmdline)
}

// NewID names a run so that names sort by start time (to the nanosecond;
// runs are serialised by the lock, so no two start at the same instant).
func NewID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b)
}

// Start creates the journal of a new run holding its first record. The
// journal appears under its name only once that record is durable, so a
// crash before it leaves no run rather than an empty one.
func (r Runs) Start(id string, command []string, binaryVersion string, plan *Plan) (*resume.Journal, *Run, error) {
	if err := os.MkdirAll(r.journalDir(), 0o755); err != nil {
		return nil, nil, err
	}
	final := filepath.Join(r.journalDir(), id+".wal")
	tmp := filepath.Join(r.journalDir(), "."+id+".wal.tmp")
	j, err := resume.Create(tmp)
	if err != nil {
		return nil, nil, err
	}
	_, err = j.Append(recRunStart, runStart{RunID: id, Kind: "upgrade", Command: command, Binary: binaryVersion, Plan: plan})
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// What the journal cannot read back never becomes a run: one bad
		// value would otherwise block every later command.
		if rerr := readsBack(tmp); rerr != nil {
			os.Remove(tmp)
			return nil, nil, &UsageError{Msg: fmt.Sprintf("the run's plan would not read back from its journal (%v): nothing was changed; check the values given on the command line", rerr)}
		}
		err = durable.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("creating the run journal %s: %w", final, err)
	}
	j, rep, err := resume.Open(final)
	if err != nil {
		return nil, nil, err
	}
	run, err := ReplayRun(rep.Records)
	if err != nil {
		j.Close()
		return nil, nil, err
	}
	return j, run, nil
}

// readsBack replays a journal as a resume would.
func readsBack(path string) error {
	rep, err := resume.Read(path)
	if err != nil {
		return err
	}
	_, err = ReplayRun(rep.Records)
	return err
}

// LockHeld reports whether a run holds the cluster's run lock, and who.
func (r Runs) LockHeld() (bool, string, error) {
	return resume.LockHeld(filepath.Join(r.Dir, "run.lock"))
}

// LatestPath is the journal of the most recent run, "" when there is none.
func (r Runs) LatestPath() (string, error) {
	entries, err := os.ReadDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return filepath.Join(r.journalDir(), names[len(names)-1]), nil
}

// Latest reads the most recent run without changing its journal; nil when
// there was never a run.
func (r Runs) Latest() (*Run, *resume.Replay, error) {
	p, err := r.LatestPath()
	if err != nil || p == "" {
		return nil, nil, err
	}
	rep, err := resume.Read(p)
	if err != nil {
		return nil, nil, err
	}
	run, err := ReplayRun(rep.Records)
	if err != nil {
		return nil, nil, fmt.Errorf("journal %s: %w", p, err)
	}
	return run, &rep, nil
}

// Gather asks every node for its facts, all at once.
func Gather(ctx context.Context, nodes []cluster.Node, tr map[string]cluster.Transport) (map[string]*steps.Facts, error) {
	facts, failed := GatherSome(ctx, nodes, tr)
	for _, n := range nodes {
		if err := failed[n.Name]; err != nil {
			return nil, err
		}
	}
	return facts, nil
}

// GatherSome asks every node at once what it runs, and returns the facts
// of those that answered and the error of each that did not.
func GatherSome(ctx context.Context, nodes []cluster.Node, tr map[string]cluster.Transport) (map[string]*steps.Facts, map[string]error) {
	out := make([]*steps.Facts, len(nodes))
	errs := make([]error, len(nodes))
	g := errgroup.Group{}
	g.SetLimit(16)
	for i, n := range nodes {
		g.Go(func() error {
			var res steps.Result
			if err := tr[n.Name].Call(ctx, steps.OpFacts, steps.Request{}, &res, nil); err != nil {
				errs[i] = err
				return nil
			}
			out[i] = res.Facts
			return nil
		})
	}
	_ = g.Wait()
	m, failed := map[string]*steps.Facts{}, map[string]error{}
	for i, n := range nodes {
		if errs[i] != nil {
			failed[n.Name] = errs[i]
			continue
		}
		m[n.Name] = out[i]
	}
	return m, failed
}

// CheckNodeCaches verifies, on every node at once and changing nothing,
// that its cache holds intact every artifact its fetch steps need: the
// check --skip-download makes before any change.
func CheckNodeCaches(ctx context.Context, plan *Plan, tr map[string]cluster.Transport) error {
	var mu sync.Mutex
	var problems []error
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, np := range plan.Nodes {
		names := map[string]string{}
		var digests []string
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				d := s.Request.Artifact.SHA256
				names[d] = fmt.Sprintf("%s %s (sha256 %.12s)", s.Component, s.Version, d)
				digests = append(digests, d)
			}
		}
		if len(digests) == 0 {
			continue
		}
		g.Go(func() error {
			var res steps.Result
			if err := tr[np.Node].Call(ctx, steps.OpCheckCache, steps.Request{Keep: digests}, &res, nil); err != nil {
				return err
			}
			if len(res.Missing)+len(res.Damaged) == 0 {
				return nil
			}
			e := &MissingArtifactsError{Node: np.Node}
			for _, d := range res.Missing {
				e.Missing = append(e.Missing, names[d])
			}
			for _, d := range res.Damaged {
				e.Damaged = append(e.Damaged, names[d])
			}
			mu.Lock()
			problems = append(problems, e)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return errors.Join(problems...)
}
