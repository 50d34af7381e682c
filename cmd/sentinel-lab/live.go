package main

// The processes of a live lab (see fixtures/live.go): app instances and
// routers, which the fixture hooks start and stop through these commands.

import (
	"fmt"

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
