// Command sentinel-lab makes a local lab to try sentinel on: N nodes that
// are directories on this machine, reached by the local transport, and an
// upstream serving the fixture releases on loopback.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
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
	root.AddCommand(upCmd(), downCmd(), serveCmd(), faultCmd(), upstreamCmd(), nodeCmd(), appCmd(), routerCmd(), liveCmd(), trafficCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sentinel-lab: "+err.Error())
		os.Exit(2)
	}
}

func upCmd() *cobra.Command {
	var dir, rel, sentinel, layout string
	var nodes, payloadMiB int
	var withCache, withSSH, live bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create a lab: generate releases, start the upstream, install the nodes at a release",
		Long: `Create a lab under --dir: the fixture channel (releases 3.4.1, 3.4.2, 3.4.3)
under upstream/, an HTTP server for it on 127.0.0.1 (a background process
that 'sentinel-lab down' stops), and --nodes node roots under nodes/ with
--release installed and started. Prints the variables to export.
With --ssh, every node gets its own OpenSSH sshd on its loopback address
(background processes too; needs root and /usr/sbin/sshd) and the cluster
file reaches the nodes over SSH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 {
				return fmt.Errorf("--nodes must be 1 or more, not %d", nodes)
			}
			if layout != "" && cmd.Flags().Changed("nodes") {
				return fmt.Errorf("--layout %s fixes the nodes: leave out --nodes", layout)
			}
			opt := fixtures.LabOptions{Dir: dir, Nodes: nodes, Release: rel, Layout: layout}
			if payloadMiB > 0 {
				opt.Channel.PayloadBytes = map[string]int64{}
				for _, c := range fixtures.Components() {
					opt.Channel.PayloadBytes[c.Name] = int64(payloadMiB) << 20
				}
			}
			lab, err := fixtures.CreateLab(cmd.Context(), opt)
			if err != nil {
				return err
			}
			url, pid, err := startUpstream(lab.Dir, "127.0.0.1:0")
			if err != nil {
				return err
			}
			if err := lab.SetUpstream(url, pid); err != nil {
				return err
			}
			if withSSH {
				for _, n := range lab.Nodes {
					s, err := lab.ServeSSH(n.Name)
					if err != nil {
						return err
					}
					fmt.Printf("# node %s: sshd on %s (pid %d)\n", n.Name, s.Addr, s.PID)
				}
			}
			fmt.Printf("# lab with %d node(s) on %s; upstream %s (pid %d)\n", len(lab.Nodes), lab.Release, url, pid)
			fmt.Printf("export SENTINEL_CLUSTER=%s\n", lab.ClusterFile)
			fmt.Printf("export SENTINEL_UPSTREAM=%s\n", url)
			if withCache {
				addr, err := startCache(lab, sentinel)
				if err != nil {
					return err
				}
				fmt.Printf("# cache node %s: `sentinel cache serve` on %s (pid %d), cache_dir %s\n", lab.Cache.Node, addr, lab.CachePID, lab.Cache.Dir)
				fmt.Printf("export SENTINEL_CACHE_IP=%s\n", addr)
			}
			if live {
				if err := startLive(lab); err != nil {
					return err
				}
				for _, a := range lab.Live.Apps {
					fmt.Printf("# app %s: %d instance(s), http://%s.apps.lab through the load balancer %s\n", a.Name, a.Instances, a.Name, lab.Live.URL)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create the lab in (required)")
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of nodes (1 is a micro cloud with every role)")
	cmd.Flags().StringVar(&layout, "layout", "", "one of the docs' example clusters instead of --nodes: five (core, data services, three DEAs), seven (five with a load balancer and a second router) or twenty (core, controller, load balancer, two routers, three data-services nodes, twelve DEAs)")
	cmd.Flags().StringVar(&rel, "release", "3.4.1", "release the nodes start on")
	cmd.Flags().BoolVar(&withCache, "cache", true, "make the core node the cache node and start its daemon")
	cmd.Flags().BoolVar(&withSSH, "ssh", false, "reach every node over SSH: an sshd per node on its loopback address (needs root)")
	cmd.Flags().BoolVar(&live, "live", false, "apps that really serve: instances as processes on the DEAs, a proxy on every router node, nginx in front of the routers (needs /usr/sbin/nginx); see 'sentinel-lab traffic'")
	cmd.Flags().IntVar(&payloadMiB, "artifact-mib", 0, "make every artifact about this many MiB (default: 16 KiB), to watch transfers")
	cmd.Flags().StringVar(&sentinel, "sentinel", "", "the sentinel binary that runs the cache daemon (default: next to sentinel-lab, else $PATH)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// startCache runs `sentinel cache serve` for the lab's cache node on the
// core node's address, with the channel's root and upstream.
func startCache(lab *fixtures.Lab, sentinel string) (string, error) {
	if sentinel == "" {
		self, _ := os.Executable()
		sentinel = filepath.Join(filepath.Dir(self), "sentinel")
		if _, err := os.Stat(sentinel); err != nil {
			if sentinel, err = exec.LookPath("sentinel"); err != nil {
				return "", fmt.Errorf("cannot find the sentinel binary for the cache daemon: pass --sentinel or put it on $PATH")
			}
		}
	}
	c, err := lab.PrepareCache()
	if err != nil {
		return "", err
	}
	core, _ := lab.Node(c.Node)
	crt, key := lab.CacheTLSFiles()
	args := []string{"cache", "serve", "--dir", c.Dir, "--listen", core.Address + ":0", "--token-file", c.TokenFile, "--tls-cert", crt, "--tls-key", key}
	if strings.HasPrefix(lab.ChannelURL, "http") && lab.TrustRoot != "" {
		// The daemon holds the channel's root: prefetch fetches by name
		// only what the verified channel lists.
		args = append(args, "--trust-root", lab.TrustRoot, "--upstream", lab.ChannelURL)
	}
	line, pid, err := startDaemon(filepath.Join(lab.Dir, "cache.log"), sentinel, args...)
	if err != nil {
		return "", fmt.Errorf("the cache daemon did not start: %w", err)
	}
	addr := strings.TrimPrefix(line, "listening on ")
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("the cache daemon said %q", line)
	}
	port, _ := strconv.Atoi(portText)
	return addr, lab.SetCacheDaemon(c, port, pid)
}

// startUpstream runs `sentinel-lab serve` in the background and returns its
// repository URL and pid.
func startUpstream(dir, listen string) (string, int, error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, err
	}
	return startDaemon(filepath.Join(dir, "upstream.log"), self, "serve", "--dir", dir, "--listen", listen)
}

// startDaemon runs a server in its own session, so it outlives this
// command, and returns the first line it prints (once it listens).
func startDaemon(logPath, bin string, args ...string) (string, int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
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
		return "", 0, fmt.Errorf("%s did not start (see %s): %w", filepath.Base(bin), logf.Name(), err)
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
			if err := stopLive(lab); err != nil {
				return fmt.Errorf("stopping the live lab: %w", err)
			}
			if err := stopOurs(lab.UpstreamPID, "serve", lab.Dir); err != nil {
				return fmt.Errorf("stopping the upstream: %w", err)
			}
			if lab.Cache != nil {
				if err := stopOurs(lab.CachePID, "cache", lab.Cache.Dir); err != nil {
					return fmt.Errorf("stopping the cache daemon: %w", err)
				}
			}
			for node, pid := range lab.SSHDPIDs {
				if err := stopSSHD(pid, lab.Dir); err != nil {
					return fmt.Errorf("stopping the sshd of node %s: %w", node, err)
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

// stopOurs sends SIGTERM to pid if it still is the lab's process (its
// command line has verb and dir), not a recycled pid.
func stopOurs(pid int, verb, dir string) error {
	if pid <= 0 {
		return nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // gone already
	}
	args := strings.Split(string(data), "\x00")
	if len(args) < 2 || args[1] != verb || !slices.Contains(args, dir) {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGTERM)
}

// stopSSHD sends SIGTERM to pid if it still is one of the lab's sshds
// (/usr/sbin/sshd -f CONFIG, CONFIG under the lab directory), not a
// recycled pid. sshd rewrites its command line into one string
// ("sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] ...").
func stopSSHD(pid int, dir string) error {
	if pid <= 0 {
		return nil
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil // gone already
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	cmdline := strings.ReplaceAll(string(data), "\x00", " ")
	if strings.TrimSuffix(exe, " (deleted)") != fixtures.SSHDPath || !strings.Contains(cmdline, " -f "+dir+string(filepath.Separator)) {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGTERM)
}

func upstreamCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "upstream stop|start",
		Short: "Stop the lab's upstream (as if the internet were gone) or start it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			switch args[0] {
			case "stop":
				if err := stopOurs(lab.UpstreamPID, "serve", lab.Dir); err != nil {
					return err
				}
				return lab.SetUpstream(lab.ChannelURL, 0)
			case "start":
				u, err := url.Parse(lab.ChannelURL)
				if err != nil {
					return err
				}
				got, pid, err := startUpstream(lab.Dir, u.Host)
				if err != nil {
					return err
				}
				return lab.SetUpstream(got, pid)
			}
			return fmt.Errorf("upstream takes stop or start, not %q", args[0])
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func nodeCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "node stop|start|reboot NAME",
		Short: "Lose a lab node (its sshd and every connection through it stopped) or bring it back",
		Long: `For a lab brought up with --ssh: 'node stop NAME' stops the node's sshd and
kills every session through it, as if the machine went away mid-run;
'node start NAME' starts the sshd again on the same address and port with
the same host key, so a run stopped with exit code 75 can be resumed.
'node reboot NAME' is the lab's reboot_command for 'sentinel maintain': it
returns at once and, once the agent that ran it has ended, stops the
node, empties its root's var/run (as a boot does) and starts it again.`,
		Example: `  sentinel-lab node stop --dir /tmp/lab dea-2
  sentinel-lab node start --dir /tmp/lab dea-2`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			s, err := lab.LabSSHD(args[1])
			if err != nil {
				return err
			}
			switch args[0] {
			case "reboot":
				return rebootNode(lab, args[1])
			case "stop":
				return s.Stop()
			case "start":
				if err := s.Restart(); err != nil {
					return err
				}
				n, _ := lab.Node(args[1])
				fmt.Printf("# node %s: sshd on %s (pid %d)\n", n.Name, s.Addr, s.PID)
				return lab.UseSSH(n.Name, s.Access(n.RemoteBinary))
			}
			return fmt.Errorf("node takes stop, start or reboot, not %q", args[0])
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
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
			// A typo would arm a fault that never fires: say so instead.
			known := false
			for _, c := range fixtures.Components() {
				known = known || c.Name == component
			}
			if !known {
				var names []string
				for _, c := range fixtures.Components() {
					names = append(names, c.Name)
				}
				return fmt.Errorf("--component %q is not a fixture component (one of %s)", component, strings.Join(names, ", "))
			}
			if ver != "" {
				if _, err := os.Stat(filepath.Join(lab.SourceDir, "releases", ver)); err != nil {
					return fmt.Errorf("--version %s: the lab's channel has no such release", ver)
				}
			}
			if err := fixtures.InjectFault(n.Root, component, hook, mode, ver); err != nil {
				return err
			}
			which := "any release"
			if ver != "" {
				which = "release " + ver
			}
			fmt.Printf("# node %s: the %s hook of %s (%s) will %s\n", n.Name, hook, component, which, mode)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "lab directory")
	f.StringVar(&node, "node", "core", "lab node")
	f.StringVar(&component, "component", "", "component whose hook misbehaves")
	f.StringVar(&hook, "hook", "health", "hook: start, stop, health or migrate")
	f.StringVar(&mode, "mode", "fail", "fail, hang, or fail-after:SECONDS (passes until the component has run that long since its start)")
	f.StringVar(&ver, "version", "", "only this release's hook (default: any)")
	f.BoolVar(&clear, "clear", false, "remove every fault on the node")
	return cmd
}

// rebootEnv marks the detached half of `node reboot`.
const rebootEnv = "SENTINEL_LAB_REBOOTING"

// rebootNode returns at once, the reboot going on in a process of its own
// (fixtures.RebootNode).
func rebootNode(lab *fixtures.Lab, name string) error {
	if os.Getenv(rebootEnv) == "" {
		return fixtures.DetachReboot(os.Args[1:], []string{rebootEnv + "=1"}, filepath.Join(lab.Dir, "reboot-"+name+".log"))
	}
	return lab.RebootNode(name, fixtures.AgentPID())
}
