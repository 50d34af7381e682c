package lifecycle

import (
	"context"
	"os"
	"runtime"
	"strings"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// fill is what a download-only run asks the cache node for: names only
// (releases, patch catalogs, a sentinel build). The daemon resolves them
// through the channel it verifies itself and fetches what that lists,
// with the channel's files; the artifacts listed here, from this run's
// own verified channel, only label the daemon's progress and size it.
type fill struct {
	req   cache.PrefetchRequest
	names map[string]rollout.Step // by sha256
	total int64
}

func (f *fill) add(a release.Artifact, name rollout.Step) {
	if _, dup := f.names[a.SHA256]; dup {
		return
	}
	f.names[a.SHA256] = name
	f.total += a.Size
}

// prefetch asks the cache daemon to fetch f, shown as the run's progress.
func (r *Run) prefetch(ctx context.Context, f *fill) (cache.PrefetchResult, error) {
	token, err := cacheToken(r)
	if err != nil {
		return cache.PrefetchResult{}, err
	}
	r.Log.Info("download-only", zap.String("cache", r.FillCache), zap.Strings("releases", f.req.Releases), zap.Strings("patches", f.req.Patches), zap.Int("artifacts", len(f.names)), zap.Int64("bytes", f.total))
	hc, err := r.Source.Peer.HTTPClient()
	if err != nil {
		return cache.PrefetchResult{}, err
	}
	client := &cache.Client{BaseURL: r.FillCache, Token: token, HTTP: hc, PlainHTTP: !r.Source.Peer.TLS()}
	res, err := client.Prefetch(ctx, f.req, (&prefetchPrinter{progress: &loggedProgress{next: r.Printer, log: r.Log}, names: f.names}).event)
	r.Printer.Close() // flush the bars before the summary
	if err != nil {
		return res, err
	}
	r.Log.Info("download-only done", zap.Int("fetched", res.Fetched), zap.Int("cached", res.Cached))
	return res, r.Printer.Result("download-only", res)
}

// cacheToken is the bearer token of the cache daemon's prefetch API.
func cacheToken(r *Run) (string, error) {
	if t := os.Getenv("SENTINEL_CACHE_TOKEN"); t != "" {
		return t, nil
	}
	inv := r.Inventory
	if inv.Cache == nil || inv.Cache.TokenFile == "" {
		return "", usagef("no token for the cache daemon's prefetch API: set $SENTINEL_CACHE_TOKEN, or cache.token_file in %s", inv.Path())
	}
	data, err := os.ReadFile(inv.Cache.TokenFile)
	if err != nil {
		return "", usagef("reading the cache token: %v", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// DownloadOnly fills the cache node, while the cluster runs normally, with
// every artifact the upgrade will need (verified by the daemon as it
// fetches), the target release's patches, the newest sentinel build and
// the channel documents as published, so that a later
// `sentinel upgrade --cache-ip` needs no upstream. No node changes.
func DownloadOnly(u UpgradeOptions) *Job {
	var f *fill
	job := Upgrade(u)
	job.Kind, job.DownloadOnly = "download-only", true
	job.NeedsCache = "--download-only needs --cache-ip: it fills the cache node's store, from which a later `sentinel upgrade --cache-ip IP` runs"
	job.Plan = func(ctx context.Context, r *Run) (*rollout.Plan, error) {
		r.ID = "download-only"
		u.SkipDownload = false
		plan, err := u.plan(ctx, r)
		if err != nil {
			return nil, err
		}
		f, err = upgradeFill(ctx, r, plan)
		return plan, err
	}
	job.NothingToDo, job.Question = nil, nil
	job.DryRun = func(r *Run) error {
		r.Printer.Textf("Would fill the cache %s with %d artifacts (%s) and the channel's documents for %s -> %s.\n", r.FillCache, len(f.names), preflight.FormatBytes(f.total), r.Plan.From, r.Plan.To)
		return errDone
	}
	job.Execute = func(ctx context.Context, r *Run) error {
		if !r.Printer.JSON() {
			r.Printer.Textf("Filling the cache %s: %d artifacts (%s) and the channel's documents for %s -> %s\n", r.FillCache, len(f.names), preflight.FormatBytes(f.total), r.Plan.From, r.Plan.To)
		}
		res, err := r.prefetch(ctx, f)
		if err == nil && !r.Printer.JSON() {
			r.Printer.Textf("The cache holds everything for %s: %d fetched now, %d already there. Upgrade later with `sentinel upgrade %s --cache-ip %s`.\n",
				r.Plan.To, res.Fetched, res.Cached, r.Plan.To, r.CacheAddr)
		}
		return err
	}
	job.Finished = func(_ *Run, err error) error { return err }
	return job
}

// upgradeFill lists what the cache node needs for the plan: its
// artifacts, the target release's patches (so that after the upgrade
// `sentinel patch status|install --cache-ip` needs no upstream either),
// the newest sentinel build (so that a later run with --cache-ip updates
// sentinel from the cache) and the documents.
func upgradeFill(ctx context.Context, r *Run, plan *rollout.Plan) (*fill, error) {
	ch, err := r.Channel(ctx)
	if err != nil {
		return nil, err
	}
	f := &fill{names: map[string]rollout.Step{}}
	for _, np := range plan.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				f.add(s.Request.Artifact, s)
			}
		}
	}
	cat, err := ch.Patches(ctx, plan.To)
	if err != nil {
		return nil, err
	}
	for _, p := range cat.Patches {
		for _, c := range p.Components {
			f.add(c.Artifact, rollout.Step{ID: p.Name + "/" + c.Name + "/fetch", Component: c.Name, Version: c.Version})
		}
	}
	build, hasBuild, err := newestBuild(ctx, ch)
	if err != nil {
		return nil, err
	}
	f.req = cache.PrefetchRequest{Releases: plan.Hops, Patches: []string{plan.To}}
	if hasBuild {
		f.add(build.Artifact, rollout.Step{ID: "sentinel-" + build.Version, Component: "sentinel", Version: build.Version})
		f.req.Sentinel = &cache.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	}
	return f, nil
}

// patchFill asks for the release's patch catalog. The daemon fetches the
// catalog's every artifact (it takes release names, not patch names), so
// every patch is listed to label its progress; names are checked here.
func patchFill(ctx context.Context, r *Run, pr *patchRead, names []string) (*fill, error) {
	for _, name := range names {
		if _, ok := pr.catalog.Patch(name); !ok {
			return nil, usagef("release %s has no patch %q", pr.release, name)
		}
	}
	f := &fill{names: map[string]rollout.Step{}}
	for _, p := range pr.catalog.Patches {
		for _, c := range p.Components {
			f.add(c.Artifact, rollout.Step{ID: p.Name + "/" + c.Name + "/fetch", Component: c.Name, Version: c.Version})
		}
	}
	f.req = cache.PrefetchRequest{Patches: []string{pr.release}}
	return f, nil
}

// prefetchPrinter renders the daemon's prefetch events through the same
// display as an upgrade: bars on a terminal, lines otherwise, JSON lines.
type prefetchPrinter struct {
	progress rollout.Progress
	names    map[string]rollout.Step
}

func (p *prefetchPrinter) event(ev cache.PrefetchEvent) {
	step, ok := p.names[ev.SHA256]
	if !ok {
		step = rollout.Step{ID: ev.Path}
	}
	tp := steps.FetchProgress{Digest: ev.SHA256}
	if ev.Bytes != nil {
		tp.Done = *ev.Bytes
	}
	if ev.Size != nil {
		tp.Total = *ev.Size
	}
	switch ev.Event {
	case "progress":
		if ev.SHA256 != "" && tp.Total > 0 {
			p.progress.Transfer("cache", step, tp)
		}
	case "done":
		tp.Final, tp.Done = true, tp.Total
		p.progress.Transfer("cache", step, tp)
		switch {
		case ev.SHA256 == "":
			p.progress.Logf("cache", "%s stored", ev.Path)
		case ev.Cached:
			p.progress.Logf("cache", "%s %s already in the cache", step.Component, step.Version)
		default:
			p.progress.Logf("cache", "%s %s fetched and verified", step.Component, step.Version)
		}
	case "error":
		tp.Final, tp.Failed = true, true
		p.progress.Transfer("cache", step, tp)
		what := ev.Path
		switch {
		case ev.SHA256 != "":
			what = step.Component + " " + step.Version
		case what == "":
			what = "channel documents"
		}
		p.progress.Logf("cache", "%s FAILED: %s", what, ev.Error)
	}
}
