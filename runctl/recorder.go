package runctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Recorder keeps one process's part of a run: its run-start and run-end
// in the audit, the events file, and the JSON output; and at the end the
// cluster file's notify command.
type Recorder struct {
	Dir      Dir
	Runs     rollout.Runs
	Command  []string
	Detached bool
	// Emit puts run-start and run-end into the command's own output (the
	// --output json stream); nil: they go only to the files.
	Emit func(Entry)
	// Warn reports a problem that does not change the run's result.
	Warn   func(format string, args ...any)
	Notify *cluster.NotifyConfig
	// Cluster is the cluster's name, for the notify command.
	Cluster string

	id      string
	started time.Time
	events  *os.File
}

// Begin records that this process starts (or resumes) run id, and opens
// its events file: what the run shows goes there too.
func (r *Recorder) Begin(id string, resumed bool) (io.Writer, error) {
	r.id, r.started = id, time.Now().UTC()
	if resumed {
		r.endUnended(id)
	}
	who, host, from := Who()
	e := Entry{Event: "run-start", Time: r.started, ID: id, Command: r.Command, User: who, Host: host, From: from,
		PID: os.Getpid(), Resumed: resumed, Detached: r.Detached}
	if err := appendJSON(r.Dir.Audit(id), e); err != nil {
		return nil, err
	}
	if err := dropTornLine(r.Dir.Events(id)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(r.Dir.Events(id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	r.events = f
	r.writeEvent(e)
	if r.Emit != nil {
		r.Emit(e)
	}
	return f, nil
}

// endUnended gives the audit the run-end that a process which was killed
// (or crashed, or lost its machine) never wrote, so that every run-start
// has its end. The lease this process holds says that one is gone.
func (r *Recorder) endUnended(id string) {
	entries, err := r.Dir.ReadAudit(id)
	if err != nil || len(entries) == 0 || entries[len(entries)-1].Event != "run-start" {
		return
	}
	last := entries[len(entries)-1]
	e := Entry{Event: "run-end", Time: r.started, ID: id, Result: ResultInterrupted,
		Error: fmt.Sprintf("process %d on %s ended without recording its end (killed, crashed or its machine went down); found when the run was resumed", last.PID, last.Host)}
	if err := appendJSON(r.Dir.Audit(id), e); err != nil && r.Warn != nil {
		r.Warn("recording the end of the earlier process of run %s in %s: %v", id, r.Dir.Audit(id), err)
	}
}

// Began says whether Begin ran: only a run that started is recorded.
func (r *Recorder) Began() bool { return r.id != "" }

func (r *Recorder) writeEvent(e Entry) {
	if data, err := json.Marshal(e); err == nil {
		_, _ = r.events.Write(append(data, '\n'))
	}
}

// End records how the run ended in this process (exit code and error as
// the command reports them), after running the notify command.
func (r *Recorder) End(ctx context.Context, code int, runErr error) Entry {
	e := Entry{Event: "run-end", ID: r.id, Result: ResultOf(code), ExitCode: &code}
	if runErr != nil {
		e.Error = runErr.Error()
	}
	if p := r.Runs.PathOf(r.id); p != "" {
		if run, _, err := r.Runs.Read(p); err == nil {
			e.FailedNodes = FailedNodes(run)
			e.ExcludedNodes = ExcludedNodes(run)
		}
	}
	e.Notify = r.notify(ctx, e)
	e.Time = time.Now().UTC()
	if err := appendJSON(r.Dir.Audit(r.id), e); err != nil && r.Warn != nil {
		r.Warn("recording the end of run %s in %s: %v", r.id, r.Dir.Audit(r.id), err)
	}
	r.writeEvent(e)
	_ = r.events.Close()
	if r.Emit != nil {
		r.Emit(e)
	}
	return e
}
