package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/selfupdate"
)

func newRecoverCmd() *cobra.Command {
	var clusterFile, reason string
	var dryRun, setAside, restore bool
	cmd := &cobra.Command{
		Use:   "recover [--set-aside [RUN-ID] | --restore RUN-ID]",
		Short: "Finish the unfinished run whose sentinel binary went missing or broke half-way",
		Long: `Finish the cluster's unfinished run with this sentinel binary.

The product's docs restart such a run by hand: find the command in the log
(grep 'Running with command' /s/logs/sentinel-cli.log), put a binary
back, and run it again. recover does that: it reads the unfinished run
from the journal and the command logged for it (the one that started it,
or its last --resume; not a command turned away meanwhile) in
<core root>/logs/sentinel-cli.log, says what it found, and runs
'sentinel upgrade --resume' (or 'sentinel maintain --resume', 'sentinel patch install|revert --resume')
with that command's options (--cache-ip, --max-in-flight, ...) and this
cluster file, in place of itself, with the binary you run it with. The
journal holds the plan, so the run goes on where it stopped.

It refuses when there is nothing to recover: no run, a run that ended, or
a run still going (its process holds the run lock).

A run whose journal cannot be read back blocks status, upgrade and
recover, and they say so. --set-aside [RUN-ID] moves that run's journal
(the latest run's by default) to <state_dir>/runs/set-aside/<run-id>/
with a record of who, when and why (--reason), and logs it in
<state_dir>/runs/set-aside.log; later commands no longer see the run.
--restore RUN-ID moves it back.`,
		Example: `  sentinel recover                   # finish the unfinished run
  sentinel recover --dry-run         # only say what it would run
  sentinel recover --set-aside --reason "journal damaged by a disk fault"
  sentinel recover --restore 20261203T150405.000000000Z-1a2b`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case setAside && restore:
				return usagef("--set-aside and --restore contradict each other")
			case setAside:
				return runSetAside(cmd, clusterFile, args, reason)
			case restore:
				if len(args) != 1 {
					return usagef("--restore takes the RUN-ID of the run set aside")
				}
				return runRestore(cmd, clusterFile, args[0])
			case len(args) > 0 || reason != "":
				return usagef("recover takes a RUN-ID or --reason only with --set-aside or --restore")
			}
			return runRecover(cmd, clusterFile, dryRun)
		},
	}
	cmd.Flags().StringVar(&clusterFile, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the command that would finish the run, and run nothing")
	cmd.Flags().BoolVar(&setAside, "set-aside", false, "set the run (RUN-ID, default the latest) aside so that later commands no longer see it")
	cmd.Flags().BoolVar(&restore, "restore", false, "bring back the run RUN-ID that was set aside")
	cmd.Flags().StringVar(&reason, "reason", "", "why the run is set aside (kept with it)")
	return cmd
}

// runSetAside sets the run aside and says where it went and how to undo it.
func runSetAside(cmd *cobra.Command, clusterFile string, args []string, reason string) error {
	inv, err := loadInventory(clusterFile)
	if err != nil {
		return err
	}
	id := ""
	if len(args) == 1 {
		id = args[0]
	}
	id, dir, err := lifecycle.SetAside(inv, id, reason, lifecycle.CommandLine(os.Args))
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Run %s is set aside in %s; `sentinel recover --restore %s` brings it back.\n", id, dir, id)
	return nil
}

func runRestore(cmd *cobra.Command, clusterFile, id string) error {
	inv, err := loadInventory(clusterFile)
	if err != nil {
		return err
	}
	latest, err := lifecycle.Restore(inv, id, lifecycle.CommandLine(os.Args))
	if err != nil {
		return err
	}
	if latest {
		fmt.Fprintf(cmd.OutOrStdout(), "Run %s is restored: it is the latest run again.\n", id)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "Run %s is restored; a later run started meanwhile, so status shows that one.\n", id)
	}
	return nil
}

// runRecover finds the unfinished run and the command to go on from, and
// runs its resume command in place of itself.
func runRecover(cmd *cobra.Command, clusterFile string, dryRun bool) error {
	inv, err := loadInventory(clusterFile)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(inv.Path())
	if err != nil {
		return err
	}
	rec, err := lifecycle.FindRecovery(inv, kindOf)
	if err != nil {
		return err
	}
	exe, err := selfupdate.Executable()
	if err != nil {
		return err
	}
	argv := append([]string{os.Args[0]}, resumeArgs(rec.Kind, rec.Argv, abs)...)
	stderr := cmd.ErrOrStderr()
	fmt.Fprintf(stderr, "sentinel: run %s (%s) did not finish: it stopped at %s\n", rec.Run.ID, lifecycle.RunSummary(rec.Run), rec.Run.Where())
	fmt.Fprintf(stderr, "sentinel: its last command, from %s: %s\n", rec.From, lifecycle.CommandLine(rec.Argv))
	if bs := rec.Run.Binaries(); len(bs) > 0 && bs[len(bs)-1].Version != version {
		fmt.Fprintf(stderr, "sentinel: it ran with sentinel %s; this is sentinel %s (%s)\n", bs[len(bs)-1].Version, version, exe)
	}
	if dryRun {
		fmt.Fprintln(cmd.OutOrStdout(), lifecycle.CommandLine(argv))
		return nil
	}
	fmt.Fprintf(stderr, "sentinel: recovering with: %s\n", lifecycle.CommandLine(argv))
	if err := syscall.Exec(exe, argv, os.Environ()); err != nil {
		return fmt.Errorf("running %s: %w", exe, err)
	}
	return nil
}

// parseLogged finds the command a logged command line ran, with its flags
// parsed as this build defines them.
func parseLogged(argv []string) (*cobra.Command, bool) {
	if len(argv) < 2 {
		return nil, false
	}
	c, rest, err := newRootCmd(nil).Find(argv[1:])
	if err != nil || c == nil {
		return nil, false
	}
	c.FParseErrWhitelist = cobra.FParseErrWhitelist{UnknownFlags: true}
	if err := c.ParseFlags(rest); err != nil {
		return nil, false
	}
	return c, true
}

// kindOf says which run a logged command starts or resumes: "upgrade",
// "maintain", "patch install" or "patch revert", or "" for one that starts none
// (status, preflight, --dry-run, --download-only, --update-self alone).
func kindOf(argv []string) (kind string, resume bool) {
	c, ok := parseLogged(argv)
	if !ok {
		return "", false
	}
	changed := func(name string) bool { f := c.Flags().Lookup(name); return f != nil && f.Changed }
	resume = changed("resume")
	if changed("dry-run") || changed("download-only") {
		return "", resume
	}
	switch strings.TrimPrefix(c.CommandPath(), "sentinel ") {
	case "upgrade":
		if changed("update-self") && c.Flags().NArg() == 0 && !resume {
			return "", false // only updates sentinel
		}
		return "upgrade", resume
	case "patch install", "patch reinstall":
		return "patch install", resume
	case "patch revert":
		return "patch revert", resume
	case "maintain":
		return "maintain", resume
	}
	return "", resume
}

// resumeArgs turns the command that ran the run into the one that finishes
// it: the resume command of its kind, this cluster file, and the options
// of the logged command that its flag definitions mark as kept on resume
// (where artifacts come from, how many nodes at once, output, retries,
// drain), spelled as they were; VERSION, --force, --role-order, --node,
// --yes and the like were planned and are dropped.
func resumeArgs(kind string, logged []string, clusterFile string) []string {
	out := append(strings.Fields(kind), "--resume", "--cluster", clusterFile)
	c, ok := parseLogged(logged)
	if !ok {
		return out
	}
	family := strings.Fields(kind)[0] // "upgrade" or "patch"
	for i := 1; i < len(logged); i++ {
		a := logged[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var f *pflag.Flag
		if strings.HasPrefix(a, "--") {
			f = c.Flags().Lookup(name)
		} else {
			f = c.Flags().ShorthandLookup(name)
		}
		if f == nil {
			continue
		}
		takesValue := f.NoOptDefVal == "" && !hasValue
		kept := slices.Contains(f.Annotations[keptOnResume], family)
		switch {
		case kept && takesValue && i+1 < len(logged):
			out = append(out, a, logged[i+1])
		case kept:
			out = append(out, a)
		}
		if takesValue {
			i++
		}
	}
	return out
}
