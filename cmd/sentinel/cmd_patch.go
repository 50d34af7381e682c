package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/steps"
	"github.com/sentinel-paas/sentinel/ui"
)

// patchFlags are the flags of every `sentinel patch` verb.
type patchFlags struct {
	run          runFlags
	p            lifecycle.PatchOptions
	downloadOnly bool
	stopping     <-chan struct{}
}

func newPatchCmd(stopping <-chan struct{}) *cobra.Command {
	pf := &patchFlags{stopping: stopping}
	cmd := &cobra.Command{
		Use:   "patch",
		Short: "List, install and revert the patches of the cluster's release",
		Long: `Patches are small fixes published for one release between releases: each
replaces a few components with a patch level of their version (aok 3.4.2 ->
3.4.2-p1) on the nodes of the roles it affects.

'sentinel patch status' lists them with the nodes they are installed on and
still to be installed on. 'sentinel patch install' installs them with the
same safety as an upgrade: artifacts verified by sha256 on every node before
anything changes, every step journaled ('--resume' finishes an interrupted
run), and a component that fails to start or become healthy is returned,
with the rest of its patch on that node, to what ran before.

node.json on each node records the installed patches. An upgrade to a later
release supersedes them: after it, status lists the new release's patches.`,
	}
	pf.run.addCommon(cmd.PersistentFlags())
	cmd.AddCommand(pf.statusCmd(), pf.installCmd(), pf.reinstallCmd(), pf.revertCmd(), pf.markCmd())
	return cmd
}

func (pf *patchFlags) installCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install [NAME...]",
		Short: "Install every pending patch, or the named ones, on the nodes of their roles",
		Long: `Install the named patches (all pending ones without NAME) on every node of
the roles they affect that lacks them, or only on --node NAME or the --local
node. Nodes go in the upgrade's order: DEAs first, one at a time (retired
while their dea_ng restarts), the core node last.

Per node: fetch and verify every artifact (on every node before any change:
a missing artifact or a sha256 mismatch stops the run with nothing
installed), back up <root>/etc, unpack the patch's components, then per
component stop, switch, start and check health; then node.json records the
patch. Only the patched components restart. With --no-restart the files are
switched in and nothing restarts: the running processes keep the old version
until their next restart.

A failed start or health check returns that patch's components on that node
to what ran before, and the run stops (exit 1) naming the node and step; the
nodes already patched keep the patch. An interrupted run (Ctrl-C, a crash, a
lost node) exits 75 and 'sentinel patch install --resume' finishes it.
Installing a patch that is already installed is a no-op that says so.`,
		Example: `  sentinel patch install --dry-run
  sentinel patch install aok-endpoint-fix --yes
  sentinel patch install --node router-3 --no-restart --yes
  sentinel patch install --resume
  sentinel patch install --download-only --cache-ip 10.0.0.1   # fill the cache node now...
  sentinel patch install --cache-ip 10.0.0.1 --yes             # ...install from it later, even offline`,
		RunE: pf.runJob(patches.KindInstall, false),
	}
	pf.addRunFlags(cmd, true)
	cmd.Flags().BoolVar(&pf.downloadOnly, "download-only", false, "only fill the cache node (--cache-ip) with the patches' artifacts and documents; change no node")
	return cmd
}

func (pf *patchFlags) reinstallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reinstall NAME",
		Short: "Install a patch again, also where node.json records it (files damaged or replaced by hand)",
		Args:  cobra.ExactArgs(1),
		RunE:  pf.runJob(patches.KindInstall, true),
	}
	pf.addRunFlags(cmd, false)
	return cmd
}

func (pf *patchFlags) revertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revert [NAME...]",
		Short: "Return the components of the named patches (all installed ones without NAME) to the release's versions",
		Long: `Revert the named patches (every installed patch without NAME) on every node
that has them, or only on --node NAME or the --local node: each component
goes back to the version it had without the patch (the release's own, or
the level of another patch the node keeps), stopped, switched, started and
checked like an install; then node.json forgets the patch. Journaled and
resumable: 'sentinel patch revert --resume'.`,
		RunE: pf.runJob(patches.KindRevert, false),
	}
	pf.addRunFlags(cmd, true)
	return cmd
}

func (pf *patchFlags) addRunFlags(c *cobra.Command, resume bool) {
	f := c.Flags()
	pf.run.add(c, false)
	f.StringSliceVar(&pf.p.Nodes, "node", nil, "only these nodes (NAME[,NAME...])")
	f.BoolVar(&pf.p.Local, "local", false, "only the node this command runs on ($SENTINEL_NODE, else the node named as this host, else the one with this machine's address)")
	f.BoolVar(&pf.p.NoRestart, "no-restart", false, "switch the patched files in but restart nothing: the running processes keep the old version until they are restarted")
	f.BoolVar(&pf.run.o.DryRun, "dry-run", false, "print the plan and change nothing")
	f.DurationVar(&pf.p.DrainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
	if resume {
		f.BoolVar(&pf.run.o.Resume, "resume", false, "finish the unfinished patch run instead of starting a new one")
		f.StringArrayVar(&pf.run.o.Exclude, "exclude-node", nil, "with --resume: leave this node out of the unfinished patch run (repeatable), journaled with --reason; the run finishes the others")
		f.StringVar(&pf.run.o.ExcludeReason, "reason", "", "why the --exclude-node nodes are left out (kept in the journal with who and from where)")
	}
}

// runJob carries out a patch run of kind.
func (pf *patchFlags) runJob(kind string, reinstall bool) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		p, run := &pf.p, &pf.run
		p.Kind, p.Names, p.Reinstall = kind, args, reinstall
		if run.o.Resume && (len(args) > 0 || len(p.Nodes) > 0 || p.Local || p.NoRestart || run.o.DryRun) {
			return usagef("--resume finishes the unfinished patch run as it was planned: it takes no NAME, --node, --local, --no-restart or --dry-run (only --cache-ip or --no-cache, to change where the artifacts left to fetch come from)")
		}
		for _, n := range args {
			if n == "" {
				return usagef("empty patch name")
			}
		}
		if err := checkDuration("drain-timeout", p.DrainTimeout, maxDrainTimeout); err != nil {
			return err
		}
		if err := checkUpdateFlags(&run.o); err != nil {
			return err
		}
		if pf.downloadOnly && run.o.Resume {
			return usagef("--download-only needs --cache-ip (and no --resume): it fills the cache node, from which a later `sentinel patch install --cache-ip IP` runs")
		}
		job := lifecycle.Patch(*p)
		if pf.downloadOnly {
			job = lifecycle.PatchDownloadOnly(*p)
		}
		return run.do(c, pf.stopping, job)
	}
}

func (pf *patchFlags) statusCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the patches some node still needs (all of them with --all), with their nodes",
		Long: `For the core node's release, list each patch some node still needs: its id,
description, the roles it affects, the nodes it is installed on and the
nodes it is still to be installed on (nodes of those roles that lack it).
With --all, patches installed everywhere too. A node whose node.json and
files disagree about a patch is reported, with what to run.

--output json prints one document; its shape is in docs/reference.md (sentinel patch).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			inv, err := pf.run.inventory()
			if err != nil {
				return err
			}
			st, err := lifecycle.PatchStatus(c.Context(), inv, runEnv(c, pf.run.output, pf.stopping), pf.run.options())
			if err != nil {
				return err
			}
			if pf.run.output == ui.JSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			ui.PrintPatchStatus(c.OutOrStdout(), st, all)
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list every patch of the release, installed ones too")
	cmd.Flags().StringVar(&pf.run.o.CacheAddr, "cache-ip", "", "read the patch catalog from the cache node's daemon (IP[:PORT]) instead of the upstream")
	return cmd
}

func (pf *patchFlags) markCmd() *cobra.Command {
	var installed, notInstalled bool
	cmd := &cobra.Command{
		Use:   "mark --installed|--not-installed NAME",
		Short: "Record in node.json that a patch is (or is not) installed, changing no file: for nodes fixed by hand",
		Long: `Change only what node.json says: add the patch to the record of every node of
its roles (or --node NAME, or the --local node) with --installed, or remove
it with --not-installed. No component is touched and nothing restarts.
'sentinel patch status' then reports nodes whose files disagree.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if installed == notInstalled {
				return usagef("say what to record: --installed or --not-installed")
			}
			inv, err := pf.run.inventory()
			if err != nil {
				return err
			}
			marked, err := lifecycle.PatchMark(c.Context(), inv, runEnv(c, pf.run.output, pf.stopping), pf.run.options(), pf.p, args[0], installed)
			if err != nil {
				return err
			}
			if pf.run.output == ui.JSON {
				return json.NewEncoder(c.OutOrStdout()).Encode(map[string]any{"patch": args[0], "installed": installed, "nodes": marked})
			}
			for _, m := range marked {
				fmt.Fprintf(c.OutOrStdout(), "[%s] %s\n", m.Node, m.Note)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&installed, "installed", false, "record the patch as installed")
	cmd.Flags().BoolVar(&notInstalled, "not-installed", false, "record the patch as not installed")
	cmd.Flags().BoolVar(&notInstalled, "notinstalled", false, "same as --not-installed (the product's spelling)")
	cmd.Flags().StringSliceVar(&pf.p.Nodes, "node", nil, "only these nodes (NAME[,NAME...])")
	cmd.Flags().BoolVar(&pf.p.Local, "local", false, "only the node this command runs on")
	return cmd
}
