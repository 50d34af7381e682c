package cache

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

// PrefetchRequest is the body of POST /prefetch: names, nothing else. The
// daemon reads the channel from its own upstream, verifies it from its
// own root (trust_root), and fetches only the targets the verified
// metadata names for them. A URL, a digest or a path has no field to go
// in: strict decoding refuses any other field, and a name is only ever
// looked up among those the verified channel lists.
type PrefetchRequest struct {
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

// maxPrefetchNames bounds the names of one request: an upgrade names its
// hops, one catalog and one build.
const maxPrefetchNames = 256

// maxEchoedName bounds how much of a name an error repeats.
const maxEchoedName = 80

// prefetchTarget is one artifact the verified channel names, at its
// upstream URL.
type prefetchTarget struct {
	url    string
	sha256 string
	size   int64
}

// errChannelUnreadable is what a requester learns when the daemon cannot
// read or verify its channel: the detail (addresses, TLS, the refused
// document) goes to the daemon's log, for its operator.
var errChannelUnreadable = errors.New("the cache daemon cannot read or verify the channel at its upstream: its log says why (check upstream, proxy and trust_root in its configuration); nothing fetched")

// canPrefetch reports whether the daemon can fill itself: it holds the
// channel's root and has an upstream and a channel directory. Without
// them prefetch is refused; there is no other way to fill it over HTTP.
func (s *Server) canPrefetch() bool {
	return len(s.cfg.Root) > 0 && s.upstream != nil && s.cfg.ChannelDir != ""
}

// prefetchDisabled says why a daemon with a token takes no prefetch.
const prefetchDisabled = "prefetch is disabled: this cache daemon fetches by name only, from the channel it verifies itself, and its configuration lacks trust_root (the channel's root, as the cluster file's trust.root) or upstream (the channel's URL): set both and restart it"

// resolvePrefetch turns a request into what to fetch and the channel
// files to write, through the channel the daemon verifies. Its errors
// echo the request's names and say nothing of anything else.
func (s *Server) resolvePrefetch(ctx context.Context, req *PrefetchRequest) ([]prefetchTarget, []metaFile, error) {
	if n := len(req.Releases) + len(req.Patches); n == 0 && req.Sentinel == nil {
		return nil, nil, errors.New("the request names nothing: give releases, patches or sentinel; nothing fetched")
	} else if n > maxPrefetchNames {
		return nil, nil, fmt.Errorf("the request names %d releases and patches; at most %d", n, maxPrefetchNames)
	}
	c, err := channel.Open(ctx, channel.Config{URL: s.upstream.String() + "/", Anchor: s.cfg.Root,
		StateDir: filepath.Join(s.cfg.Store.Dir, "trust"), HTTP: s.upstreamClient()})
	if err != nil {
		s.logf("cache: prefetch: verifying the channel at %s: %v", s.upstream, err)
		return nil, nil, errChannelUnreadable
	}
	defer c.Close()
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		s.logf("cache: prefetch: reading the channel's index at %s: %v", s.upstream, err)
		return nil, nil, errChannelUnreadable
	}
	if err := offered(ch.Index, req); err != nil {
		return nil, nil, err
	}
	arts, err := s.namedArtifacts(ctx, ch, req)
	if err != nil {
		return nil, nil, err
	}
	files, err := c.Files(ctx)
	if err != nil {
		s.logf("cache: prefetch: reading the channel's files at %s: %v", s.upstream, err)
		return nil, nil, errChannelUnreadable
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

// offered refuses a release name the verified index does not list, by
// lookup: whatever the name holds (a URL, a digest, a path), it is
// compared, never fetched or opened, and the refusal reads the same.
func offered(ix *release.Index, req *PrefetchRequest) error {
	for _, v := range append(append([]string(nil), req.Releases...), req.Patches...) {
		if _, ok := ix.Entry(v); !ok {
			return fmt.Errorf("release %s is not offered by the channel this cache verifies (it offers: %s); nothing fetched",
				echoName(v), strings.Join(ix.Versions(), ", "))
		}
	}
	return nil
}

// echoName quotes a requested name, cut short.
func echoName(v string) string {
	if len(v) > maxEchoedName {
		v = v[:maxEchoedName] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// namedArtifacts lists the artifacts of what req asks for, each at its
// verified target's URL.
func (s *Server) namedArtifacts(ctx context.Context, ch *release.Channel, req *PrefetchRequest) ([]prefetchTarget, error) {
	var out []prefetchTarget
	seen := map[string]bool{}
	add := func(a release.Artifact) {
		if !seen[a.SHA256] {
			seen[a.SHA256] = true
			out = append(out, prefetchTarget{url: a.URL, sha256: a.SHA256, size: a.Size})
		}
	}
	for _, v := range req.Releases {
		m, err := ch.Manifest(ctx, v)
		if err != nil {
			s.logf("cache: prefetch: the manifest of %s: %v", v, err)
			return nil, fmt.Errorf("the channel's manifest of release %s cannot be read or verified: the daemon's log says why; nothing fetched", v)
		}
		for _, comp := range m.Components {
			add(comp.Artifact)
		}
	}
	for _, v := range req.Patches {
		cat, err := ch.Patches(ctx, v)
		if err != nil {
			s.logf("cache: prefetch: the patch catalog of %s: %v", v, err)
			return nil, fmt.Errorf("the channel's patch catalog of release %s cannot be read or verified: the daemon's log says why; nothing fetched", v)
		}
		for _, p := range cat.Patches {
			for _, pc := range p.Components {
				add(pc.Artifact)
			}
		}
	}
	if p := req.Sentinel; p != nil {
		builds, found, err := ch.SentinelBuilds(ctx)
		if err != nil {
			s.logf("cache: prefetch: the sentinel builds: %v", err)
			return nil, errors.New("the channel's sentinel builds cannot be read or verified: the daemon's log says why; nothing fetched")
		}
		var b release.SentinelBuild
		ok := found
		if found {
			b, ok = builds.Newest(p.OS, p.Arch)
		}
		if !ok {
			return nil, fmt.Errorf("the channel this cache verifies lists no sentinel build for %s/%s; nothing fetched", echoName(p.OS), echoName(p.Arch))
		}
		add(b.Artifact)
	}
	return out, nil
}

// fetchFailure says in general terms why an artifact the channel names
// could not be fetched, and what to do; the detail (addresses,
// connection errors, what came back) goes to the daemon's log only.
func fetchFailure(err error) string {
	var dm *DigestMismatchError
	var sm *SizeMismatchError
	var de *diskError
	switch {
	case errors.Is(err, ErrServerClosed):
		return "the cache daemon is shutting down: run the prefetch again once it is back"
	case errors.As(err, &dm), errors.As(err, &sm):
		return "what the upstream sent does not match the size or hash the channel signs, so it was not stored: the upstream (or a proxy between) serves other bytes; tell the channel's publisher, or fix the proxy, then run the prefetch again"
	case errors.As(err, &de):
		return "the cache node could not write it to its disk (full, or cache_dir not writable): see /readyz and the daemon's log, then run the prefetch again"
	default:
		return "the cache daemon could not fetch it from its upstream: its log says why (check upstream and proxy in its configuration); run the prefetch again, finished downloads are kept"
	}
}
