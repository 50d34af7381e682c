package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/runctl"
	"github.com/sentinel-paas/sentinel/ui"
)

// surviveTerminal keeps a run going when its terminal goes: SIGHUP (the
// SSH session dropped) is ignored, by this process and by the node agents
// and hooks it starts, which inherit that; and a write to a closed pipe
// (`| head`) fails with EPIPE, which the printers drop, instead of killing
// the process. The log and the events file get everything still.
func surviveTerminal() {
	signal.Ignore(syscall.SIGHUP)
	// Caught rather than ignored: a caught signal is reset for the
	// processes we start, so their own pipes behave as usual.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// detachedRunID is the id a detaching parent gave this process, "" when
// it was not started so.
func detachedRunID() (string, error) {
	id := os.Getenv(runctl.RunIDEnv)
	if id != "" && !rollout.ValidID(id) {
		return "", usagef("%s=%q is no run id", runctl.RunIDEnv, id)
	}
	return id, nil
}

// newRecorder keeps the run's audit and events, and shows its run-start
// and run-end in the JSON output.
func newRecorder(inv *cluster.Inventory, p *ui.Printer, detached bool) *runctl.Recorder {
	return &runctl.Recorder{
		Dir: runctl.For(inv.State()), Runs: rollout.Runs{Dir: inv.State()}, Command: os.Args, Detached: detached,
		Emit:   func(e runctl.Entry) { p.Event(e) },
		Warn:   p.Warnf,
		Notify: inv.Notify, Cluster: inv.Name,
	}
}

// recorder gives lifecycle the events file as a progress display.
type recorder struct{ *runctl.Recorder }

func (r recorder) Begin(id string, resumed bool) (rollout.Progress, error) {
	w, err := r.Recorder.Begin(id, resumed)
	if err != nil {
		return nil, err
	}
	return ui.NewJSONProgress(w), nil
}

// detachRun hands confirmed run id to a process of its own and says how
// to follow and stop it.
func detachRun(p *ui.Printer, inv *cluster.Inventory, id string) error {
	dir := runctl.For(inv.State())
	pid, err := runctl.Detach(dir, id, runctl.DetachedArgs(os.Args[1:]))
	var de *runctl.DetachError
	if errors.As(err, &de) && de.Code != 0 {
		p.Notef("%s", de.Output)
		return &silentExit{code: de.Code}
	}
	if err != nil {
		return err
	}
	p.Event(map[string]any{"event": "detached", "id": id, "pid": pid, "output": dir.Output(id)})
	p.Textf("Run %s goes on in the background (pid %d); its output: %s\n", id, pid, dir.Output(id))
	p.Textf("  sentinel attach %s   follow it (Ctrl-C only detaches)\n", id)
	p.Textf("  sentinel stop %s     stop it after the step under way (resumable)\n", id)
	return nil
}
