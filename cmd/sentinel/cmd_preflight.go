package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/ui"
)

func newPreflightCmd() *cobra.Command {
	var (
		run          runFlags
		u            lifecycle.UpgradeOptions
		downloadOnly bool
	)
	cmd := &cobra.Command{
		Use:   "preflight [VERSION]",
		Short: "Check every node before an upgrade: disk, memory, reachability, versions, DEA capacity",
		Long: `Check every node, all at once, changing nothing:
  DiskSpace        free disk on the file system of the node root (and of the
                   cache node's cache_dir): 7 GiB per node, 10 GiB on the cache node
  Memory           free memory, within the node's memory cgroup if it has one:
                   1 GiB on the core and cache nodes, 512 MiB on others
  Reachability     the upstream hosts (channel and artifacts), through
                   http_proxy/https_proxy; with --cache-ip the cache daemon
                   instead; with --download-only, from the cache node only
  ReleaseVersion   every node on the core node's release
  ArtifactsPresent with --skip-download, every artifact intact in the node caches
  DEACapacity      each DEA's app instances fit on the other DEAs
  RunLock          no other run holds the lock, no unfinished run
  MaintenanceMode  the cluster's maintenance_hook says maintenance mode is on
                   (a warning; not needed for --download-only)
  Customizations   local changes an upgrade would replace (a warning)
Thresholds can be changed in the cluster file (preflight: node_disk_gib,
cache_disk_gib, node_memory_mib, core_memory_mib). 'sentinel upgrade' runs
the same checks first. Exit code 3 when a check fails;
--ignore-preflight-errors NAME,... turns named failures into warnings.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPreflight(cmd, &run, u, downloadOnly, args) },
	}
	f := cmd.Flags()
	run.addCommon(f)
	f.BoolVar(&u.Force, "force", false, "as for upgrade: the target may be the nodes' own release")
	f.BoolVar(&downloadOnly, "download-only", false, "check for a download-only run")
	f.StringVar(&run.o.CacheAddr, "cache-ip", "", "check for a run from the cache node IP[:PORT] (default: the cluster file's cache section)")
	f.BoolVar(&run.o.NoCache, "no-cache", false, "check for a run from the upstream, though the cluster file's cache section names a cache node")
	f.BoolVar(&u.SkipDownload, "skip-download", false, "check for a run from the node caches only")
	f.StringVar(&run.ignore, "ignore-preflight-errors", "", "checks whose failures are only warnings: NAME,... or all ("+strings.Join(preflight.Names(), ", ")+")")
	return cmd
}

// runPreflight checks every node and shows each check's result: exit 3
// when one failed.
func runPreflight(cmd *cobra.Command, run *runFlags, u lifecycle.UpgradeOptions, downloadOnly bool, args []string) error {
	if downloadOnly && u.SkipDownload {
		return usagef("--download-only and --skip-download contradict each other")
	}
	if len(args) == 1 {
		u.Target = args[0]
	}
	ignore, err := parseIgnore(run.ignore)
	if err != nil {
		return err
	}
	inv, err := run.inventory()
	if err != nil {
		return err
	}
	if downloadOnly && run.o.CacheAddr == "" {
		return usagef("--download-only needs --cache-ip, or a cache section in the cluster file")
	}
	o := run.options()
	o.Ignore = ignore
	rep, err := lifecycle.Preflight(cmd.Context(), inv, runEnv(cmd, run.output, nil), o, u, downloadOnly)
	if err != nil {
		return err
	}
	if run.output == ui.JSON {
		err = ui.PrintPreflightJSON(cmd.OutOrStdout(), rep)
	} else {
		ui.PrintPreflight(cmd.OutOrStdout(), rep, true)
	}
	if err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return &lifecycle.PreflightError{Err: err}
	}
	return nil
}
