package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/preflight"
)

func newCacheCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "The artifact cache: run the cache daemon, list, verify and prune a cache directory",
		Long: `The cache node keeps every artifact of an upgrade, named by its sha256, and
the channel documents, so that 'sentinel upgrade --cache-ip IP' runs from the
LAN, with or without internet. Fill it with
'sentinel upgrade --download-only --cache-ip IP' while the cluster runs.`,
	}
	cmd.AddCommand(newCacheServeCmd(), newCacheCertCmd(), newCacheDropInCmd(), newCacheFetchCmd(), newCacheLsCmd(), newCacheVerifyCmd(), newCachePruneCmd())
	return cmd
}

// cacheConfig is where the cache commands find the cache directory: the
// daemon's configuration file (--config) or --dir; --dir and --channel-dir
// win over the file for ls, verify, prune and fetch.
type cacheConfig struct {
	CacheDir   string
	ChannelDir string
}

func (c *cacheConfig) channelDir() string {
	if c.ChannelDir != "" {
		return c.ChannelDir
	}
	return filepath.Join(c.CacheDir, "channel")
}

func cacheDirFlags(cmd *cobra.Command, c *cacheConfig, config *string) {
	cmd.Flags().StringVar(config, "config", "", "the cache daemon's configuration file (sentinel-d.yaml: its cache_dir and channel_dir)")
	cmd.Flags().StringVar(&c.CacheDir, "dir", "", "cache directory (the cache_dir setting)")
	cmd.Flags().StringVar(&c.ChannelDir, "channel-dir", "", "where the channel documents are kept (default DIR/channel)")
}

// existingCacheDir refuses a cache directory that is not there: a typo
// must not read as an empty cache.
func existingCacheDir(dir string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usagef("%s is not a cache directory (check --dir, or cache_dir in --config)", dir)
	}
	return nil
}

func resolveCacheConfig(cmd *cobra.Command, c *cacheConfig, config string) error {
	if config != "" {
		file, err := cache.ReadConfig(config)
		if err != nil {
			return err
		}
		if !cmd.Flags().Changed("dir") {
			c.CacheDir = file.CacheDir
		}
		if !cmd.Flags().Changed("channel-dir") && !cmd.Flags().Changed("dir") {
			c.ChannelDir = file.ChannelDir
		}
	}
	if c.CacheDir == "" {
		return usagef("no cache directory: pass --dir DIR or --config FILE with cache_dir")
	}
	if !filepath.IsAbs(c.CacheDir) {
		abs, err := filepath.Abs(c.CacheDir)
		if err != nil {
			return err
		}
		c.CacheDir = abs
	}
	return nil
}

// serveFlags are the daemon's settings given on the command line instead
// of a configuration file (the lab and the tests use them).
var serveFlags = []string{"dir", "channel-dir", "listen", "upstream", "token-file", "tls-cert", "tls-key", "plain-http", "proxy", "log-file", "no-progress-timeout", "max-conns-per-client", "trust-root"}

func newCacheServeCmd() *cobra.Command {
	var c cache.Config
	var config string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the cache daemon: serve artifacts by digest and the channel documents",
		Long: "Serve the cache directory over HTTPS:\n" + cache.Routes +
			"  GET      /readyz                   200 when ready, else 503 with the reasons (JSON; certificate and token ages)\n\n" + `Its configuration file (--config, /etc/sentinel/sentinel-d.yaml when
installed from the package) is the one source of truth for the daemon;
without one, the flags below say the same things (and are refused with
--config). TLS is required unless plain_http: true (--plain-http) says
otherwise. The certificate, key and token files are re-read when they
change. With an upstream, a missing artifact is pulled through; without
one (the default) the daemon works air-gapped. It prints "listening on
ADDR" once it accepts connections, logs JSON lines (stderr, or log_file),
and stops gracefully on SIGTERM or SIGINT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config != "" {
				for _, f := range serveFlags {
					if cmd.Flags().Changed(f) {
						return usagef("--%s and --config: the configuration file is the daemon's one source of truth; set it there", f)
					}
				}
				file, err := cache.LoadConfig(config)
				if err != nil {
					return err
				}
				c = file
			}
			return runCacheServe(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "the daemon's configuration file (YAML; see docs/reference.md)")
	f.StringVar(&c.CacheDir, "dir", "", "cache directory (cache_dir)")
	f.StringVar(&c.ChannelDir, "channel-dir", "", "where the channel documents are kept (channel_dir; default DIR/channel)")
	f.StringVar(&c.Listen, "listen", fmt.Sprintf(":%d", cluster.DefaultCachePort), "address to listen on (listen)")
	f.StringVar(&c.Upstream, "upstream", "", "channel base URL to pull missing artifacts from (upstream; off by default: air-gapped)")
	f.StringVar(&c.TokenFile, "token-file", "", "file holding the bearer token of the prefetch API (token_file; without it, prefetch is disabled)")
	f.StringVar(&c.TLSCertFile, "tls-cert", "", "PEM certificate (tls_cert_file)")
	f.StringVar(&c.TLSKeyFile, "tls-key", "", "PEM private key (tls_key_file)")
	f.BoolVar(&c.PlainHTTP, "plain-http", false, "serve plain HTTP, without TLS (plain_http: true); the token then crosses the network in clear")
	f.StringVar(&c.Proxy, "proxy", "", "HTTP proxy for the daemon's upstream fetches (proxy; default: http_proxy, https_proxy, no_proxy)")
	f.StringVar(&c.LogFile, "log-file", "", "JSON log file, rotated (log_file; default stderr)")
	f.DurationVar(&c.NoProgressTimeout, "no-progress-timeout", 0, "cut a client that reads nothing for this long (no_progress_timeout; default 60s)")
	f.IntVar(&c.MaxConnsPerClient, "max-conns-per-client", 0, "open connections allowed per client address (max_conns_per_client; default 64)")
	f.StringVar(&c.TrustRoot, "trust-root", "", "the channel's root (trust_root; as the cluster file's trust.root): prefetch then fetches by name, from --upstream, only what the verified channel lists")
	return cmd
}

func runCacheServe(ctx context.Context, c cache.Config, stdout, stderr io.Writer) error {
	if err := c.Check(); err != nil {
		return err
	}
	logger, closer, err := cache.DaemonLogger(c, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	srv, err := cache.NewDaemon(c, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return cache.ServeDaemon(ctx, srv, c, logger, func(a net.Addr) {
		fmt.Fprintf(stdout, "listening on %s\n", a)
	})
}

func newCacheLsCmd() *cobra.Command {
	var c cacheConfig
	var config string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the cached artifacts: digest, size, and the releases that use each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolveCacheConfig(cmd, &c, config); err != nil {
				return err
			}
			if err := existingCacheDir(c.CacheDir); err != nil {
				return err
			}
			store := &cache.Store{Dir: c.CacheDir}
			entries, err := store.List()
			if err != nil {
				return err
			}
			usage, _, err := cache.ChannelUsage(c.channelDir())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SHA256\tSIZE\tUSED BY")
			var total int64
			for _, e := range entries {
				used := strings.Join(usage[e.Digest], ", ")
				if used == "" {
					used = "(no release in the cache's channel)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Digest, preflight.FormatBytes(e.Size), used)
				total += e.Size
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "%d artifacts, %s\n", len(entries), preflight.FormatBytes(total))
			return nil
		},
	}
	cacheDirFlags(cmd, &c, &config)
	return cmd
}

func newCacheVerifyCmd() *cobra.Command {
	var c cacheConfig
	var config string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every cached artifact; quarantine those that do not match their digest",
		Long: `Re-hash every cached artifact. One whose bytes no longer match its sha256
is moved to DIR/quarantine/, so it is neither served nor installed, and the
next fetch downloads it again. Exit code 1 when anything was quarantined.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolveCacheConfig(cmd, &c, config); err != nil {
				return err
			}
			if err := existingCacheDir(c.CacheDir); err != nil {
				return err
			}
			store := &cache.Store{Dir: c.CacheDir}
			rep, err := store.Verify(cmd.Context(), nil)
			if err != nil {
				return err
			}
			for _, b := range rep.Bad {
				fmt.Fprintf(cmd.OutOrStdout(), "BAD %s: its bytes hash to %s; quarantined as %s\n", b.Digest, b.Got, b.QuarantinedAs)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d artifacts checked, %d bad\n", rep.Checked, len(rep.Bad))
			if len(rep.Bad) > 0 {
				return fmt.Errorf("%d artifact(s) in %s were damaged and quarantined; fill the cache again with `sentinel upgrade --download-only --cache-ip ...`", len(rep.Bad), c.CacheDir)
			}
			return nil
		},
	}
	cacheDirFlags(cmd, &c, &config)
	return cmd
}

func newCachePruneCmd() *cobra.Command {
	var c cacheConfig
	var config, keepFrom string
	var dryRun, unreferenced bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Drop cached artifacts that no current or pending release needs",
		Long: `Drop the artifacts of the releases older than --keep-from that no release
from --keep-from on uses, per the channel documents the cache holds, and
those releases' manifests. An artifact that no manifest names (a download
still under way, another cluster's) is kept unless --unreferenced. Nothing
being downloaded is touched. A successful upgrade through the cache node
does this by itself, with --keep-from set to the new release.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolveCacheConfig(cmd, &c, config); err != nil {
				return err
			}
			if err := existingCacheDir(c.CacheDir); err != nil {
				return err
			}
			store := &cache.Store{Dir: c.CacheDir}
			if keepFrom == "" && !unreferenced {
				return usagef("say what to drop: --keep-from VERSION (older releases), --unreferenced (artifacts no manifest names), or both")
			}
			removed, err := store.Prune(c.channelDir(), keepFrom, unreferenced, dryRun)
			var freed int64
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			for _, e := range removed {
				freed += e.Size
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s)\n", verb, e.Digest, preflight.FormatBytes(e.Size))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d artifacts, %s\n", verb, len(removed), preflight.FormatBytes(freed))
			return err
		},
	}
	cacheDirFlags(cmd, &c, &config)
	cmd.Flags().StringVar(&keepFrom, "keep-from", "", "keep the artifacts of this release and newer ones")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be removed")
	cmd.Flags().BoolVar(&unreferenced, "unreferenced", false, "also drop artifacts that no manifest in the cache names")
	return cmd
}

func newCacheFetchCmd() *cobra.Command {
	var c cacheConfig
	var config, digest string
	var size int64
	cmd := &cobra.Command{
		Use:   "fetch URL",
		Short: "Fetch one artifact into a cache directory, verified by sha256 (resumes a cut transfer)",
		Long: `Fetch one artifact into the cache directory under its sha256: streamed,
hashed while it arrives, made durable, and visible only once verified. A
transfer cut short resumes where it stopped when run again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := resolveCacheConfig(cmd, &c, config); err != nil {
				return err
			}
			if size < 0 {
				return usagef("--size must be the artifact's size in bytes")
			}
			store := &cache.Store{Dir: c.CacheDir}
			got, err := store.Fetch(cmd.Context(), args[0], strings.ToLower(digest), size)
			if err != nil {
				return err
			}
			state := "already in the cache"
			if got {
				state = "fetched and verified"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", digest, store.Path(strings.ToLower(digest)), state)
			return nil
		},
	}
	cacheDirFlags(cmd, &c, &config)
	cmd.Flags().StringVar(&digest, "sha256", "", "the artifact's sha256 (required)")
	cmd.Flags().Int64Var(&size, "size", 0, "the artifact's size in bytes (required)")
	_ = cmd.MarkFlagRequired("sha256")
	_ = cmd.MarkFlagRequired("size") // 0 is a valid size: required, not defaulted
	return cmd
}
