package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/resume"
)

// RecordError is a journal record that verifies as written but does not
// decode as part of a run.
type RecordError struct {
	Record uint64 // 1-based
	Err    error
}

func (e *RecordError) Error() string { return e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// UnreadableRunError is a run whose journal cannot be read back. Without a
// way out one bad record would block every later command, so it says how
// to set the run aside.
type UnreadableRunError struct {
	RunID  string
	Path   string
	Record uint64
	Cause  string
	Aside  string // where --set-aside would move it
}

func (e *UnreadableRunError) Error() string {
	return fmt.Sprintf("run %s cannot be read back: record %d of its journal %s cannot be decoded (%s). "+
		"Nothing can go on from this run; to set it aside, run `sentinel recover --set-aside %s` "+
		"(it moves the journal to %s and records who, when and why; `sentinel recover --restore %s` brings it back), "+
		"then status, upgrade and recover work again",
		e.RunID, e.Record, e.Path, e.Cause, e.RunID, e.Aside, e.RunID)
}

// unreadable turns a journal that fails to read back into an error that
// names the file, the record and the way out.
func (r Runs) unreadable(path string, err error) error {
	id := strings.TrimSuffix(filepath.Base(path), ".wal")
	u := &UnreadableRunError{RunID: id, Path: path, Aside: r.asideDir(id)}
	var ce *resume.CorruptError
	var re *RecordError
	switch {
	case errors.As(err, &ce):
		u.Record, u.Cause = ce.Record, fmt.Sprintf("byte %d: %s", ce.Offset, ce.Reason)
	case errors.As(err, &re):
		u.Record, u.Cause = re.Record, re.Err.Error()
	case errors.Is(err, resume.ErrNotJournal):
		u.Record, u.Cause = 0, err.Error()
	default:
		return fmt.Errorf("journal %s: %w", path, err)
	}
	return u
}

func (r Runs) asideRoot() string            { return filepath.Join(r.Dir, "runs", "set-aside") }
func (r Runs) asideDir(id string) string    { return filepath.Join(r.asideRoot(), id) }
func (r Runs) asideLog() string             { return filepath.Join(r.Dir, "runs", "set-aside.log") }
func (r Runs) journalPath(id string) string { return filepath.Join(r.journalDir(), id+".wal") }

// SetAsideRecord is what is kept with a run set aside, and logged each time
// a run is set aside or restored.
type SetAsideRecord struct {
	Action  string    `json:"action"` // "set-aside" or "restore"
	Run     string    `json:"run"`
	Journal string    `json:"journal"` // where the journal lives in normal use
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
}

// LatestID is the id of the most recent run, "" when there is none.
func (r Runs) LatestID() (string, error) {
	p, err := r.LatestPath()
	if err != nil || p == "" {
		return "", err
	}
	return strings.TrimSuffix(filepath.Base(p), ".wal"), nil
}

// SetAside moves a run's journal (and any torn tails kept beside it) to
// <state>/runs/set-aside/<id>/ with a record of who, when and why, so that
// later commands no longer see it. The caller holds the run lock.
func (r Runs) SetAside(id, by, reason string, now time.Time) (string, error) {
	if err := validRunID(id); err != nil {
		return "", err
	}
	src := r.journalPath(id)
	if _, err := os.Stat(src); err != nil {
		return "", &UsageError{Msg: fmt.Sprintf("there is no run %s in %s: nothing to set aside", id, r.journalDir())}
	}
	dst := r.asideDir(id)
	if _, err := os.Stat(filepath.Join(dst, id+".wal")); err == nil {
		return "", &UsageError{Msg: fmt.Sprintf("a run %s is already set aside in %s: restore or remove it first", id, dst)}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("setting run %s aside: %w", id, err)
	}
	rec := SetAsideRecord{Action: "set-aside", Run: id, Journal: src, By: by, At: now.UTC(), Reason: reason}
	data, _ := json.MarshalIndent(rec, "", "  ")
	if err := durable.WriteFile(filepath.Join(dst, "set-aside.json"), append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("setting run %s aside: %w", id, err)
	}
	if err := r.moveJournal(id, r.journalDir(), dst); err != nil {
		return "", fmt.Errorf("setting run %s aside: %w", id, err)
	}
	return dst, r.logAside(rec)
}

// Restore moves a run set aside back to the journals, where it is the
// latest run again unless a later one started meanwhile.
func (r Runs) Restore(id, by string, now time.Time) error {
	if err := validRunID(id); err != nil {
		return err
	}
	dir := r.asideDir(id)
	if _, err := os.Stat(filepath.Join(dir, id+".wal")); err != nil {
		return &UsageError{Msg: fmt.Sprintf("no run %s is set aside in %s: nothing to restore", id, r.asideRoot())}
	}
	if _, err := os.Stat(r.journalPath(id)); err == nil {
		return &UsageError{Msg: fmt.Sprintf("%s already exists: run %s is not set aside", r.journalPath(id), id)}
	}
	if err := os.MkdirAll(r.journalDir(), 0o755); err != nil {
		return err
	}
	if err := r.moveJournal(id, dir, r.journalDir()); err != nil {
		return fmt.Errorf("restoring run %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("restoring run %s: %w", id, err)
	}
	return r.logAside(SetAsideRecord{Action: "restore", Run: id, Journal: r.journalPath(id), By: by, At: now.UTC()})
}

// moveJournal renames the run's journal and its kept torn tails from one
// directory to another, journal last: a crash half-way leaves the journal
// where it was, and the move can be run again.
func (r Runs) moveJournal(id, from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id+".wal.torn-") {
			if err := durable.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := durable.Rename(filepath.Join(from, id+".wal"), filepath.Join(to, id+".wal")); err != nil {
		return err
	}
	return durable.SyncDir(from)
}

// logAside appends one line to <state>/runs/set-aside.log and fsyncs it.
func (r Runs) logAside(rec SetAsideRecord) error {
	line, _ := json.Marshal(rec)
	f, err := os.OpenFile(r.asideLog(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("recording the %s of run %s: %w", rec.Action, rec.Run, err)
	}
	_, err = f.Write(append(line, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording the %s of run %s in %s: %w", rec.Action, rec.Run, r.asideLog(), err)
	}
	return nil
}

// AsideLog reads the record of runs set aside and restored.
func (r Runs) AsideLog() ([]SetAsideRecord, error) {
	data, err := os.ReadFile(r.asideLog())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SetAsideRecord
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec SetAsideRecord
		if l == "" || json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

func validRunID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return &UsageError{Msg: fmt.Sprintf("%q is not a run id (see `sentinel status`)", id)}
	}
	return nil
}
