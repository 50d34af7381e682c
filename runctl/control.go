package runctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Running is the run going on now: its id and the process carrying it out.
type Running struct {
	ID  string
	PID int
}

// Current is the run going on now in the state directory of runs, nil
// when none is: the latest run, unfinished, its run lock held.
func Current(runs rollout.Runs) (*Running, error) {
	held, holder, err := runs.LockHeld()
	if err != nil || !held {
		return nil, err
	}
	run, _, err := runs.Latest()
	if err != nil || run == nil || run.Finished() {
		return nil, err
	}
	return &Running{ID: run.ID, PID: resume.HolderPID(holder)}, nil
}

// NotRunningError: no run is going on (or not the one asked for).
type NotRunningError struct{ Msg string }

func (e *NotRunningError) Error() string { return e.Msg }

// RequestStop asks the process running run id (the current one when id is
// "") to stop at its next safe point: SIGTERM, which sentinel takes as a
// Ctrl-C (the step under way finishes, then the run ends interrupted).
func RequestStop(runs rollout.Runs, id string) (*Running, error) {
	cur, err := Current(runs)
	if err != nil {
		return nil, err
	}
	switch {
	case cur == nil && id == "":
		return nil, &NotRunningError{Msg: "no run is running: nothing to stop (`sentinel status` shows the last one)"}
	case cur == nil || id != "" && cur.ID != id:
		return nil, &NotRunningError{Msg: fmt.Sprintf("run %s is not running: nothing to stop (`sentinel runs` lists the runs)", id)}
	case cur.PID == 0:
		return nil, fmt.Errorf("run %s is running but its lock names no process: stop it where it runs (Ctrl-C)", cur.ID)
	}
	if err := syscall.Kill(cur.PID, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("asking run %s (pid %d) to stop: %w (run `sentinel stop` as the user who runs it, or root)", cur.ID, cur.PID, err)
	}
	return cur, nil
}

// pollEvery is how often a follower looks for what a run did since: a run
// in another process tells us nothing, so we look.
const pollEvery = 200 * time.Millisecond

// WaitEnded waits until the run lock is free: the run's process ended.
func WaitEnded(ctx context.Context, runs rollout.Runs) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		if held, _, err := runs.LockHeld(); err != nil || !held {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Follow reads run id's events as they come, from its latest run-start
// (a resumed run appends a new one), and gives each to show. It returns
// the run-end event once it comes, or nil when the run's process ended
// without one (killed) or ctx is done (the operator detached).
func Follow(ctx context.Context, dir Dir, runs rollout.Runs, id string, show func(line []byte, e Entry)) (*Entry, error) {
	f, err := os.Open(dir.Events(id))
	if err != nil {
		return nil, fmt.Errorf("run %s has no events file (%w): it ran before sentinel kept one, or never started", id, err)
	}
	defer f.Close()
	from, err := lastStart(f)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReader(f)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var partial []byte
	for {
		ended := false
		if cur, err := Current(runs); err == nil && (cur == nil || cur.ID != id) {
			ended = true // read what is left, then stop
		}
		for {
			line, err := r.ReadBytes('\n')
			partial = append(partial, line...)
			if err != nil {
				break
			}
			var e Entry
			_ = json.Unmarshal(partial, &e)
			show(partial, e)
			partial = nil
			if e.Event == "run-end" {
				return &e, nil
			}
		}
		if ended {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-t.C:
		}
	}
}

// lastStart is the offset of the last run-start line of the events file.
func lastStart(f *os.File) (int64, error) {
	r := bufio.NewReader(f)
	var off, last int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e Entry
			if json.Unmarshal(line, &e) == nil && e.Event == "run-start" {
				last = off
			}
			off += int64(len(line))
		}
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
