package lifecycle

import (
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Recovery is the unfinished run `sentinel recover` goes on with, and the
// command line it goes on from.
type Recovery struct {
	Run  *rollout.Run
	Kind string   // the command that resumes it: "upgrade", "patch install", "patch revert"
	Argv []string // the logged command it goes on from
	From string   // where Argv was found
}

// KindOf says which run a logged command starts or resumes ("" for one
// that starts none: status, preflight, --dry-run, --download-only,
// --update-self alone). cmd knows: it parses the command as it was run.
type KindOf func(argv []string) (kind string, resume bool)

// RunKind is the command that resumes the run: "upgrade" (an upgrade, a
// staging, a restart), "maintain", "patch install" or "patch revert".
func RunKind(r *rollout.Run) string {
	if r.Plan == nil {
		return "upgrade"
	}
	return resumeKind(r.Plan.Kind)
}

func resumeKind(planKind string) string {
	switch planKind {
	case patches.KindInstall, patches.KindRevert:
		return "patch " + patches.Verb(planKind)
	case rollout.KindMaintain:
		return "maintain"
	}
	return "upgrade"
}

// ResumeCommand is the command that finishes an unfinished run whose plan
// is of kind planKind.
func ResumeCommand(planKind string) string {
	return "sentinel " + resumeKind(planKind) + " --resume"
}

// RunSummary names what a run does, for people.
func RunSummary(r *rollout.Run) string {
	if r.Plan == nil {
		return "unknown plan"
	}
	return PlanSummary(r.Plan.Kind, r.Plan.From, r.Plan.To, r.Plan.Patches)
}

// PlanSummary names what a plan of this kind does, for people.
func PlanSummary(kind, from, to string, patchIDs []string) string {
	switch kind {
	case "":
		return fmt.Sprintf("upgrade %s -> %s", from, to)
	case rollout.KindStage:
		return fmt.Sprintf("staging of %s (%s -> %s)", to, from, to)
	case rollout.KindMaintain:
		return "maintenance on " + to
	case rollout.KindRestart:
		return "restart on " + to
	}
	return fmt.Sprintf("patch %s of %s on %s", patches.Verb(kind), strings.Join(patchIDs, ", "), to)
}

// FindRecovery finds the cluster's unfinished run and the command to go
// on from: its last --resume, else the command that started it. A command
// refused meanwhile (say, a plain upgrade turned away because this run was
// unfinished) is not it.
func FindRecovery(inv *cluster.Inventory, kindOf KindOf) (*Recovery, error) {
	runs := rollout.Runs{Dir: inv.State()}
	last, _, err := runs.Latest()
	if err != nil {
		return nil, fmt.Errorf("reading the last run in %s: %w", inv.State(), err)
	}
	logPath := LogPath(inv)
	logged, err := LoggedCommands(logPath)
	if err != nil {
		return nil, fmt.Errorf("reading the commands logged in %s: %w", logPath, err)
	}
	if last == nil || last.Finished() {
		return nil, nothingToRecover(inv, last, logged, kindOf)
	}
	if held, holder, err := runs.LockHeld(); err == nil && held {
		return nil, usagef("run %s is still going (%s holds the run lock): nothing to recover; wait for it, or stop it (Ctrl-C) and run `sentinel recover` again", last.ID, holder)
	}
	rec := &Recovery{Run: last, Kind: RunKind(last), Argv: last.Command, From: "the run's journal (the log holds no command for it)"}
	for i := len(logged) - 1; i >= 0; i-- {
		c := logged[i]
		kind, resume := kindOf(c.Argv)
		if kind != rec.Kind || c.At.IsZero() {
			continue
		}
		if resume && !c.At.Before(last.Started.Truncate(time.Millisecond)) || !c.At.After(last.Started) {
			rec.Argv, rec.From = c.Argv, "the log "+logPath
			break
		}
	}
	return rec, nil
}

// nothingToRecover explains why there is no run to resume, and what the
// last logged command was when it started none.
func nothingToRecover(inv *cluster.Inventory, last *rollout.Run, logged []LoggedCommand, kindOf KindOf) error {
	var lastRun *LoggedCommand // the last command that would have started a run
	for i := len(logged) - 1; i >= 0; i-- {
		if kind, resume := kindOf(logged[i].Argv); kind != "" && !resume {
			lastRun = &logged[i]
			break
		}
	}
	state := "there is no run in " + inv.State()
	after := time.Time{}
	if last != nil {
		state = fmt.Sprintf("the last run, %s (%s), %s", last.ID, RunSummary(last), last.Status)
		after = last.Started
		if !last.Ended.IsZero() {
			after = last.Ended
		}
	}
	if lastRun != nil && !lastRun.At.IsZero() && lastRun.At.After(after) {
		return usagef("nothing to recover: %s, and the last command logged after it started no run: %s (run it again, with a sentinel binary in place, if it should)", state, CommandLine(lastRun.Argv))
	}
	return usagef("nothing to recover: %s", state)
}

// SetAside sets a run aside so that later commands no longer see it: the
// way out when a run's journal cannot be read back. id "" means the latest
// run. It takes the run lock, so a run that is going is never moved.
func SetAside(inv *cluster.Inventory, id, reason, cmdline string) (string, string, error) {
	runs := rollout.Runs{Dir: inv.State()}
	lock, err := runs.Lock(cmdline)
	if err != nil {
		return "", "", err
	}
	defer lock.Release()
	if id == "" {
		if id, err = runs.LatestID(); err != nil {
			return "", "", err
		}
		if id == "" {
			return "", "", usagef("there is no run in %s: nothing to set aside", inv.State())
		}
	}
	dir, err := runs.SetAside(id, operator(), reason, time.Now())
	return id, dir, err
}

// Restore brings back a run set aside. It reports whether the run is the
// latest again (a run started since comes after it).
func Restore(inv *cluster.Inventory, id, cmdline string) (bool, error) {
	runs := rollout.Runs{Dir: inv.State()}
	lock, err := runs.Lock(cmdline)
	if err != nil {
		return false, err
	}
	defer lock.Release()
	if err := runs.Restore(id, operator(), time.Now()); err != nil {
		return false, err
	}
	latest, err := runs.LatestID()
	return latest == id, err
}

// operator names who ran the command, for the record of a run set aside.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
