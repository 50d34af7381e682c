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
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

type upgradeOptions struct {
	cluster      string
	force        bool
	resume       bool
	dryRun       bool
	yes          bool
	output       string
	downloadOnly bool
	cacheIP      string
	skipDownload bool
	noCache      bool
	ignore       string
	skipDrain    bool
	nodeRetries  int
	drainTimeout time.Duration
	roleOrder    []string
	only         []string
	maxInFlight  int
	allowExpired bool
	updateSelf   bool // see selfupdate.go
	noSelfUpdate bool

	stdin          io.Reader
	stdout, stderr io.Writer
	stopping       <-chan struct{}
	closeProgress  func()
}

func newUpgradeCmd(stopping <-chan struct{}) *cobra.Command {
	o := upgradeOptions{stopping: stopping}
	cmd := &cobra.Command{
		Use:   "upgrade [VERSION]",
		Short: "Upgrade every node of the cluster to a release (the latest when VERSION is omitted)",
		Long: `Upgrade every node of the cluster to VERSION, or to the newest release the
channel offers.

Each node goes through: version check, download and sha256 verification of
every artifact into the node cache, backup of <root>/etc, then for each
component in manifest order: install (unpack), stop, migrate, switch, start,
health; then node.json records the release and the node's components are
restarted. Nodes go in role order (dea, controller, router, base, primary),
the core node last.

Every step is written to a journal first. If the run is interrupted (Ctrl-C,
a crash, a lost node), 'sentinel upgrade --resume' finishes it. If a
component fails to migrate, start or become healthy, the components this run
replaced on that node go back to their previous release and the run stops
with exit code 1; 'sentinel status' shows the failed step and the hook's
output.`,
		Example: `  sentinel upgrade --dry-run                                # show the plan, change nothing
  sentinel upgrade 3.4.2 --yes                              # upgrade without asking
  sentinel upgrade --resume                                 # finish an interrupted run
  sentinel upgrade 3.4.2 --download-only --cache-ip 10.0.0.1  # fill the cache node now...
  sentinel upgrade 3.4.2 --cache-ip 10.0.0.1 --yes            # ...upgrade from it later, even offline`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.stdin, o.stdout, o.stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			if !cmd.Flags().Changed("max-in-flight") {
				o.maxInFlight = 0 // as planned (a resumed run keeps its own)
			} else if o.maxInFlight < 1 {
				return usagef("--max-in-flight must be 1 or more, not %d", o.maxInFlight)
			}
			return runUpgrade(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "", "cluster file (default $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml)")
	f.BoolVar(&o.force, "force", false, "reinstall the target release on nodes already on it")
	f.BoolVar(&o.resume, "resume", false, "finish the unfinished run instead of starting a new one")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan (nodes, components, versions, steps) and change nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.yes, "skip-confirmation", false, "same as --yes")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (JSON lines)")
	f.BoolVar(&o.downloadOnly, "download-only", false, "only fill the cache node (--cache-ip) with every artifact and document the upgrade needs; change no node")
	f.StringVar(&o.cacheIP, "cache-ip", "", "the cache node, IP[:PORT]: nodes fetch from its daemon instead of the upstream")
	f.BoolVar(&o.skipDownload, "skip-download", false, "download nothing: use only what the node caches hold, and refuse before any change if something is missing or damaged")
	f.StringVar(&o.ignore, "ignore-preflight-errors", "", "preflight checks whose failures are only warnings: NAME,... or all (sentinel preflight --help lists them)")
	f.BoolVar(&o.skipDrain, "skip-drain", false, "do not wait for DEAs to move their apps away before upgrading them (their apps stop meanwhile); also with --resume")
	f.IntVar(&o.nodeRetries, "node-retries", 4, "how many times a step is tried again, waiting 1s, 2s, 4s..., when its node cannot be reached, before the run stops (resumable)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", steps.DefaultDrainDeadline, "how long a DEA may take to move its apps away before the run stops (resumable)")
	f.StringSliceVar(&o.roleOrder, "role-order", nil, "order of roles, e.g. router,dea,controller (default dea,controller,router,base,primary); the core node is always last")
	f.StringSliceVar(&o.only, "node", nil, "upgrade only these nodes (NAME[,NAME...]); the others are left as they are")
	f.IntVar(&o.maxInFlight, "max-in-flight", 1, "how many nodes may be upgraded at once; nodes that share a role two or more nodes have never go together (so such a role always has a node up, and DEAs go one at a time), and the core node goes last, alone. Also with --resume")
	f.BoolVar(&o.noCache, "no-cache", false, "with --resume: fetch what is left from the upstream, though the run began with --cache-ip")
	addAllowExpiredFlag(cmd, &o.allowExpired)
	f.BoolVar(&o.updateSelf, "update-self", false, "update sentinel itself to the newest signed build the channel offers (also a development build), then go on with the run in the new build; without VERSION or --resume, only update")
	f.BoolVar(&o.noSelfUpdate, "no-self-update", false, "do not look for a newer sentinel build first (a numbered build looks, and updates itself, by default)")
	return cmd
}

func runUpgrade(ctx context.Context, o upgradeOptions, args []string) error {
	target := ""
	if len(args) == 1 {
		target = args[0]
		if _, err := release.ParseVersion(target); err != nil {
			return usagef("%q is not a release version (expected something like 3.4.2): %v", target, err)
		}
	}
	if o.output != "text" && o.output != "json" {
		return usagef("--output must be text or json, not %q", o.output)
	}
	if o.maxInFlight < 0 {
		return usagef("--max-in-flight must be 1 or more, not %d", o.maxInFlight)
	}
	if o.nodeRetries < 0 {
		return usagef("--node-retries must be 0 or more, not %d", o.nodeRetries)
	}
	for _, n := range o.only {
		if strings.TrimSpace(n) == "" {
			return usagef("--node takes node names from the cluster file; an empty one names none")
		}
	}
	if o.resume && (target != "" || o.force || o.dryRun || o.downloadOnly || o.skipDownload || len(o.roleOrder) > 0 || len(o.only) > 0) {
		return usagef("--resume finishes the unfinished run as it was planned: it takes no VERSION, --force, --dry-run, --download-only, --skip-download, --role-order or --node (only --cache-ip or --no-cache, to change where the artifacts left to fetch come from, and --skip-drain)")
	}
	if o.noCache && (!o.resume || o.cacheIP != "") {
		return usagef("--no-cache goes with --resume, without --cache-ip: it takes the artifacts left to fetch from the upstream")
	}
	if o.downloadOnly && o.cacheIP == "" {
		return usagef("--download-only needs --cache-ip: it fills the cache node's store, from which a later `sentinel upgrade --cache-ip IP` runs")
	}
	if o.downloadOnly && o.skipDownload {
		return usagef("--download-only and --skip-download contradict each other")
	}
	ignore, err := parseIgnore(o.ignore)
	if err != nil {
		return err
	}
	inv, err := loadInventory(o.cluster)
	if err != nil {
		return err
	}
	cacheURL := ""
	if o.cacheIP != "" {
		if cacheURL, err = parseCacheAddr(o.cacheIP, inv.CachePort()); err != nil {
			return err
		}
	}
	log, closeLog, err := openLog(filepath.Join(inv.Core().Root, "logs"))
	if err != nil {
		return fmt.Errorf("opening the log in %s: %w", filepath.Join(inv.Core().Root, "logs"), err)
	}
	defer closeLog()
	cmdline := commandLine(os.Args)
	log.Info("Running with command: " + cmdline)
	if done, err := o.selfUpdateFirst(ctx, inv, target, cacheURL, cmdline, log); done || err != nil {
		return err
	}

	transports, err := dialAll(inv)
	if err != nil {
		return err
	}
	progress, closeProgress := newProgress(o)
	defer closeProgress() // idempotent: finishRun closes it first to flush the bars
	o.closeProgress = closeProgress
	progress = &loggedProgress{next: progress, log: log}

	src := planSource{channel: inv.Channel, cacheURL: cacheURL, skipDownload: o.skipDownload,
		drainTimeout: o.drainTimeout, roleOrder: o.roleOrder, only: o.only, maxInFlight: o.maxInFlight, trust: o.metadataTrust(log)}
	if o.downloadOnly {
		return runDownloadOnly(ctx, o, inv, transports, target, cacheURL, log, progress, ignore)
	}
	if cacheURL != "" {
		src.channel = cacheURL + "/channel/index.json"
	}
	if o.dryRun {
		plan, _, err := planUpgrade(ctx, inv, transports, target, o.force, "dry-run", src)
		if err != nil {
			return err
		}
		return printPlan(o.stdout, o.output, inv, plan)
	}

	runs := rollout.Runs{Dir: inv.State()}
	lock, err := runs.Lock(cmdline)
	if err != nil {
		return err
	}
	defer lock.Release()
	last, _, err := runs.Latest()
	if err != nil {
		return fmt.Errorf("reading the last run in %s: %w", inv.State(), err)
	}
	exec := &rollout.Executor{Transports: transports, Progress: progress, Stopping: o.stopping, SkipDrain: o.skipDrain,
		UnreachableRetries: max(o.nodeRetries, 0), DEAs: inv.NodesWithRole(release.RoleDEA)}
	if o.nodeRetries == 0 {
		exec.UnreachableRetries = -1 // none
	}

	if o.resume {
		switch {
		case last == nil:
			return usagef("there is no run to resume in %s: start one with `sentinel upgrade`", inv.State())
		case last.Status == "succeeded":
			// Resuming twice, or after a crash that came after the last record, is not an error.
			fmt.Fprintf(o.stdout, "Run %s already finished: the cluster is on %s. Nothing to resume.\n", last.ID, last.Plan.To)
			return nil
		case last.Finished():
			return usagef("run %s ended and cannot be resumed: %s", last.ID, last.Error)
		}
		j, run, err := reopenRun(runs, inv, o.stderr, log)
		if err != nil {
			return err
		}
		defer j.Close()
		if o.maxInFlight > 0 {
			run.Plan.MaxInFlight = o.maxInFlight // this process only: the journal keeps the plan
		}
		exec.Source = run.Plan.DefaultSource()
		switch {
		case cacheURL != "":
			exec.Source = rollout.Source{CacheURL: cacheURL}
		case o.noCache:
			exec.Source = rollout.Source{}
		}
		fmt.Fprintf(o.stderr, "sentinel: resuming run %s (%s -> %s) at %s; artifacts from %s\n", run.ID, run.Plan.From, run.Plan.To, run.Where(), exec.Source)
		log.Info("resuming run", zap.String("run", run.ID), zap.String("at", run.Where()), zap.String("source", exec.Source.String()))
		exec.Journal = j
		if err := noteBinary(o, log, j, run); err != nil {
			return err
		}
		if err := recheckNodes(ctx, o, log, exec, run); err != nil {
			return err
		}
		return finishRun(o, log, run.Plan, execute(ctx, exec, run))
	}

	if last != nil && !last.Finished() {
		return usagef("run %s (%s) did not finish: it stopped at %s. Pass --resume to finish it", last.ID, strings.Join(last.Command, " "), last.Where())
	}
	id := rollout.NewID(time.Now())
	plan, _, err := planUpgrade(ctx, inv, transports, target, o.force, id, src)
	if err != nil {
		return err
	}
	if nothingToDo(plan) {
		fmt.Fprintf(o.stdout, "Every node is already on %s: nothing to do (use --force to reinstall).\n", plan.To)
		return nil
	}
	if err := runPreflight(ctx, o, rollout.PreflightInput{Inventory: inv, Transports: transports, Plan: plan, ChannelURL: src.channel,
		LockHeldByUs: true, Runs: runs, Ignore: ignore}, log); err != nil {
		return err
	}
	if !o.yes {
		if err := confirm(o, plan); err != nil {
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
	log.Info("run started", zap.String("run", id), zap.String("from", plan.From), zap.String("to", plan.To))
	if o.output == "text" {
		fmt.Fprintf(o.stdout, "Run %s: upgrading %s from %s to %s\n", id, inv.Name, plan.From, plan.To)
	}
	return finishRun(o, log, plan, execute(ctx, exec, run))
}

// reopenRun opens the journal of the unfinished run to go on with it: a
// torn last record is set aside (and said), and every node of the run must
// still be in the cluster file.
func reopenRun(runs rollout.Runs, inv *cluster.Inventory, stderr io.Writer, log *zap.Logger) (*resume.Journal, *rollout.Run, error) {
	path, err := runs.LatestPath()
	if err != nil {
		return nil, nil, err
	}
	j, rep, err := resume.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if rep.TornTail != nil {
		fmt.Fprintf(stderr, "sentinel: the journal's last record was torn by the crash; set aside %d bytes as %s\n", rep.TornTail.Length, rep.TornTail.SavedAs)
		log.Warn("torn journal tail set aside", zap.String("saved_as", rep.TornTail.SavedAs), zap.Int64("offset", rep.TornTail.Offset))
	}
	run, err := rollout.ReplayRun(rep.Records)
	if err == nil {
		for _, np := range run.Plan.Nodes {
			if _, ok := inv.Node(np.Node); !ok {
				err = usagef("run %s involves node %s, which the cluster file %s no longer lists", run.ID, np.Node, inv.Path())
				break
			}
		}
	} else {
		err = fmt.Errorf("journal %s: %w", path, err)
	}
	if err != nil {
		j.Close()
		return nil, nil, err
	}
	return j, run, nil
}

// recheckNodes asks the nodes what they run before a resumed run goes on,
// and says which steps run again because a node no longer shows them.
func recheckNodes(ctx context.Context, o upgradeOptions, log *zap.Logger, exec *rollout.Executor, run *rollout.Run) error {
	resets, unreached, err := exec.Recheck(ctx, run)
	if err != nil {
		return err
	}
	type group struct {
		node, reason, first string
		n                   int
	}
	var groups []*group
	for _, r := range resets {
		log.Warn("step reset on resume", zap.String("node", r.Node), zap.String("step", r.Step), zap.String("reason", r.Reason))
		if g := len(groups); g > 0 && groups[g-1].node == r.Node && groups[g-1].reason == r.Reason {
			groups[g-1].n++
			continue
		}
		groups = append(groups, &group{node: r.Node, reason: r.Reason, first: r.Step, n: 1})
	}
	for _, g := range groups {
		fmt.Fprintf(o.stderr, "sentinel: node %s: %s; %d done step(s) from %s run again\n", g.node, g.reason, g.n, g.first)
	}
	for _, n := range unreached {
		fmt.Fprintf(o.stderr, "sentinel: node %s cannot be reached now to check what it runs; its steps are tried when its turn comes\n", n)
		log.Warn("node not rechecked on resume", zap.String("node", n))
	}
	return nil
}

// runPreflight checks every node before a run changes anything: failures
// stop it (exit 3); warnings and failures are shown either way.
func runPreflight(ctx context.Context, o upgradeOptions, in rollout.PreflightInput, log *zap.Logger) error {
	rep := rollout.Preflight(ctx, in)
	warned := false
	for _, r := range rep.Results {
		if r.Status != "PASS" {
			warned = true
			log.Warn("preflight", zap.String("node", r.Node), zap.String("check", r.Check), zap.String("status", r.Status), zap.Strings("messages", r.Messages))
		}
	}
	if o.output == "json" {
		if err := newJSONProgress(o.stdout).emitResult("preflight", preflightJSON{OK: rep.Err() == nil, Results: rep.Results}); err != nil {
			return err
		}
	} else if warned {
		fmt.Fprintln(o.stdout, "Preflight:")
		printPreflight(o.stdout, rep, false)
	}
	if err := rep.Err(); err != nil {
		return &preflightError{err: err}
	}
	return nil
}

// execute runs the journaled steps; a first Ctrl-C meanwhile stops at the
// next step boundary.
func execute(ctx context.Context, exec *rollout.Executor, run *rollout.Run) error {
	journaling.Store(true)
	defer journaling.Store(false)
	return exec.Execute(ctx, run)
}

func finishRun(o upgradeOptions, log *zap.Logger, plan *rollout.Plan, err error) error {
	o.closeProgress() // the step lines above the bars come out before the summary
	if err != nil {
		log.Error("run ended", zap.Error(err))
		var fe *rollout.StepFailedError
		if errors.As(err, &fe) && fe.Output != "" && o.output == "text" {
			fmt.Fprintf(o.stderr, "output of the failed hook (last lines):\n%s\n", indent(fe.Output))
		}
		return err
	}
	log.Info("run succeeded", zap.String("to", plan.To))
	if o.output == "text" {
		if patches.IsPatchRun(plan) { // `upgrade --resume` finishes a patch run too
			fmt.Fprintf(o.stdout, "Patch %s of %s finished. `sentinel patch status` shows every node.\n", patchVerb(plan.Kind), strings.Join(plan.Patches, ", "))
			return nil
		}
		fmt.Fprintf(o.stdout, "Cluster upgraded to %s. `sentinel status` shows every node.\n", plan.To)
	}
	return nil
}

// planSource says where a plan's metadata and artifacts come from.
type planSource struct {
	channel      string // index URL: the upstream's, or the cache daemon's copy
	cacheURL     string // artifacts by digest from this cache daemon
	skipDownload bool
	drainTimeout time.Duration
	roleOrder    []string
	only         []string
	maxInFlight  int
	trust        *metadataTrust // nil: verify when the cluster file says so, without warnings or log
}

func planUpgrade(ctx context.Context, inv *cluster.Inventory, tr map[string]cluster.Transport, target string, force bool, id string, src planSource) (*rollout.Plan, *release.Channel, error) {
	var opts []release.ChannelOption
	if src.cacheURL != "" {
		opts = append(opts, release.WithoutProxy()) // the cache node is on the cluster's network
	}
	trustOpts, err := src.trust.channelOptions(inv)
	if err != nil {
		return nil, nil, err
	}
	ch, err := release.OpenChannel(ctx, src.channel, append(opts, trustOpts...)...)
	if err != nil {
		return nil, nil, explainCacheMiss(src, target, err)
	}
	facts, err := rollout.Gather(ctx, inv.Nodes, tr)
	if err != nil {
		return nil, nil, fmt.Errorf("reading node facts: %w", err)
	}
	plan, err := rollout.MakePlan(ctx, channelAdapter{ch}, rollout.PlanInput{Inventory: inv, Facts: facts, Target: target, Force: force, RunID: id,
		CacheURL: src.cacheURL, SkipDownload: src.skipDownload, DrainDeadline: src.drainTimeout, RoleOrder: src.roleOrder, Only: src.only, MaxInFlight: src.maxInFlight})
	if err != nil {
		return nil, nil, explainCacheMiss(src, target, err)
	}
	if err := src.trust.accept(ch); err != nil {
		return nil, nil, err
	}
	if !src.skipDownload {
		if err := checkArtifactSizes(ctx, ch, plan, src.channel, src.cacheURL); err != nil {
			return nil, nil, explainCacheRefusal(src, target, err)
		}
	}
	return plan, ch, nil
}

// explainCacheMiss turns "404 from the cache daemon" into what to do.
func explainCacheMiss(src planSource, target string, err error) error {
	err = explainCacheRefusal(src, target, err)
	var fe *release.FetchError
	if src.cacheURL == "" || !errors.As(err, &fe) || fe.Status != http.StatusNotFound {
		return err
	}
	what := "release " + path.Base(path.Dir(fe.URL))
	if strings.HasSuffix(fe.URL, "/index.json") {
		what = "any channel documents"
	}
	return usagef("the cache node %s does not hold %s: fill it first with `sentinel upgrade %s --download-only --cache-ip HOST` (%v)",
		src.cacheURL, what, orLatest(target), err)
}

func orLatest(v string) string {
	if v == "" {
		return "VERSION"
	}
	return v
}

// parseCacheAddr turns IP[:PORT] (or HOST[:PORT], [IPv6]:PORT) into the
// cache daemon's base URL.
func parseCacheAddr(s string, defaultPort int) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), strconv.Itoa(defaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", usagef("--cache-ip %q: %q is not a port", s, port)
	}
	if host == "" || strings.ContainsAny(host, "/ ?#@") {
		return "", usagef("--cache-ip %q is not IP[:PORT]", s)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// channelAdapter gives rollout the channel operations it plans with.
type channelAdapter struct{ *release.Channel }

func (c channelAdapter) Path(from, to string) ([]string, error) { return c.Index.Path(from, to) }
func (c channelAdapter) Latest() string                         { return c.Index.Latest() }

func nothingToDo(p *rollout.Plan) bool { return p.NothingToDo() }

func confirm(o upgradeOptions, plan *rollout.Plan) error {
	f, ok := o.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return usagef("no terminal to ask for confirmation: pass --yes to upgrade %d nodes to %s", len(plan.Nodes), plan.To)
	}
	if err := printPlan(o.stdout, "text", nil, plan); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "Upgrade to %s? [y/N] ", plan.To)
	line, _ := bufio.NewReader(o.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return usagef("not confirmed: nothing changed")
	}
	return nil
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func printPlan(w io.Writer, format string, inv *cluster.Inventory, plan *rollout.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*rollout.Plan
			Downtime []rollout.RoleDowntime `json:"downtime"`
			Schedule []scheduleJSON         `json:"schedule"`
		}{plan, plan.Downtime(), scheduleOf(plan)})
	}
	fmt.Fprintf(w, "Plan: %s -> %s (releases installed in turn: %s; artifacts from %s)\n", plan.From, plan.To, strings.Join(plan.Hops, ", "), plan.Source)
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "\nnode %s [%s] on %s\n", np.Node, strings.Join(np.Roles, ","), np.From)
		if np.Skip != "" {
			fmt.Fprintf(w, "  nothing to do: %s\n", np.Skip)
			continue
		}
		var fetch int
		var bytes int64
		type comp struct {
			name, from, to string
			ops            []string
		}
		var comps []*comp
		byKey := map[string]*comp{}
		for _, s := range np.Steps {
			switch {
			case s.Op == steps.OpFetch:
				fetch++
				bytes += s.Request.Artifact.Size
			case s.Component != "":
				key := s.Release + "/" + s.Component
				c := byKey[key]
				if c == nil {
					c = &comp{name: s.Component, from: s.From, to: s.Version}
					byKey[key] = c
					comps = append(comps, c)
				}
				c.ops = append(c.ops, s.Op)
			default:
				for _, c := range comps {
					fmt.Fprintf(w, "  %-22s %-8s -> %-8s %s\n", c.name, orNone(c.from), c.to, strings.Join(c.ops, ", "))
				}
				comps, byKey = nil, map[string]*comp{}
				if s.Op == steps.OpBackup && fetch > 0 {
					fmt.Fprintf(w, "  fetch and verify %d artifacts (%s)\n", fetch, humanBytes(bytes))
					fetch = 0
				}
				fmt.Fprintf(w, "  %s\n", describe(s))
			}
		}
	}
	if f := plan.Finally; f != nil {
		fmt.Fprintf(w, "\nfinally, on %s:\n", f.Node)
		for _, s := range f.Steps {
			fmt.Fprintf(w, "  %s\n", describe(s))
		}
	}
	printSchedule(w, plan)
	return nil
}

// scheduleJSON is when a node starts in the simulated schedule, counted in
// steps (a rough stand-in for time).
type scheduleJSON struct {
	Node       string  `json:"node"`
	StartStep  float64 `json:"start_step"`
	EndStep    float64 `json:"end_step"`
	NodeStepsN int     `json:"steps"`
}

func scheduleOf(plan *rollout.Plan) []scheduleJSON {
	out := []scheduleJSON{}
	for _, sl := range rollout.Simulate(plan, rollout.StepCost) {
		out = append(out, scheduleJSON{Node: sl.Node, StartStep: sl.Start, EndStep: sl.End, NodeStepsN: int(sl.End - sl.Start)})
	}
	return out
}

// printSchedule shows in which order, and with which others, nodes go,
// and which roles go down meanwhile.
func printSchedule(w io.Writer, plan *rollout.Plan) {
	slots := rollout.Simulate(plan, rollout.StepCost)
	if len(slots) == 0 {
		return
	}
	n := max(plan.MaxInFlight, 1)
	if n == 1 {
		var names []string
		for _, sl := range slots {
			names = append(names, sl.Node)
		}
		fmt.Fprintf(w, "\nOrder, one node at a time: %s\n", strings.Join(names, ", "))
	} else {
		var total float64
		for _, sl := range slots {
			total = max(total, sl.End)
		}
		fmt.Fprintf(w, "\nSchedule, up to %d nodes at once (estimated from step counts: %.0f steps end to end):\n", n, total)
		for _, sl := range slots {
			fmt.Fprintf(w, "  step %4.0f-%-4.0f %s\n", sl.Start, sl.End, sl.Node)
		}
	}
	fmt.Fprintln(w, "\nDowntime by role:")
	for _, d := range plan.Downtime() {
		status := "none"
		if len(d.Down) > 0 {
			status = "DOWN"
		}
		fmt.Fprintf(w, "  %-14s %-5s %s\n", d.Role, status, d.Note)
	}
}

func describe(s rollout.Step) string {
	switch s.Op {
	case steps.OpBackup:
		return "backup <root>/etc before " + s.Release
	case steps.OpCommit:
		return "record release " + s.Release + " in node.json"
	case steps.OpRestart:
		return fmt.Sprintf("restart all %d components and check health", len(s.Request.Restart))
	case steps.OpPrune:
		return fmt.Sprintf("prune the node cache down to the %d artifacts of %s", len(s.Request.Keep), s.Release)
	case steps.OpRetire:
		return fmt.Sprintf("retire the DEA: move its app instances to the other DEAs (drain, within %s)", s.Request.DrainDeadline.Or(steps.DefaultDrainDeadline))
	case steps.OpUnretire:
		return "unretire the DEA: it takes app instances again"
	case steps.OpPruneCache:
		return fmt.Sprintf("prune the cache node's store (%s) of what no release from %s on needs", s.Request.CacheDir, s.Request.KeepFrom)
	}
	return s.ID
}

func orNone(v string) string {
	if v == "" {
		return "(new)"
	}
	return v
}

func humanBytes(n int64) string { return preflight.FormatBytes(n) }

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// loggedProgress writes every step to the log file as well.
type loggedProgress struct {
	next rollout.Progress
	log  *zap.Logger
}

func (p *loggedProgress) StepStarted(node string, s rollout.Step) {
	p.log.Info("step started", zap.String("node", node), zap.String("step", s.ID))
	p.next.StepStarted(node, s)
}

func (p *loggedProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	if err != nil {
		p.log.Error("step failed", zap.String("node", node), zap.String("step", s.ID), zap.Error(err))
	} else {
		p.log.Info("step done", zap.String("node", node), zap.String("step", s.ID), zap.String("note", res.Note))
	}
	p.next.StepFinished(node, s, res, err)
}

func (p *loggedProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	if tp.Final || tp.Retries > 0 && tp.Done == 0 {
		p.log.Info("transfer", zap.String("node", node), zap.String("step", s.ID), zap.Int64("done", tp.Done), zap.Int("retries", tp.Retries))
	}
	p.next.Transfer(node, s, tp)
}

// newProgress picks the display: bars on a terminal, lines otherwise,
// JSON lines with --output json.
func newProgress(o upgradeOptions) (rollout.Progress, func()) {
	if o.output == "json" {
		return newJSONProgress(o.stdout), func() {}
	}
	if f, ok := o.stdout.(*os.File); ok && isTerminal(f) {
		p := newTTYProgress(f)
		var once sync.Once
		return p, func() { once.Do(p.Close) }
	}
	return newTextProgress(o.stdout), func() {}
}

func (p *loggedProgress) Logf(node, format string, args ...any) {
	p.log.Info(fmt.Sprintf(format, args...), zap.String("node", node))
	p.next.Logf(node, format, args...)
}
