package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
)

type preflightOptions struct {
	upgradeOptions
	ignore string
}

func newPreflightCmd() *cobra.Command {
	var o preflightOptions
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
		RunE: func(cmd *cobra.Command, args []string) error {
			o.stdout, o.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return runPreflightCmd(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	f.BoolVar(&o.force, "force", false, "as for upgrade: the target may be the nodes' own release")
	f.BoolVar(&o.downloadOnly, "download-only", false, "check for a download-only run")
	f.StringVar(&o.cacheIP, "cache-ip", "", "check for a run from the cache node IP[:PORT]")
	f.BoolVar(&o.skipDownload, "skip-download", false, "check for a run from the node caches only")
	f.StringVar(&o.ignore, "ignore-preflight-errors", "", "checks whose failures are only warnings: NAME,... or all ("+strings.Join(preflight.Names(), ", ")+")")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	addAllowExpiredFlag(cmd, &o.allowExpired)
	return cmd
}

func runPreflightCmd(ctx context.Context, o preflightOptions, args []string) error {
	ignore, err := parseIgnore(o.ignore)
	if err != nil {
		return err
	}
	if o.output != "text" && o.output != "json" {
		return usagef("--output must be text or json, not %q", o.output)
	}
	if o.downloadOnly && o.cacheIP == "" {
		return usagef("--download-only needs --cache-ip")
	}
	if o.downloadOnly && o.skipDownload {
		return usagef("--download-only and --skip-download contradict each other")
	}
	target := ""
	if len(args) == 1 {
		target = args[0]
	}
	inv, err := loadInventory(o.cluster)
	if err != nil {
		return err
	}
	tr, err := dialAll(inv)
	if err != nil {
		return err
	}
	src, err := sourceFor(o.upgradeOptions, inv)
	if err != nil {
		return err
	}
	log, closeLog, err := openLog(filepath.Join(inv.Core().Root, "logs"))
	if err != nil {
		return fmt.Errorf("opening the log in %s: %w", filepath.Join(inv.Core().Root, "logs"), err)
	}
	defer closeLog()
	log.Info("Running with command: " + commandLine(os.Args))
	src.trust = o.metadataTrust(log)
	src.trust.readOnly = true
	plan, _, err := planUpgrade(ctx, inv, tr, target, o.force, "preflight", src)
	if err != nil {
		return err
	}
	in := rollout.PreflightInput{Inventory: inv, Transports: tr, Plan: plan, ChannelURL: src.channel,
		DownloadOnly: o.downloadOnly, Runs: rollout.Runs{Dir: inv.State()}, Ignore: ignore}
	if o.downloadOnly {
		if in.CacheURL, err = parseCacheAddr(o.cacheIP, inv.CachePort()); err != nil {
			return err
		}
	}
	rep := rollout.Preflight(ctx, in)
	if o.output == "json" {
		if err := printPreflightJSON(o.stdout, rep); err != nil {
			return err
		}
	} else {
		printPreflight(o.stdout, rep, true)
	}
	if err := rep.Err(); err != nil {
		return &preflightError{err: err}
	}
	return nil
}

// preflightError: a check failed; nothing was changed (exit code 3).
type preflightError struct{ err error }

func (e *preflightError) Error() string {
	return "preflight failed, nothing was changed: " + e.err.Error()
}
func (e *preflightError) Unwrap() error { return e.err }

func parseIgnore(list string) (preflight.IgnoreSet, error) {
	ignore, err := preflight.ParseIgnore(list, preflight.Names())
	if err != nil {
		return nil, usagef("%v", err)
	}
	return ignore, nil
}

// sourceFor says where a plan reads the channel and artifacts from.
func sourceFor(o upgradeOptions, inv *cluster.Inventory) (planSource, error) {
	src := planSource{channel: inv.Channel, skipDownload: o.skipDownload}
	if o.cacheIP != "" && !o.downloadOnly {
		u, err := parseCacheAddr(o.cacheIP, inv.CachePort())
		if err != nil {
			return src, err
		}
		src.cacheURL, src.channel = u, u+"/channel/index.json"
	}
	return src, nil
}

// printPreflight renders the report as a table; all shows passing checks too.
func printPreflight(w io.Writer, rep *preflight.Report, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK\tSTATUS\tREASON")
	for _, r := range rep.Results {
		if !all && r.Status == "PASS" {
			continue
		}
		node := r.Node
		if node == "" {
			node = "(cluster)"
		}
		reason := strings.Join(r.Messages, "; ")
		if r.Ignored {
			reason = "ignored: " + reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", node, r.Check, r.Status, reason)
	}
	tw.Flush()
}

// preflightJSON is the stable shape of `sentinel preflight --output json`.
type preflightJSON struct {
	OK      bool               `json:"ok"`
	Results []preflight.Result `json:"results"`
}

func printPreflightJSON(w io.Writer, rep *preflight.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(preflightJSON{OK: rep.Err() == nil, Results: rep.Results})
}
