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
	"go.yaml.in/yaml/v3"

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
	cmd.AddCommand(newCacheServeCmd(), newCacheFetchCmd(), newCacheLsCmd(), newCacheVerifyCmd(), newCachePruneCmd())
	return cmd
}

// cacheConfig is the daemon's configuration file, as in the product
// (cache_dir in config.yml); flags override it.
type cacheConfig struct {
	CacheDir   string `yaml:"cache_dir"`
	Listen     string `yaml:"listen"`
	ChannelDir string `yaml:"channel_dir"`
	Upstream   string `yaml:"upstream"`
	TokenFile  string `yaml:"token_file"`
	// ChannelRoot makes the daemon fetch by name from its upstream only
	// what the channel, verified from this root, lists.
	ChannelRoot string `yaml:"channel_root"`
}

func (c *cacheConfig) load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("cache config: %v", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err != io.EOF {
		return usagef("cache config %s: %v", path, err)
	}
	return nil
}

func (c *cacheConfig) channelDir() string {
	if c.ChannelDir != "" {
		return c.ChannelDir
	}
	return filepath.Join(c.CacheDir, "channel")
}

func cacheDirFlags(cmd *cobra.Command, c *cacheConfig, config *string) {
	cmd.Flags().StringVar(config, "config", "", "configuration file (YAML: cache_dir, listen, channel_dir, upstream, token_file)")
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
		var file cacheConfig
		if err := file.load(config); err != nil {
			return err
		}
		// What the command line says wins over the file.
		for _, f := range []struct {
			flag     string
			dst      *string
			fromFile string
		}{
			{"dir", &c.CacheDir, file.CacheDir},
			{"listen", &c.Listen, file.Listen},
			{"channel-dir", &c.ChannelDir, file.ChannelDir},
			{"upstream", &c.Upstream, file.Upstream},
			{"token-file", &c.TokenFile, file.TokenFile},
			{"channel-root", &c.ChannelRoot, file.ChannelRoot},
		} {
			if fl := cmd.Flags().Lookup(f.flag); fl != nil && !fl.Changed && f.fromFile != "" {
				*f.dst = f.fromFile
			}
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

func newCacheServeCmd() *cobra.Command {
	var c cacheConfig
	var config string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the cache daemon: serve artifacts by digest and the channel documents",
		Long: "Serve the cache directory over HTTP:\n" + cache.Routes + `With --upstream, a missing artifact is pulled through from the upstream;
without it (the default) the daemon works air-gapped. It prints
"listening on ADDR" once it accepts connections and stops gracefully on
SIGTERM or SIGINT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolveCacheConfig(cmd, &c, config); err != nil {
				return err
			}
			return runCacheServe(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cacheDirFlags(cmd, &c, &config)
	cmd.Flags().StringVar(&c.Listen, "listen", fmt.Sprintf(":%d", cluster.DefaultCachePort), "address to listen on")
	cmd.Flags().StringVar(&c.Upstream, "upstream", "", "channel base URL to pull missing artifacts from (off by default: air-gapped)")
	cmd.Flags().StringVar(&c.TokenFile, "token-file", "", "file holding the bearer token of the prefetch API (without it, prefetch is disabled)")
	cmd.Flags().StringVar(&c.ChannelRoot, "channel-root", "", "the channel's root (as trust.root): prefetch then fetches by name, from --upstream, only what the verified channel lists")
	return cmd
}

func runCacheServe(ctx context.Context, c cacheConfig, stdout, stderr io.Writer) error {
	token := ""
	if c.TokenFile != "" {
		data, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return usagef("reading the token file: %v", err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return usagef("the token file %s is empty", c.TokenFile)
		}
	}
	if err := os.MkdirAll(c.channelDir(), 0o755); err != nil {
		return err
	}
	var root []byte
	if c.ChannelRoot != "" {
		var err error
		if root, err = os.ReadFile(c.ChannelRoot); err != nil {
			return usagef("--channel-root: %v", err)
		}
		if c.Upstream == "" {
			return usagef("--channel-root needs --upstream: the channel the daemon fetches from by name")
		}
	}
	srv, err := cache.NewServer(cache.ServerConfig{
		Root:       root,
		Store:      &cache.Store{Dir: c.CacheDir},
		ChannelDir: c.channelDir(),
		Upstream:   c.Upstream,
		Token:      token,
		Log:        func(format string, args ...any) { fmt.Fprintf(stderr, "sentinel cache: "+format+"\n", args...) },
	})
	if err != nil {
		return usagef("%v", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return srv.Serve(ctx, c.Listen, func(a net.Addr) {
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
