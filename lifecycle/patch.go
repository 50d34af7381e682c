package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// PatchOptions are what only a patch run takes.
type PatchOptions struct {
	Kind         string   // patches.KindInstall or patches.KindRevert
	Names        []string // none: every pending (installed, for revert) patch
	Reinstall    bool     // install also where node.json records the patch
	Nodes        []string // --node
	Local        bool     // --local
	NoRestart    bool
	DrainTimeout time.Duration
}

// patchRead is the core node's release and its patch catalog.
type patchRead struct {
	channel  *release.Channel
	release  string
	catalog  *release.Catalog
	manifest *release.Manifest
	// unanswered: the nodes that did not tell their facts (the plan says
	// which of them it can do without).
	unanswered map[string]error
}

// readPatches reads the channel, the nodes' facts and the catalog of the
// core node's release, and accepts the metadata.
func readPatches(ctx context.Context, r *Run) (*patchRead, error) {
	ch, err := r.Channel(ctx)
	if err != nil {
		return nil, err
	}
	unanswered := r.GatherSomeFacts(ctx)
	core := r.Inventory.Core()
	cf := r.Facts[core.Name]
	if err := unanswered[core.Name]; cf == nil && err != nil {
		return nil, fmt.Errorf("node %s (the core node) did not answer: %w. A patch run needs its facts, whichever nodes it patches: "+
			"the core's release chooses the patch catalog. Bring it back and run again", core.Name, err)
	}
	if cf == nil || cf.Record == nil {
		problem := "no facts"
		if cf != nil {
			problem = cf.RecordError
		}
		return nil, &rollout.UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", core.Name, problem)}
	}
	pr := &patchRead{channel: ch, release: cf.Record.Release, unanswered: unanswered}
	if pr.catalog, err = ch.Patches(ctx, pr.release); err != nil {
		return nil, r.Source.Explain(err)
	}
	if pr.manifest, err = ch.Manifest(ctx, pr.release); err != nil {
		return nil, r.Source.Explain(err)
	}
	return pr, nil
}

// warnUnanswered says which nodes a planned run goes on without.
func warnUnanswered(r *Run, unanswered map[string]error) {
	for _, n := range r.Inventory.Nodes {
		if err := unanswered[n.Name]; err != nil {
			r.warn(fmt.Sprintf("node %s did not answer (%v); this run does not concern it and goes on without it. Check it before the next whole-cluster run", n.Name, err))
		}
	}
}

// everyNode: status and mark speak of every node, so each must answer.
func (pr *patchRead) everyNode(inv *cluster.Inventory) error {
	for _, n := range inv.Nodes {
		if err := pr.unanswered[n.Name]; err != nil {
			return fmt.Errorf("reading node facts: %w", err)
		}
	}
	return nil
}

// selectNodes turns --node and --local into node names.
func (p PatchOptions) selectNodes(inv *cluster.Inventory) ([]string, error) {
	if p.Local && len(p.Nodes) > 0 {
		return nil, usagef("--local and --node contradict each other")
	}
	if !p.Local {
		return p.Nodes, nil
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

// Patch installs (or reinstalls, or reverts) patches as a journaled run.
func Patch(p PatchOptions) *Job {
	verb := patches.Verb(p.Kind)
	var catalog *release.Catalog
	return &Job{
		Kind:   p.Kind,
		Fill:   "sentinel patch install --download-only --cache-ip HOST",
		Advice: rollout.Advice{Resume: "sentinel patch " + verb + " --resume", Rerun: "sentinel patch " + verb},
		Plan: func(ctx context.Context, r *Run) (*rollout.Plan, error) {
			only, err := p.selectNodes(r.Inventory)
			if err != nil {
				return nil, err
			}
			pr, err := readPatches(ctx, r)
			if err != nil {
				return nil, err
			}
			if len(pr.catalog.Patches) == 0 {
				r.Printer.Textf("Release %s has no patches: nothing to %s.\n", pr.release, verb)
				return nil, errDone
			}
			catalog = pr.catalog
			in := patches.PlanInput{Inventory: r.Inventory, Facts: r.Facts, Catalog: pr.catalog, Manifest: pr.manifest, Names: p.Names, Only: only,
				NoRestart: p.NoRestart, Reinstall: p.Reinstall, RunID: r.ID, CacheURL: r.Source.Cache, DrainDeadline: p.DrainTimeout,
				Unanswered: pr.unanswered}
			planFor := patches.MakeInstallPlan
			if p.Kind == patches.KindRevert {
				planFor = patches.MakeRevertPlan
			}
			plan, err := planFor(in)
			if err == nil {
				warnUnanswered(r, pr.unanswered)
			}
			return plan, err
		},
		NothingToDo: func(r *Run) error {
			if r.Printer.JSON() {
				return r.Printer.Result("patch-"+verb, map[string]any{"nothing_to_do": true, "plan": r.Plan})
			}
			r.Printer.Textf("%s", nothingToDo(r.Plan, verb))
			return nil
		},
		Stage: func(ctx context.Context, r *Run) error { return prefetchPatches(ctx, r, catalog) },
		Question: func(r *Run) (string, string) {
			return strings.ToUpper(verb[:1]) + verb[1:] + " these patches? [y/N] ",
				fmt.Sprintf("no terminal to ask for confirmation: pass --yes to %s %s on %s", verb, strings.Join(r.Plan.Patches, ", "), strings.Join(r.Plan.WorkingNodes(), ", "))
		},
		Started: func(r *Run) {
			if !r.Printer.JSON() {
				r.Printer.Textf("Run %s: %s %s on %s (release %s)\n", r.ID, map[string]string{"install": "installing", "revert": "reverting"}[verb],
					strings.Join(r.Plan.Patches, ", "), strings.Join(r.Plan.WorkingNodes(), ", "), r.Plan.To)
			}
		},
		Finished: func(r *Run, err error) error {
			r.logEnd(err)
			if err != nil || r.Printer.JSON() {
				return err
			}
			done := map[string]string{"install": "Installed", "revert": "Reverted"}[patches.Verb(r.Plan.Kind)]
			r.Printer.Textf("%s %s on %s. `sentinel patch status` shows every patch.\n", done, strings.Join(r.Plan.Patches, ", "), strings.Join(r.Plan.WorkingNodes(), ", "))
			if restartsNothing(r.Plan) {
				r.Printer.Textf("Nothing was restarted (--no-restart): the running processes keep the old version until they are restarted.\n")
			}
			return nil
		},
		Resumable: func(r *Run, last *rollout.Run) error {
			switch {
			case last == nil:
				return usagef("there is no run to resume in %s", r.Inventory.State())
			case !patches.IsPatchRun(last.Plan) && last.Finished():
				return usagef("the last run, %s, was an upgrade and it ended: there is no patch run to resume", last.ID)
			case !patches.IsPatchRun(last.Plan):
				return usagef("the unfinished run %s is an upgrade, not a patch run: resume it with `sentinel upgrade --resume`", last.ID)
			}
			return nil
		},
		Unfinished: func(last *rollout.Run) string {
			how := "sentinel upgrade --resume"
			if patches.IsPatchRun(last.Plan) {
				how = "sentinel patch " + patches.Verb(last.Plan.Kind) + " --resume"
			}
			return "Finish it first with `" + how + "`"
		},
		Done: func(last *rollout.Run) string { return strings.Join(last.Plan.Patches, ", ") + " done" },
		Summary: func(plan *rollout.Plan) string {
			return "patch " + patches.Verb(plan.Kind) + " of " + strings.Join(plan.Patches, ", ")
		},
		ResumeSource: func(source.Fetch) string { return "" },
	}
}

// PatchDownloadOnly fills the cache node with the artifacts of the named
// patches (all of the release's without names) and the channel documents
// they need (index, manifest, patch catalog), read from the upstream, so
// that a later `sentinel patch install --cache-ip` needs no upstream. No
// node changes.
func PatchDownloadOnly(p PatchOptions) *Job {
	var f *fill
	var rel string
	return &Job{
		Kind: "patch-download-only", DownloadOnly: true, SkipPreflight: true,
		NeedsCache: "--download-only needs --cache-ip (and no --resume): it fills the cache node, from which a later `sentinel patch install --cache-ip IP` runs",
		Plan: func(ctx context.Context, r *Run) (*rollout.Plan, error) {
			pr, err := readPatches(ctx, r)
			if err != nil {
				return nil, err
			}
			rel = pr.release
			f, err = patchFill(ctx, r, pr, p.Names)
			return &rollout.Plan{From: rel, To: rel}, err
		},
		DryRun: func(r *Run) error {
			r.Printer.Textf("Would fill the cache %s with %d patch artifacts (%s) and the channel's documents of release %s.\n", r.FillCache, len(f.names), preflight.FormatBytes(f.total), rel)
			return errDone
		},
		Execute: func(ctx context.Context, r *Run) error {
			if !r.Printer.JSON() {
				r.Printer.Textf("Filling the cache %s: %d patch artifacts (%s) and the channel's documents of release %s\n", r.FillCache, len(f.names), preflight.FormatBytes(f.total), rel)
			}
			res, err := r.prefetch(ctx, f)
			if err == nil && !r.Printer.JSON() {
				r.Printer.Textf("The cache holds the patches of %s: %d fetched now, %d already there. Install them with `sentinel patch install --cache-ip %s`.\n", rel, res.Fetched, res.Cached, r.CacheAddr)
			}
			return err
		},
		Finished: func(_ *Run, err error) error { return err },
	}
}

// prefetchPatches puts every artifact of the plan in the node caches of
// the nodes that need it, verified, before any change: a patch whose
// artifact is missing or does not match its sha256 is refused with nothing
// installed. The run's fetch steps then find them in place.
func prefetchPatches(ctx context.Context, r *Run, catalog *release.Catalog) error {
	src := r.Plan.DefaultSource()
	if src.CacheURL == "" && !src.Offline {
		src.Registry = r.Source.RegistryFetch()
		src.Next, src.Bases = r.Source.Fallbacks(), r.Source.Bases()
	}
	src.CachePeer = r.Source.Peer
	var mu sync.Mutex
	var problems []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, np := range r.Plan.Nodes {
		if np.Skip != "" {
			continue
		}
		g.Go(func() error {
			for _, s := range np.Steps {
				if s.Op != steps.OpFetch {
					continue
				}
				var res steps.Result
				req := rollout.FetchRequest(src, s.Request)
				if rollout.NeedsProxy(req) {
					req.Proxy = operatorProxy()
				}
				err := r.Transports[np.Node].Call(gctx, steps.OpFetch, req, &res, nil)
				if err != nil {
					mu.Lock()
					problems = append(problems, &PatchArtifactError{Node: np.Node, Field: patches.ArtifactField(catalog, s.Request.Artifact.SHA256), Err: err})
					mu.Unlock()
					return nil // this node's other artifacts wait: one error per node is enough
				}
				r.Printer.Logf(np.Node, "%s %s: %s", s.Component, s.Version, res.Note)
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

// PatchArtifactError: a patch's artifact could not be fetched or verified
// on a node, before anything changed.
type PatchArtifactError struct {
	Node, Field string
	Err         error
}

func (e *PatchArtifactError) Error() string {
	msg := e.Err.Error()
	var ae *cluster.AgentError
	if errors.As(e.Err, &ae) {
		msg = ae.Message
	}
	return fmt.Sprintf("node %s: %s: %s; nothing was installed (fix the channel's patch catalog or artifact, then run again)", e.Node, e.Field, msg)
}
func (e *PatchArtifactError) Unwrap() error { return e.Err }

func nothingToDo(plan *rollout.Plan, verb string) string {
	var b strings.Builder
	var already []string
	for _, np := range plan.Nodes {
		if strings.HasPrefix(np.Skip, "already installed") {
			already = append(already, np.Node)
		}
	}
	if verb == "install" && len(already) > 0 {
		fmt.Fprintf(&b, "%s already installed on every node it concerns (%s): nothing to install.\n", strings.Join(plan.Patches, ", "), strings.Join(already, ", "))
	} else {
		fmt.Fprintf(&b, "Nothing to %s.\n", verb)
	}
	for _, np := range plan.Nodes {
		fmt.Fprintf(&b, "  %s: %s\n", np.Node, np.Skip)
	}
	return b.String()
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

// PatchStatus reads what the status of the core node's release's patches
// is on every node. It changes nothing, not even the trusted versions.
func PatchStatus(ctx context.Context, inv *cluster.Inventory, env Env, o Options) (*patches.Status, error) {
	var st *patches.Status
	err := query(ctx, inv, env, o, Patch(PatchOptions{}), func(ctx context.Context, r *Run) error {
		pr, err := readPatches(ctx, r)
		if err == nil {
			err = pr.everyNode(r.Inventory)
		}
		if err == nil {
			st = patches.ComputeStatus(pr.catalog, pr.manifest, r.Inventory, r.Facts)
		}
		return err
	})
	return st, err
}

// Marked is what `patch mark` changed on one node.
type Marked struct {
	Node    string `json:"node"`
	Changed bool   `json:"changed"`
	Note    string `json:"note"`
}

// PatchMark changes what node.json says about a patch, and nothing else,
// under the run lock.
func PatchMark(ctx context.Context, inv *cluster.Inventory, env Env, o Options, p PatchOptions, name string, installed bool) ([]Marked, error) {
	var out []Marked
	err := query(ctx, inv, env, o, Patch(p), func(ctx context.Context, r *Run) error {
		only, err := p.selectNodes(inv)
		if err != nil {
			return err
		}
		for _, n := range only {
			if _, ok := inv.Node(n); !ok {
				return usagef("--node %s: the cluster file has no such node", n)
			}
		}
		if err := r.takeLock(ctx); err != nil {
			return err
		}
		if last := r.Last; last != nil && !last.Finished() {
			return usagef("run %s did not finish (it stopped at %s): finish it before changing records by hand", last.ID, last.Where())
		}
		pr, err := readPatches(ctx, r)
		var targets []cluster.Node
		switch {
		case channelUnreachable(err):
			pr, targets, err = markWithoutCatalog(ctx, r, only, name, installed, err)
		case err == nil:
			if err = pr.everyNode(r.Inventory); err == nil {
				targets, err = markTargets(r, pr, only, name)
			}
		}
		if err != nil {
			return err
		}
		for _, n := range targets {
			var res steps.Result
			req := steps.Request{Patch: name, PatchInstalled: installed, Release: pr.release}
			if err := r.Transports[n.Name].Call(ctx, steps.OpRecordPatch, req, &res, nil); err != nil {
				return fmt.Errorf("node %s: recording patch %s: %w (nodes before it in this list are already marked: %v)", n.Name, name, err, out)
			}
			r.Log.Info("patch marked", zap.String("node", n.Name), zap.String("patch", name), zap.Bool("installed", installed), zap.String("note", res.Note))
			out = append(out, Marked{Node: n.Name, Changed: res.Changed, Note: res.Note})
		}
		return nil
	})
	return out, err
}

func markTargets(r *Run, pr *patchRead, only []string, name string) ([]cluster.Node, error) {
	p, ok := pr.catalog.Patch(name)
	if !ok {
		return nil, usagef("release %s has no patch %q", pr.release, name)
	}
	var targets []cluster.Node
	for _, n := range r.Inventory.Nodes {
		f := r.Facts[n.Name]
		switch {
		case len(only) > 0 && !slices.Contains(only, n.Name):
		case !p.AppliesTo(n.Roles):
			if len(only) > 0 {
				return nil, usagef("patch %s affects roles %s; node %s has %s", name, strings.Join(p.Roles, ", "), n.Name, strings.Join(n.Roles, ", "))
			}
		case f == nil || f.Record == nil || f.Record.Release != pr.release:
			if len(only) > 0 {
				return nil, usagef("node %s is not on release %s: patch %s does not apply to it", n.Name, pr.release, name)
			}
		default:
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		return nil, usagef("no node of roles %s to mark", strings.Join(p.Roles, ", "))
	}
	return targets, nil
}

// query runs do with the log, the source and the nodes of a command that
// is not a run (status, mark, preflight).
func query(ctx context.Context, inv *cluster.Inventory, env Env, o Options, job *Job, do func(context.Context, *Run) error) error {
	o.DryRun = true // changes no trusted version
	r, done, err := open(inv, env, o, job)
	if err != nil {
		return err
	}
	defer done()
	if err := r.chooseSource(ctx); err != nil {
		return err
	}
	if err := r.dial(ctx); err != nil {
		return err
	}
	return do(ctx, r)
}

// Preflight checks every node for the upgrade u would plan (for a
// download-only run: the cache node), changing nothing.
func Preflight(ctx context.Context, inv *cluster.Inventory, env Env, o Options, u UpgradeOptions, downloadOnly bool) (*preflight.Report, error) {
	var rep *preflight.Report
	job := Upgrade(u)
	job.DownloadOnly = downloadOnly
	err := query(ctx, inv, env, o, job, func(ctx context.Context, r *Run) error {
		r.ID = "preflight"
		plan, err := u.plan(ctx, r)
		if err != nil {
			return err
		}
		in := rollout.PreflightInput{Inventory: inv, Transports: r.Transports, Plan: plan, ChannelURL: r.Source.ChannelURL(),
			DownloadOnly: downloadOnly, CacheURL: r.FillCache, Runs: r.Runs, Ignore: o.Ignore, CachePeer: r.Source.Peer}
		rep = rollout.Preflight(ctx, in)
		return nil
	})
	return rep, err
}
