// Command sentinel upgrades and patches a role-based PaaS cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/ui"
)

// journaling is set while an upgrade runs its journaled steps: a first
// Ctrl-C then lets the current step finish instead of cutting it.
var journaling atomic.Bool

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: the contract scripts rely on.
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitPreflight = 3
	// exitExcluded: the run is done, without the nodes the operator
	// excluded (rollout.PartialError).
	exitExcluded = 4
	// exitFailedWithinBudget: the run is done, and some nodes failed and
	// were rolled back within --max-failures (nodes may be excluded too).
	exitFailedWithinBudget = 5
	exitInterrupted        = 75
)

// usageError is bad input: nothing was changed.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// exitCode maps an error to the exit code table.
func exitCode(err error) int {
	var (
		ir *rollout.InterruptedError
		pf *lifecycle.PreflightError
		ma *rollout.MissingArtifactsError
		pe *rollout.PartialError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &pe) && len(pe.Failed) > 0:
		return exitFailedWithinBudget
	case errors.As(err, &pe):
		return exitExcluded
	case errors.As(err, &ir), errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ma), errors.As(err, &pf):
		return exitPreflight
	case badInput(err):
		return exitUsage
	}
	return exitFailed
}

// badInput: the operator's input, the cluster file or the channel's
// metadata was refused before anything changed (exit 2).
func badInput(err error) bool {
	for _, target := range []any{
		new(*usageError), new(*lifecycle.UsageError), new(*rollout.UsageError), new(*ui.ConfirmError), new(*cache.ConfigError),
		new(*release.MetadataError), new(*release.UnknownReleaseError), new(*release.NoPathError),
		new(*cluster.InventoryError), new(*resume.LockedError),
		new(*channel.Error), new(*channel.ConfigError), // refused channel metadata or documents
		new(*cluster.HostKeyError), // known_hosts must be fixed: no retry helps
		new(*source.AddressError), new(*cache.CertError), new(*source.CacheMissError), new(*source.ConfigError),
		new(*oci.RefError), new(*oci.SettingsError), new(*oci.NoPublicationError), new(*oci.ReachError), // a registry URL or its settings
	} {
		if errors.As(err, target) {
			return true
		}
	}
	return false
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopping := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		if !journaling.Load() {
			// Nothing is half-done between journaled steps: stop now.
			fmt.Fprintln(os.Stderr, "sentinel: interrupted")
			cancel()
		} else {
			fmt.Fprintln(os.Stderr, "sentinel: stopping after the current step (interrupt again to stop now; `sentinel upgrade --resume` continues)")
			close(stopping)
			<-sigs
			cancel()
		}
		// Stopping may wait on the nodes (the lease given back, the
		// agents ended, each bounded): one more interrupt ends at once.
		signal.Reset(syscall.SIGINT, syscall.SIGTERM)
	}()

	root := newRootCmd(stopping)
	err := root.ExecuteContext(ctx)
	var se *silentExit
	if errors.As(err, &se) {
		os.Exit(se.code)
	}
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		err = usagef("%v", err) // cobra's own, for the root command
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sentinel: "+err.Error())
		code := exitCode(err)
		if code == exitUsage && isFlagError(err) {
			fmt.Fprintln(os.Stderr, "run `sentinel --help` for usage")
		}
		os.Exit(code)
	}
}

// cobra reports flag and argument errors as plain errors: mark them.
func isFlagError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe)
}

type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// extraCommands are added by files built with tags only (gendocs.go).
var extraCommands []func(root *cobra.Command) *cobra.Command

func newRootCmd(stopping <-chan struct{}) *cobra.Command {
	root := &cobra.Command{
		Use:   "sentinel",
		Short: "Upgrade and patch a role-based PaaS cluster, journaled and resumable",
		Long: `sentinel moves a whole cluster to a new release, one journaled step at a time.

A crash, a lost node or a network failure leaves a run that
'sentinel upgrade --resume' finishes.

Exit codes: 0 done; 1 failed; 2 bad usage or bad input (nothing changed);
3 preflight refused; 4 done with nodes excluded; 5 done with nodes failed
and rolled back within --max-failures; 75 interrupted but resumable (for
'sentinel status': the run is interrupted or still running).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	root.AddCommand(newUpgradeCmd(stopping), newPreflightCmd(), newStatusCmd(), newCacheCmd(), newNodeCmd(), newVersionCmd())
	root.AddCommand(newChannelCmd())
	root.AddCommand(newPatchCmd(stopping))
	root.AddCommand(newRecoverCmd())
	root.AddCommand(newRunsCmd(), newAttachCmd(), newStopCmd(), newRestartCmd(stopping), newMaintainCmd(stopping))
	for _, extra := range extraCommands {
		root.AddCommand(extra(root))
	}
	root.Version = version // --version
	strictUsage(root)
	return root
}

// strictUsage makes every argument mistake a usage error (exit 2): a wrong
// number of arguments, and an unknown subcommand, which cobra would
// otherwise answer with the help and exit 0.
func strictUsage(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictUsage(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q: see `%s --help`", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
		return
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usagef("%s: %v (see `%s --help`)", cmd.CommandPath(), err, cmd.CommandPath())
			}
			return nil
		}
	}
}
