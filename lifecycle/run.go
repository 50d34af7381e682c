// Package lifecycle is the one life of a run, whatever it does: upgrade,
// download-only, patch install, reinstall and revert. Each goes through
// the same named phases (see Phases): lock, source, self-update, nodes,
// plan, preflight, stage, confirm, execute, result. A Job says only how
// its plan is made, how it is carried out when that is not the journaled
// executor, and what it says; Printer shows it all. Nothing here writes to
// a terminal: cmd/sentinel gives the Printer.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	osuser "os/user"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// Printer shows a run to the operator: text lines or bars, or JSON lines.
type Printer interface {
	rollout.Progress
	// Notef is a line on stderr about what the run does.
	Notef(format string, args ...any)
	// Warnf is a warning on stderr ("sentinel: warning: ...").
	Warnf(format string, args ...any)
	// Textf is a line of the text output; JSON output leaves it out.
	Textf(format string, args ...any)
	// Result is the JSON output's closing document ("<kind>-result");
	// text output leaves it out.
	Result(kind string, v any) error
	// JSON says whether the output is JSON.
	JSON() bool
	// Preflight shows a run's preflight when it warned or failed.
	Preflight(rep *preflight.Report) error
	// Plan shows a plan (--dry-run, and before asking to confirm).
	Plan(plan *rollout.Plan) error
	// Confirm asks the operator; refusal is said when there is no one to
	// ask. It returns a *UsageError unless the answer is yes.
	Confirm(plan *rollout.Plan, question, refusal string) error
	// Close ends the live display; what follows is the summary.
	Close()
}

// Options are what the command line says about a run.
type Options struct {
	// Command is the command line (os.Args): logged, journaled, and run
	// again by a self-update.
	Command []string
	// Version is this build's version.
	Version string
	// UpdatedFrom is the build a self-update replaced, when this process
	// is the build it re-executed.
	UpdatedFrom string

	Yes, DryRun, Resume bool
	// CacheAddr is --cache-ip: IP[:PORT] of the cache daemon.
	CacheAddr string
	// NoCache: a resumed run takes what is left from the upstream.
	NoCache      bool
	AllowExpired bool
	UpdateSelf   bool
	NoSelfUpdate bool
	Ignore       preflight.IgnoreSet
	// UnreachableRetries: see rollout.Executor (0: its default, <0: none).
	UnreachableRetries int
	// Update is how the nodes go (flags; "" leaves a setting to the
	// cluster file's update: block). On resume only MaxInFlight may be
	// given: it overrides the journaled plan's for this process.
	Update    rollout.UpdateSpec
	SkipDrain bool
	// NoMaintenance leaves maintenance mode alone, though the cluster
	// file says how to switch it.
	NoMaintenance bool
	// Exclude names nodes a resumed run leaves out, for ExcludeReason.
	Exclude       []string
	ExcludeReason string
	// Skip names phases not to run (see Phases).
	Skip []string
	// RunID names the new run instead of a fresh id: the id a detaching
	// parent gave its background process.
	RunID string
	// Detach hands the run to a background process once confirmed.
	Detach bool
}

// Env is what a run is given to work with.
type Env struct {
	Printer Printer
	// Dial opens a transport to every node.
	Dial func(*cluster.Inventory) (map[string]cluster.Transport, error)
	// Stopping is closed when the operator asked to stop (a first Ctrl-C).
	Stopping <-chan struct{}
	// Journaling is told when journaled steps start and end: meanwhile a
	// first Ctrl-C lets the current step finish.
	Journaling func(on bool)
	// Recorder keeps the run's events and audit beside its journal (nil:
	// none).
	Recorder Recorder
	// Started is told the id of the journaled run once it started or
	// resumed (a detached process tells its parent).
	Started func(id string)
	// Background starts the confirmed run id in a background process
	// (--detach); the lock and the journal are free by then.
	Background func(id string) error
}

// Recorder is told when the journaled run starts or resumes in this
// process, and gives where its events go too.
type Recorder interface {
	Begin(id string, resumed bool) (rollout.Progress, error)
}

// Run is one run's state as it goes through its phases.
type Run struct {
	Options
	Env
	Job        *Job
	Inventory  *cluster.Inventory
	Log        *zap.Logger
	Transports map[string]cluster.Transport
	// Source is where the channel and artifacts are read.
	Source source.Source
	// FillCache is the cache daemon a download-only run fills.
	FillCache string
	Runs      rollout.Runs
	// Last is the cluster's last run, read under the run lock.
	Last *rollout.Run
	// ID names the run ("dry-run" for one that changes nothing).
	ID      string
	Plan    *rollout.Plan
	Journal *resume.Journal
	// Journaled is the run being carried out, once its journal is open.
	Journaled *rollout.Run
	// Facts are the nodes' facts, once gathered.
	Facts map[string]*steps.Facts

	lock    *resume.Lock
	lease   *clusterLease
	channel *release.Channel
	tuf     *channel.Client
	level   *runLevel // the run-level line, and what the fetch steps moved
	// expired lists the metadata accepted only because of
	// --allow-expired-metadata, for the journal.
	expired []string
	offline bool // the resumed run downloads nothing
	// registryFill: a download-only run of a cluster reading a registry,
	// refused once planned with the command that fills it.
	registryFill *registryFill
	execErr      error
}

// Do carries out a job through its phases. inv is the cluster file,
// loaded. The returned error is the run's; what the run did was shown
// through env.Printer.
func Do(ctx context.Context, inv *cluster.Inventory, env Env, o Options, job *Job) error {
	if err := (&Run{Options: o, Job: job}).validate(); err != nil {
		return err
	}
	// Before the command is logged and journaled: a resume, from another
	// directory maybe, reads the files this run was given.
	o.Command = absolutePathFlags(o.Command)
	r, done, err := open(inv, env, o, job)
	if err != nil {
		return err
	}
	defer done()
	runner := &Runner{Phases: Phases(), Skip: o.Skip}
	return runner.Run(ctx, r)
}

// open starts a run's state and its log, whose first line is the command
// line; done releases what the run held.
func open(inv *cluster.Inventory, env Env, o Options, job *Job) (r *Run, done func(), err error) {
	r = &Run{Options: o, Env: env, Job: job, Inventory: inv, Runs: rollout.Runs{Dir: inv.State()}}
	var closeLog func()
	if r.Log, closeLog, err = OpenLog(inv); err != nil {
		return nil, nil, err
	}
	r.Log.Info(LogCommandMarker + CommandLine(o.Command))
	return r, func() {
		if r.lease != nil {
			r.lease.release()
		}
		// After the lease, given back through the core's transport: the
		// nodes' agents end with the run, and connections close.
		cluster.CloseAll(r.Transports)
		if r.lock != nil {
			r.lock.Release()
		}
		if r.Journal != nil {
			r.Journal.Close()
		}
		if r.tuf != nil {
			r.tuf.Close()
		}
		r.Printer.Close()
		closeLog()
	}, nil
}

func (r *Run) validate() error {
	switch {
	case r.UpdateSelf && r.NoSelfUpdate:
		return usagef("--update-self and --no-self-update contradict each other")
	case r.UpdateSelf && (r.DryRun || r.Job.DownloadOnly):
		return usagef("--update-self does not go with --dry-run or --download-only (--download-only puts the sentinel build in the cache node; a later `sentinel upgrade --cache-ip IP` updates from it)")
	}
	return nil
}

// Phases are the phases of every run, in order.
func Phases() []Phase {
	return []Phase{
		{Name: "lock", RunIf: func(r *Run) bool { return !r.DryRun && !r.Job.DownloadOnly }, Do: (*Run).takeLock},
		{Name: "source", Do: (*Run).chooseSource},
		{Name: "self-update", RunIf: func(r *Run) bool { return !r.DryRun && !r.Job.DownloadOnly }, Do: (*Run).selfUpdate},
		{Name: "nodes", Do: (*Run).dial},
		{Name: "plan", Do: (*Run).plan},
		{Name: "preflight", RunIf: func(r *Run) bool { return r.Journaled == nil && !r.DryRun && !r.Job.SkipPreflight }, Do: (*Run).preflight},
		{Name: "stage", RunIf: func(r *Run) bool { return r.Journaled == nil && r.Job.Stage != nil }, Do: func(r *Run, ctx context.Context) error { return r.Job.Stage(ctx, r) }},
		{Name: "confirm", RunIf: func(r *Run) bool { return r.Journaled == nil && !r.Yes && r.Job.Question != nil }, Do: (*Run).confirm},
		{Name: "detach", RunIf: func(r *Run) bool { return r.Detach && !r.DryRun }, Do: (*Run).detach},
		{Name: "execute", Do: (*Run).execute},
		{Name: "result", Do: func(r *Run, _ context.Context) error { r.Printer.Close(); return r.Job.Finished(r, r.execErr) }},
	}
}

func (r *Run) takeLock(ctx context.Context) error {
	var err error
	if r.lock, err = r.Runs.Lock(CommandLine(r.Command)); err != nil {
		return err
	}
	if r.Last, _, err = r.Runs.Latest(); err != nil {
		return fmt.Errorf("reading the last run in %s: %w", r.Inventory.State(), err)
	}
	return r.takeLease(ctx)
}

// chooseSource: --cache-ip, else (for a resume) where the run was planned
// to take its artifacts from, unless --no-cache; else the upstream.
func (r *Run) chooseSource(ctx context.Context) error {
	inv := r.Inventory
	r.Source = source.Source{Upstream: inv.Channel, Fill: r.Job.Fill, Mirrors: inv.Mirrors, Registry: inv.RegistrySettings(),
		Trust: &source.Trust{Inventory: inv, AllowExpired: r.AllowExpired, ReadOnly: r.DryRun, Warn: r.warn},
		// Only an upgrade (the window after staging) may run on the
		// channel kept at staging; other runs say their source is gone.
		Kept: r.Job.Kind == "upgrade"}
	if len(flagValues(r.Command, "mirror")) > 0 {
		r.Source.MirrorsFrom = "--mirror"
	}
	if readsRegistry(inv) {
		r.Source.Direct = directCommand(r.Job)
	}
	if err := r.resumeSources(); err != nil {
		return err
	}
	if r.Job.DownloadOnly {
		fill, err := registryFillFor(inv)
		if err != nil || fill != nil {
			// The plan reads the channel itself: a registry mirror may
			// not hold the release yet.
			r.registryFill, r.Source.Mirrors = fill, nil
			return err
		}
		if r.CacheAddr == "" {
			return usagef("%s", r.Job.NeedsCache)
		}
	}
	cacheURL := ""
	if r.CacheAddr != "" {
		var err error
		if cacheURL, err = source.CacheURL(r.CacheAddr, inv.CachePort()); err != nil {
			return err
		}
	} else if r.Resume && !r.NoCache && r.Last != nil && !r.Last.Finished() {
		cacheURL, r.offline = r.Last.Plan.CacheURL, r.Last.Plan.Offline
	}
	if cacheURL != "" {
		peer, err := inv.CachePeer()
		if err != nil {
			return err
		}
		if !peer.TLS() {
			r.warn(fmt.Sprintf("the cache daemon %s is reached over plain HTTP (cache.plain_http in %s): anyone on the network can read the prefetch token and pose as the cache node; pin its certificate with cache.tls_fingerprint instead", strings.TrimPrefix(cacheURL, "http://"), inv.Path()))
		}
		r.Source.Peer, cacheURL = peer, source.CacheBase(cacheURL, peer)
		if err := source.CheckPeer(ctx, cacheURL, peer); err != nil {
			return err
		}
		if msg := source.ProxyMismatch(ctx, cacheURL, peer, inv.Channel); msg != "" {
			r.warn(msg)
		}
	}
	if r.Job.DownloadOnly {
		r.FillCache = cacheURL // the metadata comes from the upstream: the cache may not hold it yet
		return nil
	}
	r.Source.Cache = cacheURL
	return nil
}

// warn is a warning for the operator and the log alike.
func (r *Run) warn(msg string) {
	r.Printer.Warnf("%s", msg)
	r.Log.Warn(msg)
}

// Channel opens the channel once, verified; a failed open is tried again
// by the next caller. Expired metadata accepted under
// --allow-expired-metadata is reported, logged, and kept for the journal.
func (r *Run) Channel(ctx context.Context) (*release.Channel, error) {
	if r.channel != nil {
		return r.channel, nil
	}
	ch, c, err := r.Source.Open(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range r.Source.Passed() {
		r.warn(fmt.Sprintf("the channel mirror %s; the next in order was used, and this run reads the channel and its artifacts from %s (start or fix that mirror as said, or take it out of mirrors)", p, r.Source.Read()))
	}
	if r.AllowExpired {
		r.Log.Warn("--allow-expired-metadata: expired channel metadata is accepted for this run")
	}
	r.expired = r.Source.Trust.Accepted(c)
	r.channel, r.tuf = ch, c
	return ch, nil
}

func (r *Run) dial(ctx context.Context) error {
	return r.dialOnce(ctx)
}

// dialOnce reaches every node, once (the run lease may have come first),
// and checks sudo where a node needs it before any agent runs.
func (r *Run) dialOnce(ctx context.Context) error {
	if r.Transports != nil {
		return nil
	}
	var err error
	if r.Transports, err = r.Dial(r.Inventory); err != nil {
		return err
	}
	return checkSudo(ctx, r.Inventory.Nodes, r.Transports)
}

// sudoChecker is a transport that logs in as a user who needs sudo.
type sudoChecker interface {
	CheckSudo(ctx context.Context) error
}

// checkSudo asks every node whose login user is not root whether it may
// run the agent through `sudo -n`, before any agent runs: the nodes that
// may not are named together, each with the sudoers line to add, as a
// preflight failure. A node that does not answer is left to the phases
// that follow, which say so in their own words.
func checkSudo(ctx context.Context, nodes []cluster.Node, tr map[string]cluster.Transport) error {
	errs := make([]error, len(nodes))
	var g errgroup.Group
	g.SetLimit(16)
	for i, n := range nodes {
		sc, ok := tr[n.Name].(sudoChecker)
		if !ok {
			continue
		}
		g.Go(func() error {
			var se *cluster.SudoError
			if err := sc.CheckSudo(ctx); errors.As(err, &se) {
				errs[i] = se
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return &PreflightError{Err: err}
	}
	return nil
}

// GatherFacts asks every node what it runs.
func (r *Run) GatherFacts(ctx context.Context) error {
	facts, err := rollout.Gather(ctx, r.Inventory.Nodes, r.Transports)
	if err != nil {
		return fmt.Errorf("reading node facts: %w", err)
	}
	r.Facts = facts
	return nil
}

func (r *Run) plan(ctx context.Context) error {
	if r.Resume {
		return r.reopen(ctx)
	}
	if last := r.Last; last != nil && !last.Finished() {
		return usagef("run %s (%s) did not finish: it stopped at %s. %s", last.ID, strings.Join(last.Command, " "), last.Where(), r.Job.Unfinished(last))
	}
	r.ID = "dry-run"
	switch {
	case r.DryRun:
	case r.RunID != "":
		r.ID = r.RunID
	default:
		r.ID = rollout.NewID(time.Now())
	}
	plan, err := r.Job.Plan(ctx, r)
	if err != nil {
		return err
	}
	if plan.Source == (source.Fetch{}).String() {
		// Not the upstream when the channel was read at a mirror: the
		// nodes fetch from there.
		plan.Source = r.Source.String()
	}
	if r.registryFill != nil {
		// A patch plan lists no node when none needs a patch yet; the
		// registry may still want them, so it gets the copy command.
		if plan.NothingToDo() && r.Job.Kind != "patch-download-only" {
			r.Printer.Textf("No node needs anything for %s: nothing to copy into the registry.\n", plan.To)
			return errDone
		}
		return r.registryFill.refusal(plan, r.Job.Kind)
	}
	plan.ExpiredMetadata = r.expired
	r.Plan = plan
	if r.DryRun {
		if r.Job.DryRun != nil {
			return r.Job.DryRun(r)
		}
		if err := r.Printer.Plan(plan); err != nil {
			return err
		}
		return errDone
	}
	if plan.NothingToDo() && r.Job.NothingToDo != nil {
		if err := r.Job.NothingToDo(r); err != nil {
			return err
		}
		return errDone
	}
	return nil
}

func (r *Run) preflight(ctx context.Context) error {
	in := rollout.PreflightInput{Inventory: r.Inventory, Transports: r.Transports, Plan: r.Plan, ChannelURL: r.Source.ChannelURL(),
		LockHeldByUs: r.lock != nil, Runs: r.Runs, Ignore: r.Ignore, CachePeer: r.Source.Peer, Proxy: operatorProxy()}
	if r.Job.DownloadOnly {
		in.DownloadOnly, in.CacheURL = true, r.FillCache
	}
	rep := rollout.Preflight(ctx, in)
	for _, res := range rep.Results {
		if res.Status != "PASS" {
			r.Log.Warn("preflight", zap.String("node", res.Node), zap.String("check", res.Check), zap.String("status", res.Status), zap.Strings("messages", res.Messages))
		}
	}
	if err := r.Printer.Preflight(rep); err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return &PreflightError{Err: err}
	}
	return nil
}

func (r *Run) confirm(context.Context) error {
	question, refusal := r.Job.Question(r)
	return r.Printer.Confirm(r.Plan, question, refusal)
}

// execute carries the plan out: the job's own way, or journaled step by
// step. Its error goes to the result phase.
func (r *Run) execute(ctx context.Context) error {
	if r.Job.Execute != nil {
		r.execErr = r.Job.Execute(ctx, r)
		return nil
	}
	if r.Journaled == nil {
		id := r.ID
		j, run, err := r.Runs.Start(id, r.Command, r.Version, r.Plan)
		if err != nil {
			return err
		}
		r.Journal, r.Journaled = j, run
		r.Log.Info("run started", zap.String("run", id), zap.String("kind", r.Job.Kind), zap.String("from", r.Plan.From), zap.String("to", r.Plan.To), zap.Strings("patches", r.Plan.Patches))
		if r.Job.Started != nil {
			r.Job.Started(r)
		}
	}
	exec := r.executor()
	if err := r.record(exec); err != nil {
		return err
	}
	if r.Journaling != nil {
		r.Journaling(true)
		defer r.Journaling(false)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-r.Stopping: // said where the run is followed too (attach)
			exec.Progress.Logf("run", "stop requested: the run stops once the step under way has finished (%s goes on with it)", r.Job.Advice.Resume)
		case <-done:
		}
	}()
	r.execErr = exec.Execute(ctx, r.Journaled)
	return nil
}

// record tells the recorder and whoever waits that the journaled run
// goes on in this process, and shows its progress to the recorder too.
func (r *Run) record(exec *rollout.Executor) error {
	id := r.Journaled.ID
	r.ID = id
	var shown rollout.Progress = r.Printer
	if r.Recorder != nil {
		p, err := r.Recorder.Begin(id, r.Resume)
		if err != nil {
			return fmt.Errorf("run %s: recording its events under %s: %w", id, r.Inventory.State(), err)
		}
		shown = teeProgress{r.Printer, p}
	}
	r.level = newRunLevel(shown, r.Journaled)
	exec.Progress = &loggedProgress{next: r.level, log: r.Log}
	if r.Started != nil {
		r.Started(id)
	}
	return nil
}

// detach hands the confirmed run to a background process, which takes the
// lock and the journal again: this process lets them go first.
func (r *Run) detach(context.Context) error {
	if r.Background == nil {
		return usagef("--detach is not available for this command")
	}
	id := r.ID
	if r.Journaled != nil {
		id = r.Journaled.ID
	}
	if r.Journal != nil {
		r.Journal.Close()
		r.Journal = nil
	}
	if r.lock != nil {
		r.lock.Release()
		r.lock = nil
	}
	r.Log.Info("run handed to a background process", zap.String("run", id))
	if err := r.Background(id); err != nil {
		return err
	}
	return errDone
}

func (r *Run) executor() *rollout.Executor {
	exec := &rollout.Executor{Transports: r.Transports, Journal: r.Journal, Progress: &loggedProgress{next: r.Printer, log: r.Log},
		Stopping: r.Stopping, SkipDrain: r.SkipDrain, UnreachableRetries: r.UnreachableRetries,
		DEAs: r.Inventory.NodesWithRole(release.RoleDEA), Advice: r.Job.Advice, Source: r.Journaled.Plan.DefaultSource()}
	if m := r.Inventory.Maintenance; m != nil {
		exec.Maintenance = shellMaintenance{cfg: m, log: r.Log}
	}
	exec.Proxy = operatorProxy()
	if r.Resume {
		switch {
		case r.Source.FromCache():
			exec.Source = source.Fetch{CacheURL: r.Source.Cache}
		case r.NoCache:
			exec.Source = source.Fetch{Offline: r.Journaled.Plan.Offline}
		}
	}
	if exec.Source.CacheURL != "" {
		exec.Source.CacheURL = source.CacheBase(exec.Source.CacheURL, r.Source.Peer)
		exec.Source.CachePeer = r.Source.Peer
	} else if !exec.Source.Offline {
		// The channel was read from a registry: nodes take the artifacts
		// from the same one, by digest.
		exec.Source.Registry = r.Source.RegistryFetch()
		// A source that stops in the middle of the run: the nodes go on
		// from the next in order.
		exec.Source.Next, exec.Source.Bases = r.Source.Fallbacks(), r.Source.Bases()
		if exec.Source.Registry == nil {
			exec.Source.At = r.Source.PlannedAt(r.Journaled.Plan.Artifacts())
		}
	}
	return exec
}

// reopenSources: a resumed run whose artifacts are in a registry opens
// the channel again (at the first of the mirrors that answers today), so
// its nodes know which registry to fetch what is left from; one that
// leaves its cache node does so too (leaveCache). Called again after the
// recheck, which may give a node fetches to do again; the channel is
// read once.
func (r *Run) reopenSources(ctx context.Context) error {
	if r.Source.FromCache() || r.offline || r.Journaled.Plan.CacheURL != "" && !r.NoCache {
		return nil
	}
	if r.Journaled.Plan.CacheURL != "" {
		return r.leaveCache(ctx)
	}
	for _, a := range r.Journaled.Plan.Artifacts() {
		if oci.IsRef(a.URL) {
			_, err := r.Channel(ctx)
			return err
		}
	}
	return nil
}

// leaveCache: a resume given --no-cache of a run planned at a cache
// daemon reads the channel at its own sources again (the mirrors, then the
// upstream: the first that answers), and its nodes take the artifacts left
// to fetch from there: they were planned below the daemon's copy of the
// channel. With nothing left to fetch, or a plan that fetches nothing,
// no source is needed. The journal keeps the plan as it was.
func (r *Run) leaveCache(ctx context.Context) error {
	run := r.Journaled
	plan := run.Plan
	if plan.Offline || !fetchesLeft(run) {
		return nil
	}
	if _, err := r.Channel(ctx); err != nil {
		return err
	}
	for i := range plan.Nodes {
		for j := range plan.Nodes[i].Steps {
			s := &plan.Nodes[i].Steps[j]
			if s.Op != steps.OpFetch {
				continue
			}
			u, ok := r.Source.FromCacheCopy(s.Request.Artifact.URL, plan.CacheURL)
			if !ok {
				return fmt.Errorf("run %s was planned at the cache node %s, and --no-cache takes what is left to fetch from the channel's mirrors or upstream, none of which answers (only the channel metadata kept from an earlier run could be read, and it is no place to fetch from): bring the cache node back and run `%s`, or make a mirror or the upstream reachable", run.ID, plan.CacheURL, r.Job.Advice.Resume)
			}
			s.Request.Artifact.URL = u
		}
	}
	return nil
}

// fetchesLeft says whether a node still in the run has a fetch step that
// is not done.
func fetchesLeft(run *rollout.Run) bool {
	for _, np := range run.Plan.Nodes {
		if run.IsExcluded(np.Node) {
			continue
		}
		view := run.View(np.Node)
		for i, s := range np.Steps {
			if s.Op == steps.OpFetch && (i >= len(view) || view[i].State != rollout.StateDone) {
				return true
			}
		}
	}
	return false
}

// reopen opens the journal of the unfinished run to go on with it.
func (r *Run) reopen(ctx context.Context) error {
	last := r.Last
	if err := r.Job.Resumable(r, last); err != nil {
		return err
	}
	if last.Done() {
		// Resuming twice, or after a crash that came after the last record, is not an error.
		r.Printer.Textf("Run %s already finished: %s. Nothing to resume.\n", last.ID, r.Job.Done(last))
		return errDone
	}
	if last.Finished() {
		return usagef("run %s ended and cannot be resumed: %s", last.ID, last.Error)
	}
	path, err := r.Runs.LatestPath()
	if err != nil {
		return err
	}
	j, rep, err := resume.Open(path)
	if err != nil {
		return err
	}
	r.Journal = j
	if rep.TornTail != nil {
		r.Printer.Notef("sentinel: the journal's last record was torn by the crash; set aside %d bytes as %s", rep.TornTail.Length, rep.TornTail.SavedAs)
		r.Log.Warn("torn journal tail set aside", zap.String("saved_as", rep.TornTail.SavedAs), zap.Int64("offset", rep.TornTail.Offset))
	}
	run, err := rollout.ReplayRun(rep.Records)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := r.exclude(run); err != nil {
		return err
	}
	for _, np := range run.Plan.Nodes {
		if _, ok := r.Inventory.Node(np.Node); !ok && !run.IsExcluded(np.Node) {
			return usagef("run %s involves node %s, which the cluster file %s no longer lists: put it back, or leave it out of the run with `%s --exclude-node %s --reason TEXT`", run.ID, np.Node, r.Inventory.Path(), r.Job.Advice.Resume, np.Node)
		}
	}
	if r.Update.MaxInFlight != "" {
		a, err := rollout.ParseAmount("--max-in-flight", r.Update.MaxInFlight)
		if err != nil || a.N == 0 {
			return usagef("--max-in-flight %q: want 1 or more, or a percentage above 0%%", r.Update.MaxInFlight)
		}
		run.Plan.MaxInFlight = run.Plan.MaxInFlightOf(a) // this process only: the journal keeps the plan
	}
	r.Journaled, r.Plan = run, run.Plan
	if err := r.reopenSources(ctx); err != nil {
		return err
	}
	exec := r.executor()
	r.Printer.Notef("sentinel: resuming run %s (%s) at %s%s", run.ID, r.Job.Summary(run.Plan), run.Where(), r.Job.ResumeSource(exec.Source))
	r.Log.Info("resuming run", zap.String("run", run.ID), zap.String("at", run.Where()), zap.String("source", exec.Source.String()))
	if err := r.noteBinary(); err != nil {
		return err
	}
	if err := r.recheck(ctx, exec); err != nil {
		return err
	}
	// A fetch the recheck reset needs a source as much as one not done.
	return r.reopenSources(ctx)
}

// noteBinary records in the journal which build goes on with the run,
// when another build ran it before (after a self-update, or with a binary
// put back by hand).
func (r *Run) noteBinary() error {
	run := r.Journaled
	wrote, err := rollout.NoteBinary(r.Journal, run, r.Version, r.UpdatedFrom)
	if err != nil || !wrote {
		return err
	}
	bs := run.Binaries()
	r.Log.Info("run goes on with another sentinel build", zap.String("run", run.ID), zap.String("version", r.Version), zap.String("updated_from", r.UpdatedFrom))
	if len(bs) >= 2 {
		r.Printer.Notef("sentinel: run %s goes on with sentinel %s (it ran with %s until now)", run.ID, r.Version, bs[len(bs)-2].Version)
	}
	return nil
}

// recheck asks the nodes what they run before a resumed run goes on, and
// says which steps run again because a node no longer shows them.
func (r *Run) recheck(ctx context.Context, exec *rollout.Executor) error {
	resets, unreached, err := exec.Recheck(ctx, r.Journaled)
	if err != nil {
		return err
	}
	type group struct {
		node, reason, first string
		n                   int
	}
	var groups []*group
	for _, rs := range resets {
		r.Log.Warn("step reset on resume", zap.String("node", rs.Node), zap.String("step", rs.Step), zap.String("reason", rs.Reason))
		if g := len(groups); g > 0 && groups[g-1].node == rs.Node && groups[g-1].reason == rs.Reason {
			groups[g-1].n++
			continue
		}
		groups = append(groups, &group{node: rs.Node, reason: rs.Reason, first: rs.Step, n: 1})
	}
	for _, g := range groups {
		r.Printer.Notef("sentinel: node %s: %s; %d done step(s) from %s run again", g.node, g.reason, g.n, g.first)
	}
	for _, n := range unreached {
		r.Printer.Notef("sentinel: node %s cannot be reached now to check what it runs; its steps are tried when its turn comes", n)
		r.Log.Warn("node not rechecked on resume", zap.String("node", n))
	}
	return nil
}

// finished logs how the run ended and shows a failed hook's output.
func (r *Run) logEnd(err error) {
	if err == nil {
		r.Log.Info("run succeeded", zap.String("kind", r.Job.Kind), zap.String("to", r.Plan.To), zap.Strings("patches", r.Plan.Patches))
		return
	}
	r.Log.Error("run ended", zap.Error(err))
	var fe *rollout.StepFailedError
	if errors.As(err, &fe) && fe.Output != "" && !r.Printer.JSON() {
		r.Printer.Notef("output of the failed hook (last lines):\n%s", indent(fe.Output))
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// exclude journals the nodes the operator leaves out of the resumed run
// (--exclude-node), each with who, from where and why.
func (r *Run) exclude(run *rollout.Run) error {
	if len(r.Exclude) == 0 {
		return nil
	}
	by, host := Operator()
	for _, node := range r.Exclude { // all checked before the first is written
		if err := rollout.CheckExclusion(run, rollout.Exclusion{Node: node, Reason: r.ExcludeReason}); err != nil {
			return err
		}
	}
	for _, node := range r.Exclude {
		if err := rollout.Exclude(r.Journal, run, rollout.Exclusion{Node: node, Reason: r.ExcludeReason, By: by, Host: host}); err != nil {
			return err
		}
		r.Printer.Notef("sentinel: node %s excluded from run %s by %s@%s: %s; the run finishes without it, and a later run catches it up", node, run.ID, by, host, r.ExcludeReason)
		r.Log.Warn("node excluded", zap.String("run", run.ID), zap.String("node", node), zap.String("by", by), zap.String("host", host), zap.String("reason", r.ExcludeReason))
	}
	return nil
}

// Operator names who runs sentinel (the user behind sudo, if any) and on
// which machine.
func Operator() (user, host string) {
	user = os.Getenv("SUDO_USER")
	if user == "" {
		if u, err := osuser.Current(); err == nil {
			user = u.Username
		} else {
			user = os.Getenv("USER")
		}
	}
	host, _ = os.Hostname()
	return user, host
}

// GatherSomeFacts asks every node what it runs, and returns the error of
// each that did not answer: the plan decides which of them it needs.
func (r *Run) GatherSomeFacts(ctx context.Context) map[string]error {
	facts, failed := rollout.GatherSome(ctx, r.Inventory.Nodes, r.Transports)
	r.Facts = facts
	return failed
}

// UpdatePolicy is the flags' update settings over the cluster file's
// update: block, checked before anything changes.
func (r *Run) UpdatePolicy() (rollout.Update, error) {
	var file rollout.UpdateSpec
	if c := r.Inventory.Update; c != nil {
		file = rollout.UpdateSpec{Canaries: c.Canaries, WatchTime: c.WatchTime, MaxInFlight: c.MaxInFlight, MaxFailures: c.MaxFailures, ClosingRestart: c.ClosingRestart}
	}
	if u, err := file.Parse(func(f string) string {
		return "cluster file " + r.Inventory.Path() + ": update." + strings.ReplaceAll(f, "-", "_")
	}); err != nil {
		return u, usagef("%v", err)
	}
	u, err := r.Update.Over(file).Parse(func(f string) string { return "--" + f })
	if err != nil {
		return u, usagef("%v", err)
	}
	return u, nil
}

// operatorProxy is the proxy the operator set in sentinel's environment,
// sent with the nodes' fetches and probes (over SSH their login
// environment does not have it); nil when none is set, and the nodes keep
// their own.
func operatorProxy() *release.ProxySettings {
	if ps := release.EnvironmentProxy(); ps.Set() {
		return &ps
	}
	return nil
}
