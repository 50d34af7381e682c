// Package runctl is what a run keeps beside its journal so that it can be
// followed, stopped and accounted for from another terminal: who started
// it and how it ended (its audit), every event it showed (what `sentinel
// attach` follows), its output when it runs detached, and the command the
// cluster file asks to run at its end.
//
// Files, under <state>/runs/ (the state directory holds the journals):
//
//	<id>.audit   JSON lines: a run-start entry for each process that started
//	             or resumed the run, a run-end entry for each that ended it
//	<id>.events  JSON lines: run-start, every event of --output json, run-end
//	<id>.out     stdout and stderr of a detached run
package runctl

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Dir is the directory of the runs' files.
type Dir string

// For is the runs' directory of the state directory state.
func For(state string) Dir { return Dir(filepath.Join(state, "runs")) }

func (d Dir) file(id, ext string) string { return filepath.Join(string(d), id+ext) }

// Events is the file of run id's events.
func (d Dir) Events(id string) string { return d.file(id, ".events") }

// Audit is the file of run id's audit entries.
func (d Dir) Audit(id string) string { return d.file(id, ".audit") }

// Output is where a detached run id writes its output.
func (d Dir) Output(id string) string { return d.file(id, ".out") }

// Results of a run, as run-end says them.
const (
	ResultSucceeded   = "succeeded"
	ResultFailed      = "failed"
	ResultInterrupted = "interrupted"
	// ResultPartial: done without the nodes excluded or rolled back within
	// the failure budget (exit 4 or 5).
	ResultPartial = "partial"
)

// Entry is one audit entry, and the run-start and run-end events of the
// JSON output and of the events file.
type Entry struct {
	Event string    `json:"event"` // "run-start" or "run-end"
	Time  time.Time `json:"time"`
	ID    string    `json:"id"`
	// run-start
	Command  []string `json:"command,omitempty"`
	User     string   `json:"user,omitempty"`
	Host     string   `json:"host,omitempty"`
	From     string   `json:"from,omitempty"` // the SSH client's address, when over SSH
	PID      int      `json:"pid,omitempty"`
	Resumed  bool     `json:"resumed,omitempty"`
	Detached bool     `json:"detached,omitempty"`
	// run-end
	Result        string   `json:"result,omitempty"`
	ExitCode      *int     `json:"exit_code,omitempty"`
	Error         string   `json:"error,omitempty"`
	FailedNodes   []string `json:"failed_nodes,omitempty"`
	ExcludedNodes []string `json:"excluded_nodes,omitempty"`
	Notify        string   `json:"notify,omitempty"` // what became of the notify command
}

// Who says who runs this process and from where: the login user (and
// the one sudo was run by), this host, the SSH client's address.
func Who() (userName, host, from string) {
	userName = os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		userName = u.Username
	}
	if s := os.Getenv("SUDO_USER"); s != "" && s != userName {
		userName += " (sudo by " + s + ")"
	}
	host, _ = os.Hostname()
	for _, v := range []string{"SSH_CONNECTION", "SSH_CLIENT"} {
		if f := strings.Fields(os.Getenv(v)); len(f) > 0 {
			from = f[0]
			break
		}
	}
	return userName, host, from
}

// appendJSON appends v as one line to path, and syncs it: an audit entry
// must outlive a crash that follows it.
func appendJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := dropTornLine(path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.SyncDir(filepath.Dir(path))
	}
	return err
}

// dropTornLine cuts a last line that a crash left without its newline, so
// that the next entry starts a line of its own instead of joining it into
// one that no reader can parse.
func dropTornLine(path string) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cut := strings.LastIndexByte(string(data), '\n') + 1; cut < len(data) {
		return os.Truncate(path, int64(cut))
	}
	return nil
}

// ResultOf names how a run ended from its exit code.
func ResultOf(code int) string {
	switch code {
	case 0:
		return ResultSucceeded
	case 75:
		return ResultInterrupted
	case 4, 5:
		return ResultPartial
	}
	return ResultFailed
}

// FailedNodes are the nodes of run whose steps failed (and were rolled
// back).
func FailedNodes(run *rollout.Run) []string {
	var out []string
	for _, np := range run.Plan.Nodes {
		if slices.Contains(run.FailedNodes, np.Node) {
			out = append(out, np.Node)
			continue
		}
		for _, v := range run.View(np.Node) {
			if v.State == rollout.StateFailed {
				out = append(out, np.Node)
				break
			}
		}
	}
	return out
}

// ExcludedNodes are the nodes the operator took out of run.
func ExcludedNodes(run *rollout.Run) []string {
	var out []string
	for _, x := range run.Excluded {
		out = append(out, x.Node)
	}
	return out
}

// ReadAudit reads run id's audit entries, oldest first; none when the run
// has no audit (it ran before sentinel kept one).
func (d Dir) ReadAudit(id string) ([]Entry, error) {
	data, err := os.ReadFile(d.Audit(id))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for i, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			// A torn last line (a crash while appending) is no entry.
			if i == strings.Count(string(data), "\n") {
				break
			}
			return nil, fmt.Errorf("audit %s, line %d: %w", d.Audit(id), i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}
