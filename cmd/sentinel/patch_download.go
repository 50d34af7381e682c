package main

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/rollout"
)

// runPatchDownloadOnly fills the cache node with the artifacts of the
// named patches (all of the release's without names) and the channel
// documents they need (index, manifest, patch catalog), read from the
// upstream, so that a later `sentinel patch install --cache-ip` needs no
// upstream. No node changes.
func runPatchDownloadOnly(ctx context.Context, o *patchOptions, pc *patchContext, names []string, progress rollout.Progress, closeProgress func()) error {
	token, err := cacheToken(pc.inv)
	if err != nil {
		return err
	}
	// The metadata comes from the upstream: the cache may not hold it yet.
	pc.channelURL = pc.inv.Channel
	cacheURL := pc.cacheURL
	pc.cacheURL = ""
	if err := pc.read(ctx); err != nil {
		return err
	}
	req := cache.PrefetchRequest{}
	stepsByDigest := map[string]rollout.Step{}
	var total int64
	for _, name := range names {
		if _, ok := pc.catalog.Patch(name); !ok {
			return usagef("release %s has no patch %q", pc.release, name)
		}
	}
	for _, p := range pc.catalog.Patches {
		if len(names) > 0 && !slices.Contains(names, p.Name) {
			continue
		}
		for _, c := range p.Components {
			if _, dup := stepsByDigest[c.Artifact.SHA256]; dup {
				continue
			}
			stepsByDigest[c.Artifact.SHA256] = rollout.Step{ID: p.Name + "/" + c.Name + "/fetch", Component: c.Name, Version: c.Version}
			req.Artifacts = append(req.Artifacts, cache.PrefetchArtifact{URL: c.Artifact.URL, SHA256: c.Artifact.SHA256, Size: c.Artifact.Size})
			total += c.Artifact.Size
		}
	}
	if err := addDocuments(&req, pc.channel); err != nil {
		return err
	}
	paths := req.Metadata
	if o.dryRun {
		fmt.Fprintf(o.stdout, "Would fill the cache %s with %d patch artifacts (%s) and %d documents of release %s.\n", cacheURL, len(req.Artifacts), humanBytes(total), len(paths), pc.release)
		return nil
	}
	pc.log.Info("patch download-only", zap.String("cache", cacheURL), zap.Int("artifacts", len(req.Artifacts)))
	if o.output == "text" {
		fmt.Fprintf(o.stdout, "Filling the cache %s: %d patch artifacts (%s) and %d documents of release %s\n", cacheURL, len(req.Artifacts), humanBytes(total), len(paths), pc.release)
	}
	client := &cache.Client{BaseURL: cacheURL, Token: token}
	res, err := client.Prefetch(ctx, req, (&prefetchPrinter{progress: progress, names: stepsByDigest}).event)
	closeProgress()
	if err != nil {
		return err
	}
	if o.output == "json" {
		return newJSONProgress(o.stdout).emitResult("download-only", res)
	}
	fmt.Fprintf(o.stdout, "The cache holds the patches of %s: %d fetched now, %d already there. Install them with `sentinel patch install --cache-ip %s`.\n", pc.release, res.Fetched, res.Cached, o.cacheIP)
	return nil
}
