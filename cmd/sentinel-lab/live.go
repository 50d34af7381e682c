package main

// The processes of a live lab (see fixtures/live.go): app instances and
// routers, which the fixture hooks start and stop through these commands.

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/fixtures"
)

func appCmd() *cobra.Command {
	var a fixtures.AppInstance
	cmd := &cobra.Command{
		Use:    "app serve|start|stop",
		Short:  "One app instance of a live lab's DEA (run by dea_ng's hooks/instance)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "serve":
				return fixtures.ServeAppInstance(cmd.Context(), a)
			case "start":
				addr, err := fixtures.StartAppInstance(a)
				if err != nil {
					return err
				}
				fmt.Println(addr)
				return nil
			case "stop":
				return fixtures.StopAppInstance(a)
			}
			return fmt.Errorf("app takes serve, start or stop, not %q", args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.Root, "root", "", "the DEA's node root")
	f.StringVar(&a.DEA, "dea", "", "the DEA's name")
	f.StringVar(&a.App, "app", "", "the app")
	f.IntVar(&a.Instance, "instance", 0, "the instance number")
	f.StringVar(&a.Release, "release", "", "the DEA's release")
	for _, name := range []string{"root", "dea", "app", "release"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func routerCmd() *cobra.Command {
	var r fixtures.Router
	cmd := &cobra.Command{
		Use:    "router serve|start|stop|check",
		Short:  "A live lab's router proxy (run by the router component's hooks)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "serve":
				return fixtures.ServeRouter(cmd.Context(), r)
			case "start":
				return fixtures.StartRouter(r)
			case "stop":
				return fixtures.StopRouter(r.Root)
			case "check":
				return fixtures.CheckRouter(r.Root, r.Release)
			}
			return fmt.Errorf("router takes serve, start, stop or check, not %q", args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Root, "root", "", "the router node's root")
	f.StringVar(&r.Node, "node", "", "the router node's name")
	f.StringVar(&r.Release, "release", "", "the router's release")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

// liveCmd serves a lab live: the DEA controller with its app instances, the
// routers and the load balancer (started by up --live, stopped by down).
func liveCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "live serve",
		Short:  "Serve a lab's apps through its routers and a load balancer (started by up --live)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "serve" {
				return fmt.Errorf("live takes serve, not %q", args[0])
			}
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			lv, err := lab.StartLive(fixtures.LiveOptions{Bin: self})
			if err != nil {
				return err
			}
			fmt.Println(lv.LB.URL())
			os.Stdout.Close() // up reads one line, then goes
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			<-ctx.Done()
			return lv.Close()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory")
	return cmd
}

// startLive runs `sentinel-lab live serve` in the background and records it.
func startLive(lab *fixtures.Lab) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	url, pid, err := startDaemon(filepath.Join(lab.Dir, "live.log"), self, "live", "serve", "--dir", lab.Dir)
	if err != nil {
		return fmt.Errorf("the live lab did not start: %w", err)
	}
	return lab.SetLive(&fixtures.LiveProcess{PID: pid, URL: url, Apps: fixtures.DefaultLiveApps})
}

// stopLive stops the lab's live process and waits until it has stopped
// what it started.
func stopLive(lab *fixtures.Lab) error {
	if lab.Live == nil {
		return nil
	}
	if err := stopOurs(lab.Live.PID, "live", lab.Dir); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", lab.Live.PID))
		if err != nil || !strings.Contains(string(data), lab.Dir) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the live lab (pid %d) did not stop within 30s", lab.Live.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func trafficCmd() *cobra.Command {
	var dir string
	var opt fixtures.TrafficOptions
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "Send steady requests to every app of a live lab through its load balancer; report on SIGINT/SIGTERM",
		Long: `Sends a GET to every app of a lab brought up with --live, one every
--interval per app, through the lab's load balancer, until SIGINT or
SIGTERM (or --max-duration, --max-requests). Then prints, per app: the
requests, the failed ones (refused, reset, timed out, or any status but 200)
with their windows, the longest time without a successful answer, and the
latency of the successful ones. Exit status 1 when an app with two or more
instances saw a failed request.`,
		Example: `  sentinel-lab traffic --dir /tmp/lab & pid=$!
  sentinel upgrade 3.4.2 --yes
  kill -INT $pid; wait $pid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := fixtures.LoadLab(dir)
			if err != nil {
				return err
			}
			if lab.Live == nil {
				return fmt.Errorf("the lab in %s is not live: bring it up with --live", dir)
			}
			opt.URL = lab.Live.URL
			for _, a := range lab.Live.Apps {
				opt.Apps = append(opt.Apps, a.Name)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			tr, err := fixtures.StartTraffic(opt)
			if err != nil {
				return err
			}
			fmt.Printf("# traffic to %s through %s\n", strings.Join(opt.Apps, ", "), opt.URL)
			select {
			case <-ctx.Done():
			case <-tr.Done():
			}
			rep := tr.Stop()
			fmt.Print(rep)
			var failed []string
			for _, a := range lab.Live.Apps {
				got, _ := rep.App(a.Name)
				if a.Instances < 2 {
					fmt.Printf("single-instance app %s: %d of %d requests failed (the docs do not promise it zero downtime)\n", a.Name, got.Failures, got.Requests)
					continue
				}
				if got.Failures > 0 {
					failed = append(failed, a.Name)
				}
			}
			if len(failed) > 0 {
				fmt.Printf("FAILED: apps with two or more instances saw failed requests: %s\n", strings.Join(failed, ", "))
				os.Exit(1)
			}
			fmt.Printf("apps with two or more instances: %d requests, 0 failed\n", redundantRequests(rep, lab.Live.Apps))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "lab directory (required)")
	f.DurationVar(&opt.Interval, "interval", 10*time.Millisecond, "time between two requests to one app")
	f.DurationVar(&opt.Timeout, "timeout", 2*time.Second, "a request unanswered for this long fails")
	f.DurationVar(&opt.MaxDuration, "max-duration", 30*time.Minute, "stop after this long")
	f.IntVar(&opt.MaxRequests, "max-requests", 2_000_000, "stop after this many requests in all")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func redundantRequests(rep fixtures.TrafficReport, apps []fixtures.LiveApp) int {
	n := 0
	for _, a := range apps {
		if got, _ := rep.App(a.Name); a.Instances >= 2 {
			n += got.Requests
		}
	}
	return n
}
