package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print sentinel's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "sentinel %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if check {
				return selfCheck(cmd.OutOrStdout())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "also check that this build can run an upgrade (its commands and flags parse, its executable is readable): the health check a self-update makes of a new build before it keeps it; exit 0 when healthy")
	return cmd
}

// selfCheck is the health check of a build, run by a self-update on the
// new executable before the old one is dropped: cheap, and changing
// nothing. It fails if this build could not take over a run.
func selfCheck(w io.Writer) error {
	root := newRootCmd(make(chan struct{}))
	for _, argv := range [][]string{
		{"upgrade", "--resume", "--cluster", "cluster.yaml", "--cache-ip", "127.0.0.1", "--no-self-update"},
		{"upgrade", "3.4.2", "--yes", "--update-self"},
		{"patch", "install", "--resume"},
		{"recover", "--cluster", "cluster.yaml"},
		{"node", "facts"},
	} {
		c, rest, err := root.Find(argv)
		if err != nil {
			return fmt.Errorf("self-check: command %q: %w", argv, err)
		}
		if err := c.ParseFlags(rest); err != nil {
			return fmt.Errorf("self-check: %q: %w", argv, err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("self-check: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("self-check: the executable, pushed to SSH nodes, cannot be read: %w", err)
	}
	defer f.Close()
	if _, err := f.Read(make([]byte, 4096)); err != nil {
		return fmt.Errorf("self-check: reading %s: %w", exe, err)
	}
	fmt.Fprintln(w, "self-check: ok")
	return nil
}
