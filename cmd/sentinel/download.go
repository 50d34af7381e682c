package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// runDownloadOnly fills the cache node, while the cluster runs normally:
// every artifact the upgrade will need (verified by the daemon as it
// fetches) and the channel documents as published, so that a later
// `sentinel upgrade --cache-ip` needs no upstream. No node changes.
func runDownloadOnly(ctx context.Context, o upgradeOptions, inv *cluster.Inventory, tr map[string]cluster.Transport, target, cacheURL string, log *zap.Logger, progress rollout.Progress, ignore preflight.IgnoreSet) error {
	token, err := cacheToken(inv)
	if err != nil {
		return err
	}
	plan, ch, err := planUpgrade(ctx, inv, tr, target, o.force, "download-only", planSource{channel: inv.Channel, trust: o.metadataTrust(log), only: o.only, roleOrder: o.roleOrder})
	if err != nil {
		return err
	}
	if !o.dryRun {
		if err := runPreflight(ctx, o, rollout.PreflightInput{Inventory: inv, Transports: tr, Plan: plan, ChannelURL: inv.Channel,
			DownloadOnly: true, CacheURL: cacheURL, Runs: rollout.Runs{Dir: inv.State()}, Ignore: ignore}, log); err != nil {
			return err
		}
	}
	arts := plan.Artifacts()
	// The target release's patches travel with it: after the upgrade,
	// `sentinel patch status|install --cache-ip` needs no upstream either.
	cat, err := ch.Patches(ctx, plan.To)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, a := range arts {
		seen[a.SHA256] = true
	}
	for _, p := range cat.Patches {
		for _, c := range p.Components {
			if !seen[c.Artifact.SHA256] {
				seen[c.Artifact.SHA256] = true
				arts = append(arts, c.Artifact)
			}
		}
	}
	var total int64
	req := cache.PrefetchRequest{}
	for _, a := range arts {
		req.Artifacts = append(req.Artifacts, cache.PrefetchArtifact{URL: a.URL, SHA256: a.SHA256, Size: a.Size})
		total += a.Size
	}
	build, hasBuild, err := sentinelBuildForCache(ctx, ch, !o.dryRun)
	if err != nil {
		return err
	}
	if hasBuild { // so that a later run with --cache-ip updates sentinel from the cache
		req.Artifacts = append(req.Artifacts, cache.PrefetchArtifact{URL: build.Artifact.URL, SHA256: build.Artifact.SHA256, Size: build.Artifact.Size})
		total += build.Artifact.Size
	}
	if err := addDocuments(&req, ch); err != nil {
		return err
	}
	paths := req.Metadata
	if o.dryRun {
		fmt.Fprintf(o.stdout, "Would fill the cache %s with %d artifacts (%s) and %d documents for %s -> %s.\n", cacheURL, len(arts), humanBytes(total), len(paths), plan.From, plan.To)
		return nil
	}
	log.Info("download-only", zap.String("cache", cacheURL), zap.Int("artifacts", len(arts)), zap.Int64("bytes", total))
	if o.output == "text" {
		fmt.Fprintf(o.stdout, "Filling the cache %s: %d artifacts (%s) and %d documents for %s -> %s\n", cacheURL, len(arts), humanBytes(total), len(paths), plan.From, plan.To)
	}
	names := map[string]rollout.Step{}
	for _, np := range plan.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				names[s.Request.Artifact.SHA256] = s
			}
		}
	}
	if hasBuild {
		names[build.Artifact.SHA256] = rollout.Step{ID: "sentinel-" + build.Version, Component: "sentinel", Version: build.Version}
	}
	client := &cache.Client{BaseURL: cacheURL, Token: token}
	res, err := client.Prefetch(ctx, req, (&prefetchPrinter{progress: progress, names: names}).event)
	o.closeProgress() // flush the bars before the summary
	if err != nil {
		return err
	}
	log.Info("download-only done", zap.Int("fetched", res.Fetched), zap.Int("cached", res.Cached))
	if o.output == "text" {
		fmt.Fprintf(o.stdout, "The cache holds everything for %s: %d fetched now, %d already there. Upgrade later with `sentinel upgrade %s --cache-ip %s`.\n",
			plan.To, res.Fetched, res.Cached, plan.To, o.cacheIP)
	} else {
		return newJSONProgress(o.stdout).emitResult("download-only", res)
	}
	return nil
}

// cacheToken is the bearer token of the cache daemon's prefetch API.
func cacheToken(inv *cluster.Inventory) (string, error) {
	if t := os.Getenv("SENTINEL_CACHE_TOKEN"); t != "" {
		return t, nil
	}
	if inv.Cache == nil || inv.Cache.TokenFile == "" {
		return "", usagef("no token for the cache daemon's prefetch API: set $SENTINEL_CACHE_TOKEN, or cache.token_file in %s", inv.Path())
	}
	data, err := os.ReadFile(inv.Cache.TokenFile)
	if err != nil {
		return "", usagef("reading the cache token: %v", err)
	}
	return strings.TrimSpace(string(data)), nil
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

// addDocuments puts every channel document read so far (and its
// signature) into the prefetch request, so the cache node serves them as
// published.
func addDocuments(req *cache.PrefetchRequest, ch *release.Channel) error {
	docs, err := ch.Documents()
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(docs))
	for p := range docs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		req.Metadata = append(req.Metadata, cache.PrefetchMetadata{Path: p, ContentBase64: base64.StdEncoding.EncodeToString(docs[p])})
	}
	return nil
}
