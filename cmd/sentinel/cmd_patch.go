package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

type patchOptions struct {
	cluster      string
	output       string
	all          bool
	nodes        []string
	local        bool
	noRestart    bool
	yes          bool
	dryRun       bool
	resume       bool
	cacheIP      string
	ignore       string
	drainTimeout time.Duration
	installed    bool
	notInstalled bool
	downloadOnly bool
	allowExpired bool
	noSelfUpdate bool

	stdin          io.Reader
	stdout, stderr io.Writer
	stopping       <-chan struct{}
}

func newPatchCmd(stopping <-chan struct{}) *cobra.Command {
	o := &patchOptions{stopping: stopping}
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
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	pf.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	pf.BoolVar(&o.allowExpired, "allow-expired-metadata", false, "accept expired channel metadata (signatures and versions are still checked); each document accepted so is reported and logged. For air-gapped sites that knowingly run on older metadata")
	run := func(f func(context.Context, *patchOptions, []string) error) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			o.stdin, o.stdout, o.stderr = c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr()
			if o.output != "text" && o.output != "json" {
				return usagef("--output must be text or json, not %q", o.output)
			}
			return f(c.Context(), o, args)
		}
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "List the patches some node still needs (all of them with --all), with their nodes",
		Long: `For the core node's release, list each patch some node still needs: its id,
description, the roles it affects, the nodes it is installed on and the
nodes it is still to be installed on (nodes of those roles that lack it).
With --all, patches installed everywhere too. A node whose node.json and
files disagree about a patch is reported, with what to run.

--output json prints one document; its shape is in the README (Patches).`,
		Args: cobra.NoArgs,
		RunE: run(runPatchStatus),
	}
	status.Flags().BoolVar(&o.all, "all", false, "list every patch of the release, installed ones too")
	status.Flags().StringVar(&o.cacheIP, "cache-ip", "", "read the patch catalog from the cache node's daemon (IP[:PORT]) instead of the upstream")

	addRunFlags := func(c *cobra.Command, restart bool) {
		f := c.Flags()
		f.StringSliceVar(&o.nodes, "node", nil, "only these nodes (NAME[,NAME...])")
		f.BoolVar(&o.local, "local", false, "only the node this command runs on ($SENTINEL_NODE, else the node named as this host, else the one with this machine's address)")
		if restart {
			f.BoolVar(&o.noRestart, "no-restart", false, "switch the patched files in but restart nothing: the running processes keep the old version until they are restarted")
		}
		f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
		f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and change nothing")
		f.StringVar(&o.cacheIP, "cache-ip", "", "the cache node, IP[:PORT]: nodes fetch artifacts from its daemon instead of the upstream")
		f.StringVar(&o.ignore, "ignore-preflight-errors", "", "preflight checks whose failures are only warnings: NAME,... or all")
		f.DurationVar(&o.drainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
		f.BoolVar(&o.noSelfUpdate, "no-self-update", false, "do not look for a newer sentinel build first (a numbered build looks, and updates itself, by default)")
	}
	install := &cobra.Command{
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
		RunE: run(func(ctx context.Context, o *patchOptions, args []string) error {
			return runPatchRun(ctx, o, patches.KindInstall, args, false)
		}),
	}
	addRunFlags(install, true)
	install.Flags().BoolVar(&o.resume, "resume", false, "finish the unfinished patch run instead of starting a new one")
	install.Flags().BoolVar(&o.downloadOnly, "download-only", false, "only fill the cache node (--cache-ip) with the patches' artifacts and documents; change no node")

	reinstall := &cobra.Command{
		Use:   "reinstall NAME",
		Short: "Install a patch again, also where node.json records it (files damaged or replaced by hand)",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, o *patchOptions, args []string) error {
			return runPatchRun(ctx, o, patches.KindInstall, args, true)
		}),
	}
	addRunFlags(reinstall, true)

	revert := &cobra.Command{
		Use:   "revert [NAME...]",
		Short: "Return the components of the named patches (all installed ones without NAME) to the release's versions",
		Long: `Revert the named patches (every installed patch without NAME) on every node
that has them, or only on --node NAME or the --local node: each component
goes back to the version it had without the patch (the release's own, or
the level of another patch the node keeps), stopped, switched, started and
checked like an install; then node.json forgets the patch. Journaled and
resumable: 'sentinel patch revert --resume'.`,
		RunE: run(func(ctx context.Context, o *patchOptions, args []string) error {
			return runPatchRun(ctx, o, patches.KindRevert, args, false)
		}),
	}
	addRunFlags(revert, true)
	revert.Flags().BoolVar(&o.resume, "resume", false, "finish the unfinished patch run instead of starting a new one")

	mark := &cobra.Command{
		Use:   "mark --installed|--not-installed NAME",
		Short: "Record in node.json that a patch is (or is not) installed, changing no file: for nodes fixed by hand",
		Long: `Change only what node.json says: add the patch to the record of every node of
its roles (or --node NAME, or the --local node) with --installed, or remove
it with --not-installed. No component is touched and nothing restarts.
'sentinel patch status' then reports nodes whose files disagree.`,
		Args: cobra.ExactArgs(1),
		RunE: run(runPatchMark),
	}
	mark.Flags().BoolVar(&o.installed, "installed", false, "record the patch as installed")
	mark.Flags().BoolVar(&o.notInstalled, "not-installed", false, "record the patch as not installed")
	mark.Flags().BoolVar(&o.notInstalled, "notinstalled", false, "same as --not-installed (the product's spelling)")
	mark.Flags().StringSliceVar(&o.nodes, "node", nil, "only these nodes (NAME[,NAME...])")
	mark.Flags().BoolVar(&o.local, "local", false, "only the node this command runs on")

	cmd.AddCommand(status, install, reinstall, revert, mark)
	return cmd
}

// patchContext is what every patch subcommand reads first.
type patchContext struct {
	inv        *cluster.Inventory
	log        *zap.Logger
	closeLog   func()
	transports map[string]cluster.Transport
	channel    *release.Channel
	channelURL string
	cacheURL   string
	facts      map[string]*steps.Facts
	release    string
	catalog    *release.Catalog
	manifest   *release.Manifest
	trust      *metadataTrust
}

func openPatchContext(ctx context.Context, o *patchOptions) (*patchContext, error) {
	inv, err := loadInventory(o.cluster)
	if err != nil {
		return nil, err
	}
	pc := &patchContext{inv: inv, channelURL: inv.Channel}
	if o.cacheIP != "" {
		if pc.cacheURL, err = parseCacheAddr(o.cacheIP, inv.CachePort()); err != nil {
			return nil, err
		}
		pc.channelURL = pc.cacheURL + "/channel/index.json"
	}
	pc.log, pc.closeLog, err = openLog(filepath.Join(inv.Core().Root, "logs"))
	if err != nil {
		return nil, fmt.Errorf("opening the log in %s: %w", filepath.Join(inv.Core().Root, "logs"), err)
	}
	pc.log.Info("Running with command: " + commandLine(os.Args))
	// status and --dry-run change nothing, not even the trusted versions.
	pc.trust = &metadataTrust{allowExpired: o.allowExpired, readOnly: o.dryRun || o.resume, log: pc.log, stderr: o.stderr}
	if pc.transports, err = dialAll(inv); err != nil {
		pc.closeLog()
		return nil, err
	}
	return pc, nil
}

// read gathers the nodes' facts and the catalog of the core's release.
func (pc *patchContext) read(ctx context.Context) error {
	var opts []release.ChannelOption
	if pc.cacheURL != "" {
		opts = append(opts, release.WithoutProxy())
	}
	trustOpts, err := pc.trust.channelOptions(pc.inv)
	if err != nil {
		return err
	}
	ch, err := release.OpenChannel(ctx, pc.channelURL, append(opts, trustOpts...)...)
	if err != nil {
		return pc.explainCacheMiss(err)
	}
	pc.channel = ch
	if pc.facts, err = rollout.Gather(ctx, pc.inv.Nodes, pc.transports); err != nil {
		return fmt.Errorf("reading node facts: %w", err)
	}
	if err := pc.explainCacheMiss(pc.readCatalog(ctx)); err != nil {
		return err
	}
	return pc.trust.accept(ch)
}

// explainCacheMiss turns "404 from the cache daemon" into what to do.
func (pc *patchContext) explainCacheMiss(err error) error {
	var fe *release.FetchError
	if pc.cacheURL != "" && errors.As(err, &fe) && fe.Status == http.StatusNotFound {
		return usagef("the cache node %s does not hold the patches of the cluster's release: fill it first with `sentinel patch install --download-only --cache-ip HOST` (%v)", pc.cacheURL, err)
	}
	return err
}

func (pc *patchContext) readCatalog(ctx context.Context) error {
	var err error
	core := pc.inv.Core()
	cf := pc.facts[core.Name]
	if cf == nil || cf.Record == nil {
		return &rollout.UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", core.Name, recordProblem(cf))}
	}
	pc.release = cf.Record.Release
	if pc.catalog, err = pc.channel.Patches(ctx, pc.release); err != nil {
		return err
	}
	if pc.manifest, err = pc.channel.Manifest(ctx, pc.release); err != nil {
		return err
	}
	return nil
}

func recordProblem(f *steps.Facts) string {
	if f == nil {
		return "no facts"
	}
	return f.RecordError
}

// selectNodes turns --node and --local into node names.
func selectNodes(o *patchOptions, inv *cluster.Inventory) ([]string, error) {
	if o.local && len(o.nodes) > 0 {
		return nil, usagef("--local and --node contradict each other")
	}
	if !o.local {
		return o.nodes, nil
	}
	n, err := localNode(inv)
	if err != nil {
		return nil, err
	}
	return []string{n}, nil
}

// localNode is the node this command runs on: $SENTINEL_NODE, else the node
// named as this host, else the only node whose address is this machine's.
func localNode(inv *cluster.Inventory) (string, error) {
	if name := os.Getenv("SENTINEL_NODE"); name != "" {
		if _, ok := inv.Node(name); !ok {
			return "", usagef("--local: $SENTINEL_NODE is %q, which the cluster file %s does not list", name, inv.Path())
		}
		return name, nil
	}
	if host, err := os.Hostname(); err == nil {
		if _, ok := inv.Node(host); ok {
			return host, nil
		}
	}
	addrs, _ := net.InterfaceAddrs()
	var found []string
	for _, n := range inv.Nodes {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == n.Address {
				found = append(found, n.Name)
			}
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return "", usagef("--local: cannot tell which node this is (no $SENTINEL_NODE, no node named as this host, and %d nodes with this machine's addresses): set SENTINEL_NODE=NAME or use --node NAME", len(found))
}

func runPatchStatus(ctx context.Context, o *patchOptions, _ []string) error {
	pc, err := openPatchContext(ctx, o)
	if err != nil {
		return err
	}
	defer pc.closeLog()
	pc.trust.readOnly = true // status changes nothing, not even the trusted versions
	if err := pc.read(ctx); err != nil {
		return err
	}
	st := patches.ComputeStatus(pc.catalog, pc.manifest, pc.inv, pc.facts)
	if o.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printPatchStatus(o.stdout, st, o.all)
	return nil
}

// printPatchStatus writes the status as the product's `kato patch status` did.
func printPatchStatus(w io.Writer, st *patches.Status, all bool) {
	n := st.Available()
	switch n {
	case 0:
		fmt.Fprintf(w, "No updates are available for %s.\n", st.Release)
	case 1:
		fmt.Fprintf(w, "1 update is available for %s.\n", st.Release)
	default:
		fmt.Fprintf(w, "%d updates are available for %s.\n", n, st.Release)
	}
	for _, p := range st.Patches {
		if !all && !p.Pending() && len(p.Problems) == 0 {
			continue
		}
		fmt.Fprintf(w, "    %s: %s\n", p.Name, p.Description)
		fmt.Fprintf(w, "        patch id:           %d\n", p.ID)
		fmt.Fprintf(w, "        severity:           %s\n", p.Severity)
		fmt.Fprintf(w, "        roles affected:     %s\n", strings.Join(p.Roles, ", "))
		fmt.Fprintf(w, "        installed on:       %s\n", orNoneList(p.InstalledOn))
		fmt.Fprintf(w, "        to be installed on: %s\n", orNoneList(p.ToBeInstalledOn))
		for _, pr := range p.Problems {
			fmt.Fprintf(w, "        WARNING on %s: %s\n", pr.Node, pr.Problem)
		}
	}
	for _, nr := range st.OtherRelease {
		fmt.Fprintf(w, "Node %s is on release %s, not %s: these patches do not apply to it.\n", nr.Node, nr.Release, st.Release)
	}
}

func orNoneList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func patchVerb(kind string) string {
	if kind == patches.KindRevert {
		return "revert"
	}
	return "install"
}

// runPatchRun installs (or reinstalls, or reverts) patches as a journaled run.
func runPatchRun(ctx context.Context, o *patchOptions, kind string, names []string, reinstall bool) error {
	verb := patchVerb(kind)
	if o.resume && (len(names) > 0 || len(o.nodes) > 0 || o.local || o.noRestart || o.dryRun) {
		return usagef("--resume finishes the unfinished patch run as it was planned: it takes no NAME, --node, --local, --no-restart or --dry-run (only --cache-ip, to change where the artifacts left to fetch come from)")
	}
	for _, n := range names {
		if n == "" {
			return usagef("empty patch name")
		}
	}
	ignore, err := parseIgnore(o.ignore)
	if err != nil {
		return err
	}
	pc, err := openPatchContext(ctx, o)
	if err != nil {
		return err
	}
	defer pc.closeLog()
	log := pc.log
	only, err := selectNodes(o, pc.inv)
	if err != nil {
		return err
	}
	uo := upgradeOptions{output: o.output, stdin: o.stdin, stdout: o.stdout, stderr: o.stderr, stopping: o.stopping,
		resume: o.resume, dryRun: o.dryRun, downloadOnly: o.downloadOnly, allowExpired: o.allowExpired, noSelfUpdate: o.noSelfUpdate}
	// Like an upgrade, a patch run first takes a newer signed sentinel
	// build, if the channel offers one, and goes on in it.
	if _, err := uo.selfUpdateFirst(ctx, pc.inv, "", pc.cacheURL, commandLine(os.Args), log); err != nil {
		return err
	}
	progress, closeProgress := newProgress(uo)
	defer closeProgress()
	progress = &loggedProgress{next: progress, log: log}
	if o.downloadOnly {
		if pc.cacheURL == "" || o.resume {
			return usagef("--download-only needs --cache-ip (and no --resume): it fills the cache node, from which a later `sentinel patch install --cache-ip IP` runs")
		}
		return runPatchDownloadOnly(ctx, o, pc, names, progress, closeProgress)
	}
	exec := &rollout.Executor{Transports: pc.transports, Progress: progress, Stopping: o.stopping,
		DEAs: pc.inv.NodesWithRole(release.RoleDEA)}

	var runs rollout.Runs
	var lock *resume.Lock
	var last *rollout.Run
	if !o.dryRun {
		runs = rollout.Runs{Dir: pc.inv.State()}
		if lock, err = runs.Lock(commandLine(os.Args)); err != nil {
			return err
		}
		defer lock.Release()
		if last, _, err = runs.Latest(); err != nil {
			return fmt.Errorf("reading the last run in %s: %w", pc.inv.State(), err)
		}
	}
	if o.resume {
		return resumePatchRun(ctx, o, pc, runs, last, exec, closeProgress)
	}
	if last != nil && !last.Finished() {
		how := "sentinel upgrade --resume"
		if patches.IsPatchRun(last.Plan) {
			how = "sentinel patch " + patchVerb(last.Plan.Kind) + " --resume"
		}
		return usagef("run %s (%s) did not finish: it stopped at %s. Finish it first with `%s`", last.ID, strings.Join(last.Command, " "), last.Where(), how)
	}
	if err := pc.read(ctx); err != nil {
		return err
	}
	if len(pc.catalog.Patches) == 0 {
		fmt.Fprintf(o.stdout, "Release %s has no patches: nothing to %s.\n", pc.release, verb)
		return nil
	}
	id := rollout.NewID(time.Now())
	in := patches.PlanInput{Inventory: pc.inv, Facts: pc.facts, Catalog: pc.catalog, Manifest: pc.manifest, Names: names, Only: only,
		NoRestart: o.noRestart, Reinstall: reinstall, RunID: id, CacheURL: pc.cacheURL, DrainDeadline: o.drainTimeout}
	var plan *rollout.Plan
	if kind == patches.KindRevert {
		plan, err = patches.MakeRevertPlan(in)
	} else {
		plan, err = patches.MakeInstallPlan(in)
	}
	if err != nil {
		return err
	}
	if o.dryRun {
		return printPatchPlan(o.stdout, o.output, plan)
	}
	if plan.NothingToDo() {
		if o.output == "json" {
			return newJSONProgress(o.stdout).emitResult("patch-"+verb, map[string]any{"nothing_to_do": true, "plan": plan})
		}
		printNothingToDo(o.stdout, plan, verb)
		return nil
	}
	if err := runPreflight(ctx, uo, rollout.PreflightInput{Inventory: pc.inv, Transports: pc.transports, Plan: plan, ChannelURL: pc.channelURL,
		LockHeldByUs: true, Runs: runs, Ignore: ignore}, log); err != nil {
		return err
	}
	if err := prefetchPatches(ctx, pc, plan, progress); err != nil {
		return err
	}
	if !o.yes {
		if err := confirmPatch(o, plan, verb); err != nil {
			return err
		}
	}
	j, run, err := runs.Start(id, os.Args, version, plan)
	if err != nil {
		return err
	}
	defer j.Close()
	exec.Journal = j
	exec.Source = plan.DefaultSource()
	log.Info("patch run started", zap.String("run", id), zap.String("kind", kind), zap.Strings("patches", plan.Patches))
	if o.output == "text" {
		fmt.Fprintf(o.stdout, "Run %s: %s %s on %s (release %s)\n", id, map[string]string{"install": "installing", "revert": "reverting"}[verb],
			strings.Join(plan.Patches, ", "), strings.Join(workingNodes(plan), ", "), plan.To)
	}
	return finishPatchRun(o, log, plan, execute(ctx, exec, run), closeProgress)
}

// resumePatchRun continues the unfinished patch run from its journal.
func resumePatchRun(ctx context.Context, o *patchOptions, pc *patchContext, runs rollout.Runs, last *rollout.Run, exec *rollout.Executor, closeProgress func()) error {
	switch {
	case last == nil:
		return usagef("there is no run to resume in %s", pc.inv.State())
	case !patches.IsPatchRun(last.Plan):
		if last.Finished() {
			return usagef("the last run, %s, was an upgrade and it ended: there is no patch run to resume", last.ID)
		}
		return usagef("the unfinished run %s is an upgrade, not a patch run: resume it with `sentinel upgrade --resume`", last.ID)
	case last.Status == "succeeded":
		fmt.Fprintf(o.stdout, "Run %s already finished: %s done. Nothing to resume.\n", last.ID, strings.Join(last.Plan.Patches, ", "))
		return nil
	case last.Finished():
		return usagef("run %s ended and cannot be resumed: %s", last.ID, last.Error)
	}
	j, run, err := reopenRun(runs, pc.inv, o.stderr, pc.log)
	if err != nil {
		return err
	}
	defer j.Close()
	exec.Source = run.Plan.DefaultSource()
	if pc.cacheURL != "" {
		exec.Source = rollout.Source{CacheURL: pc.cacheURL}
	}
	exec.Journal = j
	fmt.Fprintf(o.stderr, "sentinel: resuming run %s (patch %s of %s) at %s\n", run.ID, patchVerb(run.Plan.Kind), strings.Join(run.Plan.Patches, ", "), run.Where())
	pc.log.Info("resuming patch run", zap.String("run", run.ID), zap.String("at", run.Where()))
	uo := upgradeOptions{stderr: o.stderr}
	if err := noteBinary(uo, pc.log, j, run); err != nil {
		return err
	}
	if err := recheckNodes(ctx, uo, pc.log, exec, run); err != nil {
		return err
	}
	return finishPatchRun(o, pc.log, run.Plan, execute(ctx, exec, run), closeProgress)
}

// prefetchPatches puts every artifact of the plan in the node caches of
// the nodes that need it, verified, before any change: a patch whose
// artifact is missing or does not match its sha256 is refused with nothing
// installed. The run's fetch steps then find them in place.
func prefetchPatches(ctx context.Context, pc *patchContext, plan *rollout.Plan, progress rollout.Progress) error {
	src := plan.DefaultSource()
	var mu sync.Mutex
	var problems []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, np := range plan.Nodes {
		if np.Skip != "" {
			continue
		}
		g.Go(func() error {
			for _, s := range np.Steps {
				if s.Op != steps.OpFetch {
					continue
				}
				var res steps.Result
				err := pc.transports[np.Node].Call(gctx, steps.OpFetch, src.Apply(s.Request), &res, nil)
				if err != nil {
					mu.Lock()
					problems = append(problems, &patchArtifactError{Node: np.Node, Field: patches.ArtifactField(pc.catalog, s.Request.Artifact.SHA256), Err: err})
					mu.Unlock()
					return nil // this node's other artifacts wait: one error per node is enough
				}
				progress.Logf(np.Node, "%s %s: %s", s.Component, s.Version, res.Note)
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(problems) > 0 {
		sort.Slice(problems, func(i, j int) bool { return problems[i].Error() < problems[j].Error() })
		return errors.Join(problems...)
	}
	return ctx.Err()
}

// patchArtifactError: a patch's artifact could not be fetched or verified
// on a node, before anything changed.
type patchArtifactError struct {
	Node, Field string
	Err         error
}

func (e *patchArtifactError) Error() string {
	msg := e.Err.Error()
	var ae *cluster.AgentError
	if errors.As(e.Err, &ae) {
		msg = ae.Message
	}
	return fmt.Sprintf("node %s: %s: %s; nothing was installed (fix the channel's patch catalog or artifact, then run again)", e.Node, e.Field, msg)
}
func (e *patchArtifactError) Unwrap() error { return e.Err }

func workingNodes(plan *rollout.Plan) []string {
	var out []string
	for _, np := range plan.Nodes {
		if np.Skip == "" {
			out = append(out, np.Node)
		}
	}
	return out
}

func printNothingToDo(w io.Writer, plan *rollout.Plan, verb string) {
	var already []string
	for _, np := range plan.Nodes {
		if strings.HasPrefix(np.Skip, "already installed") {
			already = append(already, np.Node)
		}
	}
	if verb == "install" && len(already) > 0 {
		fmt.Fprintf(w, "%s already installed on every node it concerns (%s): nothing to install.\n", strings.Join(plan.Patches, ", "), strings.Join(already, ", "))
	} else {
		fmt.Fprintf(w, "Nothing to %s.\n", verb)
	}
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "  %s: %s\n", np.Node, np.Skip)
	}
}

func confirmPatch(o *patchOptions, plan *rollout.Plan, verb string) error {
	f, ok := o.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return usagef("no terminal to ask for confirmation: pass --yes to %s %s on %s", verb, strings.Join(plan.Patches, ", "), strings.Join(workingNodes(plan), ", "))
	}
	if err := printPatchPlan(o.stdout, "text", plan); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "%s these patches? [y/N] ", strings.ToUpper(verb[:1])+verb[1:])
	line, _ := bufio.NewReader(o.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return usagef("not confirmed: nothing changed")
	}
	return nil
}

// printPatchPlan shows, per node, what each patch changes.
func printPatchPlan(w io.Writer, format string, plan *rollout.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	fmt.Fprintf(w, "Plan: patch %s of %s (artifacts from %s)\n", patchVerb(plan.Kind), strings.Join(plan.Patches, ", "), plan.Source)
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "\nnode %s [%s] on %s\n", np.Node, strings.Join(np.Roles, ","), np.From)
		if np.Skip != "" {
			fmt.Fprintf(w, "  nothing to do: %s\n", np.Skip)
			continue
		}
		type comp struct {
			key, from, to string
			ops           []string
		}
		var comps []*comp
		byKey := map[string]*comp{}
		for _, s := range np.Steps {
			switch {
			case s.Op == steps.OpFetch:
			case s.Component != "":
				key := s.Release + ": " + s.Component
				c := byKey[key]
				if c == nil {
					c = &comp{key: key, from: s.From, to: s.Version}
					byKey[key] = c
					comps = append(comps, c)
				}
				c.ops = append(c.ops, s.Op)
			case s.Op == steps.OpRetire, s.Op == steps.OpUnretire:
				fmt.Fprintf(w, "  %s\n", describe(s))
			}
		}
		for _, c := range comps {
			fmt.Fprintf(w, "  %-40s %-10s -> %-10s %s\n", c.key, orNone(c.from), c.to, strings.Join(c.ops, ", "))
		}
	}
	return nil
}

func finishPatchRun(o *patchOptions, log *zap.Logger, plan *rollout.Plan, err error, closeProgress func()) error {
	closeProgress()
	verb := patchVerb(plan.Kind)
	if err != nil {
		log.Error("patch run ended", zap.Error(err))
		var fe *rollout.StepFailedError
		if errors.As(err, &fe) && fe.Output != "" && o.output == "text" {
			fmt.Fprintf(o.stderr, "output of the failed hook (last lines):\n%s\n", indent(fe.Output))
		}
		return &patchRunError{err: err, verb: verb}
	}
	log.Info("patch run succeeded", zap.Strings("patches", plan.Patches))
	if o.output == "text" {
		done := map[string]string{"install": "Installed", "revert": "Reverted"}[verb]
		fmt.Fprintf(o.stdout, "%s %s on %s. `sentinel patch status` shows every patch.\n", done, strings.Join(plan.Patches, ", "), strings.Join(workingNodes(plan), ", "))
		if restartsNothing(plan) {
			fmt.Fprintln(o.stdout, "Nothing was restarted (--no-restart): the running processes keep the old version until they are restarted.")
		}
	}
	return nil
}

func restartsNothing(plan *rollout.Plan) bool {
	for _, np := range plan.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpStart {
				return false
			}
		}
	}
	return true
}

// patchRunError tells what to run next in patch terms; the executor's own
// errors speak of upgrades.
type patchRunError struct {
	err  error
	verb string
}

func (e *patchRunError) Error() string {
	return strings.NewReplacer(
		"`sentinel upgrade --resume`", "`sentinel patch "+e.verb+" --resume`",
		"then run `sentinel upgrade` again", "then run `sentinel patch "+e.verb+"` again",
		"node.json unchanged", "the patch is not recorded on that node",
	).Replace(e.err.Error())
}
func (e *patchRunError) Unwrap() error { return e.err }

// runPatchMark changes what node.json says about a patch, and nothing else.
func runPatchMark(ctx context.Context, o *patchOptions, args []string) error {
	if o.installed == o.notInstalled {
		return usagef("say what to record: --installed or --not-installed")
	}
	name := args[0]
	pc, err := openPatchContext(ctx, o)
	if err != nil {
		return err
	}
	defer pc.closeLog()
	only, err := selectNodes(o, pc.inv)
	if err != nil {
		return err
	}
	for _, n := range only {
		if _, ok := pc.inv.Node(n); !ok {
			return usagef("--node %s: the cluster file has no such node", n)
		}
	}
	runs := rollout.Runs{Dir: pc.inv.State()}
	lock, err := runs.Lock(commandLine(os.Args))
	if err != nil {
		return err
	}
	defer lock.Release()
	if last, _, err := runs.Latest(); err != nil {
		return err
	} else if last != nil && !last.Finished() {
		return usagef("run %s did not finish (it stopped at %s): finish it before changing records by hand", last.ID, last.Where())
	}
	if err := pc.read(ctx); err != nil {
		return err
	}
	p, ok := pc.catalog.Patch(name)
	if !ok {
		return usagef("release %s has no patch %q", pc.release, name)
	}
	var targets []cluster.Node
	for _, n := range pc.inv.Nodes {
		f := pc.facts[n.Name]
		switch {
		case len(only) > 0 && !slices.Contains(only, n.Name):
		case !p.AppliesTo(n.Roles):
			if len(only) > 0 {
				return usagef("patch %s affects roles %s; node %s has %s", name, strings.Join(p.Roles, ", "), n.Name, strings.Join(n.Roles, ", "))
			}
		case f == nil || f.Record == nil || f.Record.Release != pc.release:
			if len(only) > 0 {
				return usagef("node %s is not on release %s: patch %s does not apply to it", n.Name, pc.release, name)
			}
		default:
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		return usagef("no node of roles %s to mark", strings.Join(p.Roles, ", "))
	}
	type marked struct {
		Node    string `json:"node"`
		Changed bool   `json:"changed"`
		Note    string `json:"note"`
	}
	var out []marked
	for _, n := range targets {
		var res steps.Result
		req := steps.Request{Patch: name, PatchInstalled: o.installed, Release: pc.release}
		if err := pc.transports[n.Name].Call(ctx, steps.OpRecordPatch, req, &res, nil); err != nil {
			return fmt.Errorf("node %s: recording patch %s: %w (nodes before it in this list are already marked: %v)", n.Name, name, err, out)
		}
		pc.log.Info("patch marked", zap.String("node", n.Name), zap.String("patch", name), zap.Bool("installed", o.installed), zap.String("note", res.Note))
		out = append(out, marked{Node: n.Name, Changed: res.Changed, Note: res.Note})
	}
	if o.output == "json" {
		return json.NewEncoder(o.stdout).Encode(map[string]any{"patch": name, "installed": o.installed, "nodes": out})
	}
	for _, m := range out {
		fmt.Fprintf(o.stdout, "[%s] %s\n", m.Node, m.Note)
	}
	return nil
}
