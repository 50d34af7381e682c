package runctl

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/rollout"
)

// Summary is one run as `sentinel runs` lists it: the journal says what it
// did and how it stands, the audit who ran it, from where, and with which
// exit code it last ended.
type Summary struct {
	ID      string     `json:"id"`
	Kind    string     `json:"kind"` // upgrade, patch-install, patch-revert
	From    string     `json:"from_release,omitempty"`
	To      string     `json:"to_release,omitempty"`
	Patches []string   `json:"patches,omitempty"`
	Command []string   `json:"command"`
	User    string     `json:"user,omitempty"`
	Host    string     `json:"host,omitempty"`
	Client  string     `json:"client,omitempty"` // the SSH client's address it was started from
	Started time.Time  `json:"started"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Result: succeeded, partial, failed, interrupted or running.
	Result   string   `json:"result"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Error    string   `json:"error,omitempty"`
	Resumes  int      `json:"resumes,omitempty"`
	Failed   []string `json:"failed_nodes,omitempty"`
	Excluded []string `json:"excluded_nodes,omitempty"`
}

// List summarises every run of the state directory, oldest first. A
// journal that cannot be read is listed with its error.
func List(runs rollout.Runs, dir Dir) ([]Summary, error) {
	paths, err := runs.Paths()
	if err != nil {
		return nil, err
	}
	cur, _ := Current(runs)
	var out []Summary
	for _, p := range paths {
		id := strings.TrimSuffix(filepath.Base(p), ".wal")
		run, _, err := runs.Read(p)
		if err != nil {
			out = append(out, Summary{ID: id, Result: "unreadable", Error: err.Error()})
			continue
		}
		out = append(out, summarise(run, dir, cur))
	}
	return out, nil
}

func summarise(run *rollout.Run, dir Dir, cur *Running) Summary {
	s := Summary{ID: run.ID, Kind: "upgrade", From: run.Plan.From, To: run.Plan.To, Patches: run.Plan.Patches,
		Command: run.Command, Started: run.Started, Result: run.Status, Error: run.Error, Failed: FailedNodes(run),
		Excluded: ExcludedNodes(run)}
	if run.Plan.Kind != "" {
		s.Kind = run.Plan.Kind
	}
	if !run.Ended.IsZero() {
		s.Ended = &run.Ended
	}
	switch {
	case cur != nil && cur.ID == run.ID:
		s.Result = "running"
	case !run.Finished():
		s.Result = ResultInterrupted
	}
	entries, _ := dir.ReadAudit(run.ID)
	starts := 0
	for _, e := range entries {
		switch e.Event {
		case "run-start":
			if starts == 0 {
				s.User, s.Host, s.Client = e.User, e.Host, e.From
			}
			starts++
		case "run-end":
			s.ExitCode = e.ExitCode
		}
	}
	s.Resumes = max(starts-1, 0)
	if s.Result == "running" {
		s.ExitCode = nil
	}
	return s
}

// Find is run id's summary, nil when there is no such run.
func Find(runs rollout.Runs, dir Dir, id string) (*Summary, error) {
	p := runs.PathOf(id)
	if p == "" {
		return nil, nil
	}
	run, _, err := runs.Read(p)
	if err != nil {
		return nil, err
	}
	cur, _ := Current(runs)
	s := summarise(run, dir, cur)
	return &s, nil
}
