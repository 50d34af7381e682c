package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/selfupdate"
)

// logCommandMarker starts the logged command line of every run.
const logCommandMarker = "Running with command: "

type recoverOptions struct {
	cluster string
	dryRun  bool
	stdout  io.Writer
	stderr  io.Writer
}

func newRecoverCmd() *cobra.Command {
	var o recoverOptions
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Finish the unfinished run whose sentinel binary went missing or broke half-way",
		Long: `Finish the cluster's unfinished run with this sentinel binary.

The product's docs restart such a run by hand: find the command in the log
(grep 'Running with command' /s/logs/sentinel-cli.log), put a binary
back, and run it again. recover does that: it reads the unfinished run
from the journal and the command logged for it (the one that started it,
or its last --resume; not a command turned away meanwhile) in
<core root>/logs/sentinel-cli.log, says what it found, and runs
'sentinel upgrade --resume' (or 'sentinel patch install|revert --resume')
with that command's options (--cache-ip, --max-in-flight, ...) and this
cluster file, in place of itself, with the binary you run it with. The
journal holds the plan, so the run goes on where it stopped.

It refuses when there is nothing to recover: no run, a run that ended, or
a run still going (its process holds the run lock).`,
		Example: `  sentinel recover                   # finish the unfinished run
  sentinel recover --dry-run         # only say what it would run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stdout, o.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return runRecover(o)
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the command that would finish the run, and run nothing")
	return cmd
}

func runRecover(o recoverOptions) error {
	inv, err := loadInventory(o.cluster)
	if err != nil {
		return err
	}
	clusterFile, err := filepath.Abs(inv.Path())
	if err != nil {
		return err
	}
	runs := rollout.Runs{Dir: inv.State()}
	last, _, err := runs.Latest()
	if err != nil {
		return fmt.Errorf("reading the last run in %s: %w", inv.State(), err)
	}
	logPath := filepath.Join(inv.Core().Root, "logs", "sentinel-cli.log")
	logged, err := loggedCommands(logPath)
	if err != nil {
		return fmt.Errorf("reading the commands logged in %s: %w", logPath, err)
	}
	if last == nil || last.Finished() {
		return nothingToRecover(inv, last, logged)
	}
	if held, holder, err := runs.LockHeld(); err == nil && held {
		return usagef("run %s is still going (%s holds the run lock): nothing to recover; wait for it, or stop it (Ctrl-C) and run `sentinel recover` again", last.ID, holder)
	}

	// The command to go on from: the last --resume of this run, else the
	// command that started it. A command refused meanwhile (say, a plain
	// upgrade turned away because this run was unfinished) is not it.
	kind := runKind(last)
	var from *loggedCommand
	for i := len(logged) - 1; i >= 0; i-- {
		c := &logged[i]
		if c.kind() != kind || c.at.IsZero() {
			continue
		}
		if hasArg(c.argv, "--resume") && !c.at.Before(last.Started.Truncate(time.Millisecond)) || !c.at.After(last.Started) {
			from = c
			break
		}
	}
	source := "the log " + logPath
	args := last.Command
	if from != nil {
		args = from.argv
	} else {
		source = "the run's journal (the log holds no command for it)"
	}
	exe, err := selfupdate.Executable()
	if err != nil {
		return err
	}
	argv := append([]string{os.Args[0]}, resumeArgs(kind, args, clusterFile)...)

	fmt.Fprintf(o.stderr, "sentinel: run %s (%s) did not finish: it stopped at %s\n", last.ID, runSummary(last), last.Where())
	fmt.Fprintf(o.stderr, "sentinel: its last command, from %s: %s\n", source, commandLine(args))
	if bs := last.Binaries(); len(bs) > 0 && bs[len(bs)-1].Version != version {
		fmt.Fprintf(o.stderr, "sentinel: it ran with sentinel %s; this is sentinel %s (%s)\n", bs[len(bs)-1].Version, version, exe)
	}
	if o.dryRun {
		fmt.Fprintln(o.stdout, commandLine(argv))
		return nil
	}
	fmt.Fprintf(o.stderr, "sentinel: recovering with: %s\n", commandLine(argv))
	if err := syscall.Exec(exe, argv, os.Environ()); err != nil {
		return fmt.Errorf("running %s: %w", exe, err)
	}
	return nil
}

// nothingToRecover explains why there is no run to resume, and what the
// last logged command was when it started none.
func nothingToRecover(inv *cluster.Inventory, last *rollout.Run, logged []loggedCommand) error {
	var lastRun *loggedCommand // the last command that would have started a run
	for i := len(logged) - 1; i >= 0; i-- {
		if logged[i].kind() != "" && !hasArg(logged[i].argv, "--resume") {
			lastRun = &logged[i]
			break
		}
	}
	state := "there is no run in " + inv.State()
	after := time.Time{}
	if last != nil {
		state = fmt.Sprintf("the last run, %s (%s), %s", last.ID, runSummary(last), last.Status)
		after = last.Started
		if !last.Ended.IsZero() {
			after = last.Ended
		}
	}
	if lastRun != nil && !lastRun.at.IsZero() && lastRun.at.After(after) {
		return usagef("nothing to recover: %s, and the last command logged after it started no run: %s (run it again, with a sentinel binary in place, if it should)", state, commandLine(lastRun.argv))
	}
	return usagef("nothing to recover: %s", state)
}

func runSummary(r *rollout.Run) string {
	if r.Plan == nil {
		return "unknown plan"
	}
	if r.Plan.Kind != "" {
		return fmt.Sprintf("patch %s of %s", patchVerb(r.Plan.Kind), strings.Join(r.Plan.Patches, ", "))
	}
	return fmt.Sprintf("upgrade %s -> %s", r.Plan.From, r.Plan.To)
}

// runKind is the command that resumes the run: "upgrade", "patch install"
// or "patch revert".
func runKind(r *rollout.Run) string {
	if r.Plan != nil && r.Plan.Kind != "" {
		return "patch " + patchVerb(r.Plan.Kind)
	}
	return "upgrade"
}

// loggedCommand is one "Running with command:" line of the log.
type loggedCommand struct {
	at   time.Time
	argv []string
}

// kind is the run kind the command starts or resumes ("" for commands
// that start no run: status, preflight, --dry-run, --download-only,
// --update-self alone).
func (c loggedCommand) kind() string {
	var words []string // the subcommand, then positional arguments
	resume := false
	for i := 1; i < len(c.argv); i++ {
		a := c.argv[i]
		switch {
		case a == "--dry-run", a == "--download-only":
			return ""
		case a == "--resume":
			resume = true
		case strings.HasPrefix(a, "-"):
			if name := strings.TrimLeft(a, "-"); upgradeValueFlags[name] {
				i++ // its value
			}
		default:
			words = append(words, a)
		}
	}
	switch {
	case len(words) == 1 && words[0] == "upgrade" && hasArg(c.argv, "--update-self") && !resume:
		return "" // only updates sentinel
	case len(words) >= 1 && words[0] == "upgrade":
		return "upgrade"
	case len(words) >= 2 && words[0] == "patch" && (words[1] == "install" || words[1] == "reinstall"):
		return "patch install"
	case len(words) >= 2 && words[0] == "patch" && words[1] == "revert":
		return "patch revert"
	}
	return ""
}

func hasArg(argv []string, a string) bool {
	for _, x := range argv {
		if x == a {
			return true
		}
	}
	return false
}

// loggedCommands reads every command line the log holds, oldest first. A
// missing log holds none.
func loggedCommands(path string) ([]loggedCommand, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []loggedCommand
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, logCommandMarker)
		if i < 0 {
			continue
		}
		argv, err := splitCommandLine(line[i+len(logCommandMarker):])
		if err != nil || len(argv) < 2 {
			continue // not one of ours
		}
		c := loggedCommand{argv: argv}
		if ts, _, ok := strings.Cut(line, "\t"); ok {
			c.at, _ = time.Parse("2006-01-02T15:04:05.000Z0700", ts)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// splitCommandLine undoes commandLine: words separated by spaces, some in
// single quotes (a quote inside them closes them, adds \' and opens them
// again).
func splitCommandLine(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\'':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '\'':
			inQuote, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// Flags of `sentinel upgrade` that take a value; those that a resume
// keeps are carried over by resumeArgs.
var upgradeValueFlags = map[string]bool{
	"cluster": true, "output": true, "o": true, "cache-ip": true, "ignore-preflight-errors": true,
	"node-retries": true, "drain-timeout": true, "role-order": true, "node": true, "max-in-flight": true,
}

// resumeArgs turns the command that ran the run into the one that finishes
// it: the resume command of its kind, this cluster file, and the options
// of the logged command that a resume takes (where artifacts come from,
// how many nodes at once, output, retries, drain); VERSION, --force,
// --role-order, --node, --yes and the like were planned and are dropped.
func resumeArgs(kind string, logged []string, clusterFile string) []string {
	keepValue := map[string]bool{"cache-ip": true, "max-in-flight": true, "node-retries": true, "drain-timeout": true, "output": true, "o": true}
	keepBool := map[string]bool{"skip-drain": true, "no-cache": true, "allow-expired-metadata": true, "no-self-update": true}
	if kind != "upgrade" {
		keepValue = map[string]bool{"cache-ip": true}
		keepBool = map[string]bool{"allow-expired-metadata": true}
	}
	out := append(strings.Fields(kind), "--resume", "--cluster", clusterFile)
	for i := 1; i < len(logged); i++ {
		a := logged[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue := upgradeValueFlags[name] && !hasValue
		switch {
		case keepValue[name] && takesValue && i+1 < len(logged):
			out = append(out, a, logged[i+1])
		case keepValue[name] && hasValue, keepBool[name]:
			out = append(out, a)
		}
		if takesValue {
			i++
		}
	}
	return out
}
