// Command sentinel-lab makes a local lab to try sentinel on: N nodes that
// are directories on this machine, reached by the local transport, and an
// upstream serving the fixture releases on loopback.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/fixtures"
)

func main() {
	root := &cobra.Command{
		Use:           "sentinel-lab",
		Short:         "A local lab for sentinel: fixture releases, an upstream on loopback, N nodes as directories",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCmd(), downCmd(), serveCmd(), faultCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sentinel-lab: "+err.Error())
		os.Exit(2)
	}
}

func upCmd() *cobra.Command {
	var dir, rel string
	var nodes int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create a lab: generate releases, start the upstream, install the nodes at a release",
		Long: `Create a lab under --dir: the fixture channel (releases 3.4.1, 3.4.2, 3.4.3)
under upstream/, an HTTP server for it on 127.0.0.1 (a background process
that 'sentinel-lab down' stops), and --nodes node roots under nodes/ with
--release installed and started. Prints the variables to export.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := fixtures.CreateLab(cmd.Context(), fixtures.LabOptions{Dir: dir, Nodes: nodes, Release: rel})
			if err != nil {
				return err
			}
			url, pid, err := startUpstream(lab.Dir)
			if err != nil {
				return err
			}
			if err := lab.SetUpstream(url, pid); err != nil {
				return err
			}
			fmt.Printf("# lab with %d node(s) on %s; upstream %s (pid %d)\n", len(lab.Nodes), lab.Release, url, pid)
			fmt.Printf("export SENTINEL_CLUSTER=%s\n", lab.ClusterFile)
			fmt.Printf("export SENTINEL_UPSTREAM=%s\n", url)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create the lab in (required)")
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of nodes (1 is a micro cloud with every role)")
	cmd.Flags().StringVar(&rel, "release", "3.4.1", "release the nodes start on")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// startUpstream runs `sentinel-lab serve` in its own session, so it outlives
// this command, and reads the URL it prints once it listens.
func startUpstream(dir string) (string, int, error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, err
	}
	logf, err := os.Create(filepath.Join(dir, "upstream.log"))
	if err != nil {
		return "", 0, err
	}
	defer logf.Close()
	cmd := exec.Command(self, "serve", "--dir", dir)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return "", 0, fmt.Errorf("the upstream server did not start (see %s): %w", logf.Name(), err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return strings.TrimSpace(line), pid, nil
}

func serveCmd() *cobra.Command {
	var dir, listen string
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Serve a lab's upstream over HTTP (started by up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			up, err := fixtures.ServeUpstream(filepath.Join(dir, "upstream"), listen)
			if err != nil {
				return err
			}
			fmt.Println(up.URL)
			os.Stdout.Close() // up reads one line, then goes
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			<-ctx.Done()
			return up.Close()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to listen on")
	return cmd
}

func downCmd() *cobra.Command {
	var dir string
	var keep bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's upstream and remove the lab directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			if lab.UpstreamPID > 0 && isOurServer(lab.UpstreamPID, lab.Dir) {
				if err := syscall.Kill(lab.UpstreamPID, syscall.SIGTERM); err != nil {
					return fmt.Errorf("stopping the upstream (pid %d): %w", lab.UpstreamPID, err)
				}
			}
			if keep {
				return nil
			}
			return os.RemoveAll(lab.Dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory (required)")
	cmd.Flags().BoolVar(&keep, "keep", false, "stop the upstream but keep the files")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// isOurServer checks the pid still is this lab's server, not a recycled pid.
func isOurServer(pid int, dir string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(data), "\x00")
	return len(args) > 3 && args[1] == "serve" && args[3] == dir
}

func faultCmd() *cobra.Command {
	var dir, node, component, hook, mode, ver string
	var clear bool
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Make a fixture hook fail or hang on one lab node (or --clear all faults)",
		Example: `  sentinel-lab fault --dir /tmp/lab --node core --component router --hook health --mode fail --version 3.4.2
  sentinel-lab fault --dir /tmp/lab --node core --clear`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			n, ok := lab.Node(node)
			if !ok {
				return fmt.Errorf("the lab has no node %q", node)
			}
			if clear {
				return fixtures.ClearFaults(n.Root)
			}
			return fixtures.InjectFault(n.Root, component, hook, mode, ver)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "lab directory")
	f.StringVar(&node, "node", "core", "lab node")
	f.StringVar(&component, "component", "", "component whose hook misbehaves")
	f.StringVar(&hook, "hook", "health", "hook: start, stop, health or migrate")
	f.StringVar(&mode, "mode", "fail", "fail or hang")
	f.StringVar(&ver, "version", "", "only this release's hook (default: any)")
	f.BoolVar(&clear, "clear", false, "remove every fault on the node")
	return cmd
}
