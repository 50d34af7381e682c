package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/runctl"
	"github.com/sentinel-paas/sentinel/selfupdate"
	"github.com/sentinel-paas/sentinel/ui"
)

// runFlags are the flags every run takes (upgrade and patch runs).
type runFlags struct {
	o       lifecycle.Options
	cluster string
	output  string
	ignore  string
	// mirrors, registryAuth, registryCA override the cluster file's.
	mirrors                  []string
	registryAuth, registryCA string
}

// add defines them; the run's own command (upgrade, or a patch verb)
// says which of them a resume keeps.
func (rf *runFlags) add(cmd *cobra.Command, upgrade bool) {
	f := cmd.Flags()
	f.BoolVarP(&rf.o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.StringVar(&rf.o.CacheAddr, "cache-ip", "", "the cache node, IP[:PORT]: nodes fetch from its daemon instead of the upstream")
	f.StringVar(&rf.ignore, "ignore-preflight-errors", "", "preflight checks whose failures are only warnings: NAME,... or all (sentinel preflight --help lists them)")
	f.BoolVar(&rf.o.NoSelfUpdate, "no-self-update", false, "do not look for a newer sentinel build first (a numbered build looks, and updates itself, by default)")
	f.BoolVar(&rf.o.NoCache, "no-cache", false, "take everything from the upstream, not from the cache node the cluster file's cache section names; with --resume, what is left to fetch, though the run began from a cache node")
	f.BoolVar(&rf.o.Detach, "detach", false, "once the run is confirmed (--yes, or on the terminal), go on with it in the background, in a session of its own: print its id and return ('sentinel attach' follows it, 'sentinel stop' stops it)")
	kept := []string{"upgrade", "patch"}
	if upgrade { // a patch run has these on `sentinel patch`, for every verb
		rf.addCommon(f)
		f.BoolVar(&rf.o.Yes, "skip-confirmation", false, "same as --yes")
	}
	_ = f.SetAnnotation("cache-ip", keptOnResume, kept)
}

// addCommon defines the flags of every command that reads the channel.
func (rf *runFlags) addCommon(f *pflag.FlagSet) {
	f.StringVar(&rf.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	f.StringVarP(&rf.output, "output", "o", "text", "output format: text or json (JSON lines)")
	f.BoolVar(&rf.o.AllowExpired, "allow-expired-metadata", false, "accept expired channel metadata: only the expiry checks are skipped (signatures, thresholds, versions, snapshot consistency, lengths and hashes are still checked); each expired document accepted is reported, logged and recorded in the run's journal. For air-gapped windows run from a cache filled earlier (docs/operator.md: Air-gapped windows)")
	f.StringArrayVar(&rf.mirrors, "mirror", nil, "read the channel from this mirror first (oci://HOST[:PORT]/REPO, or http(s)://); repeat it for more, tried in order before the channel, the next when one does not answer (replaces the cluster file's mirrors)")
	f.StringVar(&rf.registryAuth, "registry-auth", "", "the registries' credentials: a Docker config.json (replaces the cluster file's registry_auth)")
	f.StringVar(&rf.registryCA, "registry-ca", "", "the CA (PEM) the registries' certificates are checked against (replaces the cluster file's registry_ca)")
	_ = f.SetAnnotation("allow-expired-metadata", keptOnResume, []string{"upgrade", "patch"})
	_ = f.SetAnnotation("output", keptOnResume, []string{"upgrade"})
}

// do checks the common flags and carries the job out.
func (rf *runFlags) do(cmd *cobra.Command, stopping <-chan struct{}, job *lifecycle.Job) error {
	if err := checkOutput(rf.output); err != nil {
		return err
	}
	ignore, err := parseIgnore(rf.ignore)
	if err != nil {
		return err
	}
	inv, err := rf.inventory()
	if err != nil {
		return err
	}
	o := rf.o
	o.Ignore, o.Command, o.Version = ignore, os.Args, version
	o.UpdatedFrom = os.Getenv(selfupdate.UpdatedFromEnv)
	if o.RunID, err = detachedRunID(); err != nil {
		return err
	}
	if o.Detach && (o.DryRun || job.DownloadOnly) {
		return usagef("--detach goes with a run that changes the cluster: not with --dry-run or --download-only")
	}
	surviveTerminal()
	env := runEnv(cmd, rf.output, stopping)
	rec := newRecorder(inv, env.Printer.(*ui.Printer), o.RunID != "")
	env.Recorder, env.Started = recorder{rec}, runctl.SignalReady
	env.Background = func(id string) error { return detachRun(env.Printer.(*ui.Printer), inv, id) }
	err = lifecycle.Do(cmd.Context(), inv, env, o, job)
	if rec.Began() {
		rec.End(cmd.Context(), exitCode(err), err)
	}
	return err
}

// runEnv is what a run works with: the printer for this command's output,
// the nodes' transports, and Ctrl-C.
func runEnv(cmd *cobra.Command, output string, stopping <-chan struct{}) lifecycle.Env {
	return lifecycle.Env{
		Printer:    ui.New(output, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()),
		Dial:       dialAll,
		Stopping:   stopping,
		Journaling: journaling.Store,
	}
}

// maxDrainTimeout bounds --drain-timeout: a longer drain is a typo, and a
// maintenance window does not wait a day for one DEA.
const maxDrainTimeout = 24 * time.Hour

// checkDuration refuses a duration flag that is not positive or longer
// than max, before anything is read or written.
func checkDuration(flag string, d, max time.Duration) error {
	switch {
	case d <= 0:
		return usagef("--%s must be positive, not %s", flag, d)
	case d > max:
		return usagef("--%s %s is longer than %s, which sentinel takes for a mistake", flag, d, max)
	}
	return nil
}

func checkOutput(output string) error {
	if output != ui.Text && output != ui.JSON {
		return usagef("--output must be text or json, not %q", output)
	}
	return nil
}

func parseIgnore(list string) (preflight.IgnoreSet, error) {
	ignore, err := preflight.ParseIgnore(list, preflight.Names())
	if err != nil {
		return nil, usagef("%v", err)
	}
	return ignore, nil
}

// loadInventory reads the cluster file: --cluster, then
// $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml as on a core node.
func loadInventory(flag string) (*cluster.Inventory, error) {
	path := flag
	if path == "" {
		path = os.Getenv("SENTINEL_CLUSTER")
	}
	if path == "" {
		path = "/s/etc/sentinel/cluster.yaml"
	}
	return cluster.LoadInventory(path)
}

// dialAll opens a transport to every node. The local transport runs this
// very binary as the node agent, so tests exercise the production path.
func dialAll(inv *cluster.Inventory) (map[string]cluster.Transport, error) {
	binary := os.Getenv("SENTINEL_AGENT_BINARY")
	out := map[string]cluster.Transport{}
	for _, n := range inv.Nodes {
		t, err := cluster.Dial(n, binary)
		if err != nil {
			return nil, err
		}
		out[n.Name] = t
	}
	return out, nil
}

// inventory checks the output flag and reads the cluster file; the cache
// node the cluster file names is the default of --cache-ip.
func (rf *runFlags) inventory() (*cluster.Inventory, error) {
	if err := checkOutput(rf.output); err != nil {
		return nil, err
	}
	inv, err := loadInventory(rf.cluster)
	if err != nil {
		return nil, err
	}
	if rf.o.NoCache && rf.o.CacheAddr != "" {
		return nil, usagef("--no-cache and --cache-ip contradict each other")
	}
	if len(rf.mirrors) > 0 {
		if err := cluster.CheckChannelURLs(inv.Channel, rf.mirrors); err != nil {
			return nil, usagef("--mirror: %v", err)
		}
		inv.Mirrors = rf.mirrors
	}
	if rf.registryAuth != "" {
		inv.RegistryAuth = absPath(rf.registryAuth)
	}
	if rf.registryCA != "" {
		inv.RegistryCA = absPath(rf.registryCA)
	}
	// A resumed run keeps the source it was planned with unless told.
	if rf.o.CacheAddr == "" && !rf.o.NoCache && !rf.o.Resume {
		rf.o.CacheAddr = inv.CacheAddress()
	}
	return inv, nil
}

// options are the run options of a command that is not a run.
func (rf *runFlags) options() lifecycle.Options {
	o := rf.o
	o.Command, o.Version = os.Args, version
	return o
}

// absPath is a path given on the command line, made absolute against the
// working directory (the cluster file's paths are against its directory).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
