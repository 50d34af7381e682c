package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/steps"
)

func newRestartCmd(stopping <-chan struct{}) *cobra.Command {
	rf := &runFlags{}
	o := &lifecycle.RestartOptions{}
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Restart the components of the cluster's nodes where they are, rolling, the core node last",
		Long: `Restart every component of the selected nodes (all, --role, --node) at
the version its current link points at: stop, start, health. DEAs are
retired first (their apps moved to the other DEAs, after a capacity check)
and unretired after; nodes that share a redundant role never restart
together; the core node goes last, alone. It is what follows
'sentinel patch install --no-restart', and the docs' "kato restart on all
nodes". Journaled like an upgrade: 'sentinel upgrade --resume' finishes an
interrupted restart.`,
		Example: `  sentinel restart --yes                  # every node
  sentinel restart --role router --yes    # the router nodes, one at a time
  sentinel restart --node dea-2 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, v := range append(append([]string(nil), o.Roles...), o.Only...) {
				if strings.TrimSpace(v) == "" {
					return usagef("--role and --node take names; an empty one names none")
				}
			}
			if err := checkDuration("drain-timeout", o.DrainTimeout, maxDrainTimeout); err != nil {
				return err
			}
			if err := checkUpdateFlags(&rf.o); err != nil {
				return err
			}
			rf.o.NoSelfUpdate = true // a restart installs nothing
			return rf.do(cmd, stopping, lifecycle.Restart(*o))
		},
	}
	f := cmd.Flags()
	rf.addCommon(f)
	f.BoolVarP(&rf.o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.StringSliceVar(&o.Roles, "role", nil, "restart only the nodes with one of these roles (ROLE[,ROLE...])")
	f.StringSliceVar(&o.Only, "node", nil, "restart only these nodes (NAME[,NAME...])")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
	f.StringVar(&rf.o.Update.MaxInFlight, "max-in-flight", "", "how many nodes may restart at once, N or a percentage (the schedule's rules still hold)")
	f.BoolVar(&rf.o.SkipDrain, "skip-drain", false, "do not wait for DEAs to move their apps away (their apps stop meanwhile)")
	return cmd
}
