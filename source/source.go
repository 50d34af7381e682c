// Package source is where a run's channel documents and artifacts come
// from: the upstream the cluster file names, or the cluster's cache daemon
// (--cache-ip). The daemon's URL layout, the choice of proxy and the
// verification of what is read live here and nowhere else: callers ask a
// Source for a channel, an artifact's URL or an HTTP client, and build no
// URL themselves.
package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

// Source is where one run reads the channel and the artifacts.
type Source struct {
	// Upstream is the channel repository's base URL, from the cluster file.
	Upstream string
	// Cache is the cache daemon's base URL (https://IP:PORT, or http://
	// where the cluster file asks for plain HTTP); "" reads the upstream.
	Cache string
	// Peer verifies the cache daemon (see cluster.Inventory.CachePeer).
	Peer cache.Peer
	// Trust verifies every document read (required: see Trust).
	Trust *Trust
	// Kept lets Open fall back to the channel kept in the trusted state
	// when no source answers (kept.go): the upgrade's window after staging.
	Kept bool
	// Fill is the command that fills the cache node with what this run
	// needs, for the advice of an error ("" when it has none).
	Fill string
	// Direct is the command that runs without the cache node, for a
	// cluster that reads a registry: --download-only cannot fill the cache
	// node there, so it is the advice when the cache lacks something.
	Direct string
	// Mirrors are channel URLs (http(s), file, oci://) tried in order
	// before the upstream; the next is tried when one does not answer or
	// fails with a server error, never when what it serves is refused.
	Mirrors []string
	// MirrorsFrom says where Mirrors were given, for messages ("": the
	// cluster file's mirrors).
	MirrorsFrom string
	// Registry: the CA and credentials of the registries (oci://).
	Registry oci.Settings

	read *opened
}

// FromCache says whether the run reads the cache daemon.
func (s Source) FromCache() bool { return s.Cache != "" }

// ChannelURL is the repository the channel is read from: the upstream (or
// the mirror Open chose), or the cache daemon's byte-for-byte copy of it.
func (s Source) ChannelURL() string {
	if s.Cache != "" {
		return cache.ChannelURL(s.Cache)
	}
	if s.read != nil {
		return s.read.url
	}
	return s.Upstream
}

// ArtifactURL is where this source serves an artifact: its target's URL
// upstream, the registry's blob by digest, or the cache daemon's copy by
// digest.
func (s Source) ArtifactURL(a release.Artifact) string {
	if s.Cache != "" {
		return cache.ArtifactURL(s.Cache, a.SHA256)
	}
	if rem := s.registry(); rem != nil {
		return rem.Ref.BlobURL(rem.Access.Scheme(), a.SHA256)
	}
	return a.URL
}

// HTTPClient reads this source: through http_proxy and the like for the
// upstream, directly for the cache daemon, which is on the cluster's own
// network. Slow peers fail in seconds, not minutes.
func (s Source) HTTPClient() *http.Client {
	if rem := s.registry(); rem != nil && s.Cache == "" {
		if c, err := rem.Access.HTTPClient(rem.Ref.Host); err == nil {
			return c
		}
	}
	if s.Cache != "" {
		if c, err := s.Peer.HTTPClient(); err == nil {
			return c
		}
		// Unreachable: Open refused the run first with the same error.
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = release.ProxyFromEnvironment
	if s.Cache != "" {
		t.Proxy = nil
	}
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t}
}

// String names the source for people.
func (s Source) String() string {
	if s.Cache != "" {
		return s.Cache
	}
	if s.read != nil && s.read.url != s.Upstream {
		return s.read.url
	}
	return "upstream"
}

// Open verifies the channel's metadata (root rotations, timestamp,
// snapshot, targets) and reads its index, from the first of the mirrors
// and the upstream that answers. A document the cache daemon lacks is a
// *CacheMissError saying how to fill it.
func (s *Source) Open(ctx context.Context) (*release.Channel, *channel.Client, error) {
	if s.Cache != "" {
		if _, err := cache.ClientTLS(s.Peer); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("cache: %v", err)}
		}
	}
	var passed, failed []string // with advice each, and without
	var last error
	for _, u := range s.candidates() {
		ch, c, rem, err := s.openAt(ctx, u)
		if err == nil {
			s.read = &opened{url: u, remote: rem, passed: passed}
			return ch, c, nil
		}
		if s.Cache == "" {
			err = channel.Named(err, s.origin(u))
		}
		if !unavailable(err) {
			return nil, nil, s.refusedAt(u, s.Explain(err))
		}
		passed = append(passed, s.tried(u, err, s.Explain(err).Error()))
		failed = append(failed, s.tried(u, err, s.what(err)))
		last = err
	}
	// No source answers: the channel as a run verified it earlier
	// (staging), kept in the trusted state (kept.go).
	if ch, c, ok := s.openKept(last, failed); ok {
		return ch, c, nil
	}
	if len(passed) == 1 {
		return nil, nil, s.Explain(last)
	}
	return nil, nil, &UnavailableError{Tried: failed, Last: s.Explain(last)}
}

// what says what happened at a source that did not answer, without the
// advice of its error, which UnavailableError gives once for them all.
func (s Source) what(err error) string {
	var fe *channel.FetchError
	if !errors.As(err, &fe) {
		return err.Error()
	}
	if p := release.ProxyFor(fe.URL); p != "" && s.Cache == "" {
		return fe.What() + " (through the proxy " + p + ")"
	}
	return fe.What()
}

// Explain turns what the cache daemon refused into what to do there: a
// document it lacks (*CacheMissError), or one that failed verification,
// whose refusal stays first and a *channel.Error.
func (s Source) Explain(err error) error {
	if err == nil {
		return nil
	}
	var fe *channel.FetchError
	if s.Cache == "" {
		if errors.As(err, &fe) {
			if p := release.ProxyFor(fe.URL); p != "" {
				return fmt.Errorf("%w (through the proxy %s from http_proxy/https_proxy: check it works)", err, p)
			}
		}
		return err
	}
	if ce := s.Peer.Refusal(strings.TrimPrefix(strings.TrimPrefix(s.Cache, "https://"), "http://"), err); ce != nil {
		return ce
	}
	var te *channel.Error
	if errors.As(err, &te) && s.Fill != "" {
		return fmt.Errorf("%w (read from the cache node %s: fill it again from the upstream with `%s` (`sentinel cache verify` there sets damaged artifacts aside), and if its files were changed there, find out who changed them)",
			err, s.Cache, s.Fill)
	}
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Status == 0 && fe.Err != nil {
		// Not the upstream's fault: the cluster's own cache daemon did not answer.
		return fmt.Errorf("the cache node %s does not answer (%v): is `sentinel cache serve` running there, and is --cache-ip right?", s.Cache, fe.Err)
	}
	if fe.Status != http.StatusNotFound {
		return err
	}
	return &CacheMissError{Cache: s.Cache, What: missing(fe.URL), Fill: s.Fill, Direct: s.Direct, Err: err}
}

// missing says what a URL of the cache's channel copy is, for people.
func missing(u string) string {
	dir, file := path.Split(u)
	what := "release " + path.Base(dir)
	switch {
	case strings.Contains(u, "/metadata/"):
		return "any channel documents"
	case !strings.Contains(u, "/releases/"):
		return "the channel's documents for this run"
	case strings.HasSuffix(file, "patches.json"):
		return "the patches of " + what
	}
	return what
}

// CacheMissError: the cache daemon does not hold a document the run needs.
// Nothing was changed.
type CacheMissError struct {
	Cache, What string
	Fill        string // the command that fills it
	// Direct: the cluster reads a registry, which --download-only cannot
	// put in the cache node; this command runs without the cache node.
	Direct string
	Err    error
}

func (e *CacheMissError) Error() string {
	if e.Direct != "" {
		return fmt.Sprintf("the cache node %s does not hold %s (%s), and it cannot be filled for this cluster: the cluster reads a registry, which --download-only does not put in a cache node. Run `%s` to read the registry (the mirrors) and the channel instead of the cache node; if the registry lacks the release, the same command with --download-only in place of --no-cache prints the `sentinel channel copy` command that fills it",
			e.Cache, e.What, e.cause(), e.Direct)
	}
	fill := e.Fill
	if fill == "" {
		fill = "sentinel upgrade VERSION --download-only --cache-ip HOST"
	}
	if u, err := url.Parse(e.Cache); err == nil && u.Host != "" {
		fill = strings.Replace(fill, "--cache-ip HOST", "--cache-ip "+u.Host, 1)
	}
	return fmt.Sprintf("the cache node %s does not hold %s: fill it first with `%s` (%s)", e.Cache, e.What, fill, e.cause())
}
func (e *CacheMissError) Unwrap() error { return e.Err }

// cause is what the daemon answered, without a reader's advice about the
// channel URL: the daemon answered, it lacks the file.
func (e *CacheMissError) cause() string {
	var fe *channel.FetchError
	if errors.As(e.Err, &fe) && fe.Status != 0 {
		return fmt.Sprintf("%s answered HTTP %d", fe.URL, fe.Status)
	}
	return e.Err.Error()
}

// AddressError is a cache address that is not IP[:PORT]: bad input.
type AddressError struct{ Msg string }

func (e *AddressError) Error() string { return e.Msg }

// CacheURL turns IP[:PORT] ([IPv6]:PORT) into the cache daemon's base URL.
// A host name is refused before any lookup: the docs address the cache
// node by IP, and a typo must not become a DNS query.
func CacheURL(addr string, defaultPort int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.Trim(addr, "[]"), strconv.Itoa(defaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", &AddressError{Msg: fmt.Sprintf("--cache-ip %q: %q is not a port", addr, port)}
	}
	if net.ParseIP(host) == nil {
		return "", &AddressError{Msg: fmt.Sprintf("--cache-ip %q is not IP[:PORT]: give the cache node's IP address, with its port if not %d", addr, defaultPort)}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// CacheBase gives the cache daemon's base URL the scheme the cluster file
// asks for: https when it pins a certificate or a CA, http only when it
// says plain_http. A resumed run's journaled URL goes through it too, so
// the cluster file of today decides.
func CacheBase(u string, p cache.Peer) string {
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		u = rest
	} else {
		u = strings.TrimPrefix(u, "https://")
	}
	return p.Scheme() + "://" + u
}

// CheckPeer refuses, before anything else reaches it, a cache daemon whose
// certificate is not the one the cluster file pins (a *cache.CertError).
// A daemon that does not answer is left to the reads that follow, which
// say so in their own terms.
func CheckPeer(ctx context.Context, base string, p cache.Peer) error {
	if !p.TLS() {
		return nil
	}
	c, err := p.HTTPClient()
	if err != nil {
		return &ConfigError{Msg: fmt.Sprintf("cache: %v", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cache.HealthURL(base), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	var ce *cache.CertError
	if errors.As(err, &ce) {
		return ce
	}
	if err == nil {
		resp.Body.Close()
	}
	return nil
}

// Fetch is where fetch steps take artifacts from. It is applied when a
// step runs, not when it is planned, so a resumed run may take what is
// left from elsewhere.
type Fetch struct {
	CacheURL string // the cache daemon: every artifact by digest, no proxy
	Offline  bool   // only what the node caches hold
	// CachePeer verifies the daemon; it travels in each fetch request, and
	// the node's agent checks the daemon's certificate itself.
	CachePeer cache.Peer
	// Registry: nodes fetch every artifact by digest from this registry
	// (the mirror or upstream the run opened the channel at), with its CA
	// and credentials sent in each fetch request, never journaled.
	Registry *Registry `json:"-"`
	// Next: where nodes fall back to, in order, for an artifact the source
	// above does not serve (Source.Fallbacks), and Bases, the channel's
	// base URLs, to find each artifact's path below them. Not journaled:
	// a resumed run computes them again.
	Next  []Alt    `json:"-"`
	Bases []string `json:"-"`
	// At names the http(s) or file mirror the planned artifact URLs lie
	// below ("": the upstream), for messages (Source.PlannedAt).
	At string `json:"-"`
}

// AltURL is one fallback of an artifact: its URL there, and the registry
// settings when it is a registry's blob (reached directly).
type AltURL struct {
	URL      string
	Registry *oci.Access
}

// Alternatives are the artifact's URLs at the fallbacks, in order. a.URL
// is its URL as planned, below one of Bases.
func (f Fetch) Alternatives(a release.Artifact) []AltURL {
	var rel string
	for _, b := range f.Bases {
		if r, ok := strings.CutPrefix(a.URL, b); ok {
			rel = r
			break
		}
	}
	var out []AltURL
	for _, alt := range f.Next {
		switch {
		case alt.Registry != nil:
			acc := alt.Registry.Access
			out = append(out, AltURL{URL: alt.Registry.Ref.BlobURL(acc.Scheme(), a.SHA256), Registry: &acc})
		case rel != "":
			out = append(out, AltURL{URL: alt.Base + rel})
		}
	}
	return out
}

// Registry is a registry nodes fetch blobs from, and how to reach it.
type Registry struct {
	Ref    oci.Ref
	Access oci.Access
}

// RegistryFetch is where nodes fetch artifacts when the run opened the
// channel in a registry (nil otherwise, and for a cache daemon).
func (s Source) RegistryFetch() *Registry {
	rem := s.registry()
	if rem == nil || s.Cache != "" {
		return nil
	}
	return &Registry{Ref: rem.Ref, Access: rem.Access}
}

func (f Fetch) String() string {
	switch {
	case f.Offline:
		return "node caches only"
	case f.CacheURL != "":
		return f.CacheURL
	case f.Registry != nil:
		return f.Registry.Ref.String()
	case f.At != "":
		return f.At
	}
	return "upstream"
}

// ArtifactURL is where a node fetches the artifact with this upstream URL
// and digest, and whether it goes there directly (no proxy).
func (f Fetch) ArtifactURL(a release.Artifact) (url string, direct bool) {
	if f.CacheURL != "" {
		return cache.ArtifactURL(f.CacheURL, a.SHA256), true
	}
	if f.Registry != nil {
		return f.Registry.Ref.BlobURL(f.Registry.Access.Scheme(), a.SHA256), true
	}
	return a.URL, false
}
