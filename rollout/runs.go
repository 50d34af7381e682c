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
	"syscall"
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
	l, err := resume.AcquireLock(filepath.Join(r.Dir, "run.lock"), cmdline)
	return l, r.advise(err)
}

// StateDirError: the state directory cannot be written. It says which
// directory and what to do, since every run needs it.
type StateDirError struct {
	Dir string
	Err error
}

func (e *StateDirError) Error() string {
	if errors.Is(e.Err, syscall.EROFS) {
		return fmt.Sprintf("the state directory %s is on a read-only file system (%v): sentinel keeps its run lock and journals there. "+
			"Nothing was changed; remount it read-write (mount -o remount,rw on its mount point), or set state_dir in the cluster file to a writable directory, then run the command again", e.Dir, e.Err)
	}
	return fmt.Sprintf("sentinel cannot write to the state directory %s (%v): it keeps its run lock and journals there. "+
		"Nothing was changed; run sentinel as the user that owns it, or make it writable for this user (chown/chmod), then run the command again", e.Dir, e.Err)
}

func (e *StateDirError) Unwrap() error { return e.Err }

// advise turns a state directory that cannot be written into a
// *StateDirError; other errors pass.
func (r Runs) advise(err error) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return &StateDirError{Dir: r.Dir, Err: err}
	}
	return err
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
		return nil, nil, r.advise(err)
	}
	final := filepath.Join(r.journalDir(), id+".wal")
	tmp := filepath.Join(r.journalDir(), "."+id+".wal.tmp")
	j, err := resume.Create(tmp)
	if err != nil {
		return nil, nil, r.advise(err)
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
	paths, err := r.Paths()
	if err != nil || len(paths) == 0 {
		return "", err
	}
	return paths[len(paths)-1], nil
}

// Paths are the journals of every run, oldest first.
func (r Runs) Paths() ([]string, error) {
	entries, err := os.ReadDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = filepath.Join(r.journalDir(), n)
	}
	return names, nil
}

// PathOf is the journal of run id, "" when there is no such run.
func (r Runs) PathOf(id string) string {
	if !ValidID(id) {
		return ""
	}
	p := filepath.Join(r.journalDir(), id+".wal")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// ValidID says whether id could name a run (NewID's shape): nothing that
// could climb out of the state directory.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-') {
			return false
		}
	}
	return id[0] != '.'
}

// Read reads the run whose journal is at path, changing nothing.
func (r Runs) Read(path string) (*Run, *resume.Replay, error) {
	rep, err := resume.Read(path)
	if err != nil {
		return nil, nil, r.unreadable(path, err)
	}
	run, err := ReplayRun(rep.Records)
	if err != nil {
		return nil, nil, r.unreadable(path, err)
	}
	return run, &rep, nil
}

// Latest reads the most recent run without changing its journal; nil when
// there was never a run.
func (r Runs) Latest() (*Run, *resume.Replay, error) {
	p, err := r.LatestPath()
	if err != nil || p == "" {
		return nil, nil, err
	}
	return r.Read(p)
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
