package cache

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

// PrefetchNames asks a daemon that holds the channel's root (ServerConfig.
// Root) for what the verified channel lists, by name: the daemon reads
// the channel from its own upstream, verifies it as a cluster does, and
// fetches only the targets the verified metadata names.
type PrefetchNames struct {
	// Releases whose manifests' artifacts to fetch.
	Releases []string `json:"releases,omitempty"`
	// Patches names releases whose patch catalogs' artifacts to fetch.
	Patches []string `json:"patches,omitempty"`
	// Sentinel asks for the newest sentinel build for a platform.
	Sentinel *Platform `json:"sentinel,omitempty"`
}

// Platform is a GOOS and GOARCH.
type Platform struct {
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// resolvePrefetch turns a request into what to fetch and write. Without a
// root the daemon takes the request's URLs and documents as given (the
// token holder is trusted, and nodes verify what they install); with one
// it takes names only, resolved through the verified channel, and
// refuses an artifact the channel does not list.
func (s *Server) resolvePrefetch(ctx context.Context, req *PrefetchRequest) ([]PrefetchArtifact, []metaFile, error) {
	if len(s.cfg.Root) == 0 {
		return s.checkPrefetch(req)
	}
	if req.Names == nil {
		return nil, nil, fmt.Errorf("this cache holds the channel's root and fetches by name: ask for releases, patches and sentinel builds (\"names\"); upgrade the sentinel that asks")
	}
	if s.upstream == nil || s.cfg.ChannelDir == "" {
		return nil, nil, fmt.Errorf("this cache holds the channel's root but has no upstream or channel directory to fill")
	}
	c, err := channel.Open(ctx, channel.Config{URL: s.upstream.String() + "/", Anchor: s.cfg.Root,
		StateDir: filepath.Join(s.cfg.Store.Dir, "trust"), HTTP: s.upstreamClient()})
	if err != nil {
		return nil, nil, fmt.Errorf("verifying the channel at %s: %w", s.upstream, err)
	}
	defer c.Close()
	arts, err := namedArtifacts(ctx, c, req.Names)
	if err != nil {
		return nil, nil, err
	}
	listed := map[string]bool{}
	for _, a := range arts {
		listed[a.SHA256] = true
	}
	for i, a := range req.Artifacts {
		if !listed[a.SHA256] {
			return nil, nil, fmt.Errorf("artifacts[%d]: sha256 %s (%s) is not an artifact of what the verified channel lists for %s: refused, nothing fetched", i, a.SHA256, a.URL, req.Names)
		}
	}
	files, err := c.Files(ctx)
	if err != nil {
		return nil, nil, err
	}
	var metas []metaFile
	for p, data := range files {
		metas = append(metas, metaFile{path: p, data: data})
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].path < metas[j].path })
	sort.SliceStable(metas, func(i, j int) bool {
		return metas[i].path != "metadata/timestamp.json" && metas[j].path == "metadata/timestamp.json"
	})
	return arts, metas, nil
}

func (n *PrefetchNames) String() string {
	var parts []string
	if len(n.Releases) > 0 {
		parts = append(parts, "releases "+strings.Join(n.Releases, ", "))
	}
	if len(n.Patches) > 0 {
		parts = append(parts, "the patches of "+strings.Join(n.Patches, ", "))
	}
	if n.Sentinel != nil {
		parts = append(parts, "sentinel for "+n.Sentinel.OS+"/"+n.Sentinel.Arch)
	}
	return strings.Join(parts, "; ")
}

// namedArtifacts lists the artifacts of what names asks for, each at its
// verified target's URL; a name the channel does not list is an error.
func namedArtifacts(ctx context.Context, c *channel.Client, names *PrefetchNames) ([]PrefetchArtifact, error) {
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []PrefetchArtifact
	seen := map[string]bool{}
	add := func(a release.Artifact) {
		if !seen[a.SHA256] {
			seen[a.SHA256] = true
			out = append(out, PrefetchArtifact{URL: a.URL, SHA256: a.SHA256, Size: a.Size})
		}
	}
	for _, v := range names.Releases {
		m, err := ch.Manifest(ctx, v)
		if err != nil {
			return nil, err
		}
		for _, comp := range m.Components {
			add(comp.Artifact)
		}
	}
	for _, v := range names.Patches {
		cat, err := ch.Patches(ctx, v)
		if err != nil {
			return nil, err
		}
		for _, p := range cat.Patches {
			for _, pc := range p.Components {
				add(pc.Artifact)
			}
		}
	}
	if p := names.Sentinel; p != nil {
		builds, found, err := ch.SentinelBuilds(ctx)
		if err != nil {
			return nil, err
		}
		b, ok := builds.Newest(p.OS, p.Arch)
		if !found || !ok {
			return nil, fmt.Errorf("the channel lists no sentinel build for %s/%s", p.OS, p.Arch)
		}
		add(b.Artifact)
	}
	return out, nil
}
