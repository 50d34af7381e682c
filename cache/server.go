package cache

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/sentinel-paas/sentinel/durable"
)

// Limits of the cache daemon.
const (
	// MaxPrefetchBody bounds the body of a POST /prefetch.
	MaxPrefetchBody = 16 << 20
	// PrefetchConcurrency is how many artifacts one prefetch downloads at once.
	PrefetchConcurrency = 4
	// DefaultShutdownTimeout is how long Serve lets in-flight requests and
	// downloads finish once its context is done.
	DefaultShutdownTimeout = 30 * time.Second

	maxChannelDocBytes       = 16 << 20
	maxChannelPath           = 1024
	locationsCacheTime       = 5 * time.Second
	prefetchProgressInterval = time.Second
)

// ServerConfig configures the cache daemon.
type ServerConfig struct {
	// Store holds the artifacts served under /artifacts/sha256/<hex>.
	Store *Store
	// ChannelDir holds the channel metadata the cache serves read-only under
	// /channel/ (the channel's TUF repository: metadata/, targets/) and that
	// prefetch writes. "" disables both.
	ChannelDir string
	// Upstream is the channel base URL (http or https) the cache pulls a
	// missing artifact from; "" disables pull-through (air-gapped). An
	// artifact is pulled only if a manifest under ChannelDir lists it: its
	// URL is resolved against Upstream + "/" + the manifest's path relative
	// to ChannelDir.
	Upstream string
	// Root is the channel's trusted root. Prefetch needs it and Upstream:
	// the daemon fetches by name only what its verified channel at
	// Upstream lists (PrefetchRequest). Without them prefetch is refused.
	Root []byte
	// Proxy is the proxy of the daemon's own upstream fetches (its
	// configuration's proxy); nil: http_proxy, https_proxy and no_proxy
	// from the daemon's environment. A prefetch request never chooses it.
	Proxy *url.URL
	// Token is the bearer token the prefetch API requires; "" disables
	// prefetch (403).
	Token string
	// Log receives one line per notable event (quarantine, upstream
	// failure, shutdown). nil: silent.
	Log func(format string, args ...any)
	// ShutdownTimeout bounds how long Serve waits for in-flight requests and
	// downloads once its context is done. 0: DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// PlainHTTP: the daemon was told to serve without TLS. Only then does
	// prefetch take a token over a plain connection, and /readyz warns.
	PlainHTTP bool
	// TLS, when set, is what Serve speaks. nil: plain HTTP (a daemon's
	// Config allows that only with plain_http).
	TLS *tls.Config
	// Timeouts of Serve (see Config); 0: the defaults. MaxConnsPerClient
	// 0: no limit.
	NoProgressTimeout, IdleTimeout, ReadHeaderTimeout time.Duration
	MaxConnsPerClient                                 int
	// MinFreeDisk: below this many free bytes /readyz says the disk is full.
	MinFreeDisk uint64
	// AccessLog receives a line per request from Serve. nil: none.
	AccessLog *slog.Logger
}

// Server is the cache daemon: an http.Handler over a Store and a channel
// directory, plus Serve for running it.
//
// Endpoints:
//
//	GET/HEAD /artifacts/sha256/<hex>  the artifact (Range, If-Range, ETag "<hex>",
//	                                  Last-Modified), hashed once per process before
//	                                  it is first served; a miss is 404, or with
//	                                  Upstream pulled through (HEAD too) and served
//	GET/HEAD /channel/<path>          a regular file of ChannelDir; no listings, no dotfiles
//	POST     /prefetch                fill the cache by name (bearer token, Root and
//	                                  Upstream); JSON lines back
//	GET      /metrics                 Prometheus text format
//	GET      /healthz                 "ok"
//	GET      /readyz                  200, or 503 with the reasons (readyz.go)
//
// Anything else under /artifacts/ is 400 (a malformed name) or 404: the
// raw request path is matched, never cleaned, and the only artifact file
// ever opened is Store.Path of a validated digest.
type Server struct {
	cfg      ServerConfig
	upstream *url.URL // nil: no pull-through
	m        serverMetrics

	certs  *certFiles // the daemon's certificate, reloaded on change; nil: TLS from cfg or none
	tokens *tokenFile // the prefetch token, reloaded on change; nil: cfg.Token

	verifyFlight singleflight.Group // key: digest; one hash of a file at a time
	fetchFlight  singleflight.Group // key: digest; one download of an artifact at a time

	mu       sync.Mutex
	verified map[string]os.FileInfo   // digest -> the file this process hashed and found good
	fetching map[string]chan struct{} // digest -> closed once its download is done and marked verified
	hashes   atomic.Int64             // files hashed (for tests)

	// Background work (hashing, downloads) runs under ctx, not under the
	// context of the request that started it, so a client going away does
	// not abort a download others wait for. Close waits for it.
	ctx      context.Context
	cancel   context.CancelFunc
	bgMu     sync.Mutex
	bgClosed bool
	bg       sync.WaitGroup

	locMu    sync.Mutex
	locs     map[string]artifactLocation
	locsTime time.Time

	served atomic.Bool // Serve was called

	// onShutdown, when set (by tests), runs once Serve has closed its
	// listener.
	onShutdown func()
}

// artifactLocation is where the upstream holds an artifact.
type artifactLocation struct {
	url  string
	size int64
}

// ErrServerClosed is returned for work asked of a Server after Close.
var ErrServerClosed = errors.New("cache server is shutting down")

// errNotStored: the store does not hold a servable, verified copy.
var errNotStored = errors.New("artifact not stored")

// NewServer checks cfg and returns a server. It touches no file.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil || cfg.Store.Dir == "" {
		return nil, errors.New("cache server: a store directory is required")
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{cfg: cfg, verified: map[string]os.FileInfo{}, fetching: map[string]chan struct{}{}}
	if cfg.Upstream != "" {
		u, err := url.Parse(strings.TrimRight(cfg.Upstream, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("cache server: upstream %q must be an http:// or https:// URL", cfg.Upstream)
		}
		if cfg.ChannelDir == "" {
			return nil, errors.New("cache server: pull-through needs the channel directory: its manifests say where each artifact lives upstream")
		}
		u.RawQuery, u.Fragment = "", ""
		s.upstream = u
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func (s *Server) logf(format string, args ...any) { s.cfg.Log(format, args...) }

// Handler returns the daemon's HTTP handler. Routing is done on the raw
// (escaped) request path; nothing is cleaned or redirected.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.route) }

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(raw, "/artifacts/"):
		s.handleArtifact(w, r, strings.TrimPrefix(raw, "/artifacts/"))
	case strings.HasPrefix(raw, channelPath):
		s.handleChannel(w, r, strings.TrimPrefix(raw, channelPath))
	case raw == "/prefetch":
		s.handlePrefetch(w, r)
	case raw == "/metrics":
		s.handleMetrics(w, r)
	case raw == readyPath:
		s.handleReadyz(w, r)
	case raw == healthPath:
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	default:
		http.NotFound(w, r)
	}
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// ---- artifacts ----

func (s *Server) handleArtifact(w http.ResponseWriter, r *http.Request, rest string) {
	algo, digest, ok := strings.Cut(rest, "/")
	if !ok || algo != "sha256" {
		s.m.errors.Add(1)
		http.Error(w, "not found: artifacts are addressed as /artifacts/sha256/<64 lowercase hex digits>", http.StatusNotFound)
		return
	}
	// The raw path is checked, so percent-encoded dots or slashes and any
	// extra element fail here; the only file ever opened is
	// Store.Path(digest) of a validated digest.
	if !isDigestName(digest) {
		s.m.errors.Add(1)
		http.Error(w, "bad artifact name: expected 64 lowercase hex digits", http.StatusBadRequest)
		return
	}
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		s.m.errors.Add(1)
		return
	}
	ctx := r.Context()

	f, fi, err := s.openVerified(ctx, digest)
	if err == nil {
		s.m.hits.Add(1)
		s.serveFile(w, r, digest, f, fi)
		return
	}
	if !errors.Is(err, errNotStored) {
		s.m.errors.Add(1)
		switch {
		case ctx.Err() != nil: // the client went away
		case errors.Is(err, ErrServerClosed):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			s.logf("cache: serving %s: %v", digest, err)
			http.Error(w, "cannot read the artifact from the cache's disk", http.StatusInternalServerError)
		}
		return
	}

	// A miss.
	if s.upstream == nil {
		s.m.misses.Add(1)
		http.Error(w, fmt.Sprintf("artifact sha256:%s is not in this cache.\n"+
			"Fill the cache from a machine that can reach the channel, while the cluster runs normally:\n"+
			"  sentinel upgrade VERSION --download-only --cache-ip <this cache's address>\n", digest), http.StatusNotFound)
		return
	}
	loc, found, err := s.lookup(digest)
	if err != nil {
		s.m.errors.Add(1)
		s.logf("cache: reading the channel's manifests: %v", err)
		http.Error(w, "cannot read the cache's channel metadata", http.StatusInternalServerError)
		return
	}
	if !found {
		s.m.misses.Add(1)
		http.Error(w, fmt.Sprintf("artifact sha256:%s is not in this cache, and no manifest the cache holds lists it, so it is not pulled from the upstream.\n"+
			"Fill the cache: sentinel upgrade VERSION --download-only --cache-ip <this cache's address>\n", digest), http.StatusNotFound)
		return
	}
	if _, err := s.fetchShared(ctx, digest, loc); err != nil {
		if ctx.Err() != nil {
			s.m.errors.Add(1)
			return // the client went away; the download goes on for the cache
		}
		s.m.errors.Add(1)
		s.logf("cache: pulling %s from %s: %v", digest, loc.url, err)
		http.Error(w, fmt.Sprintf("artifact sha256:%s is not in this cache and pulling it through failed: %s", digest, fetchFailure(err)), http.StatusBadGateway)
		return
	}
	f, fi, err = s.openVerified(ctx, digest)
	if err != nil {
		s.m.errors.Add(1)
		s.logf("cache: serving %s after pulling it: %v", digest, err)
		http.Error(w, "the artifact was pulled from upstream but cannot be served", http.StatusInternalServerError)
		return
	}
	s.m.misses.Add(1)
	s.serveFile(w, r, digest, f, fi)
}

// serveFile answers with the verified file f (closing it): Range, If-Range,
// ETag, Last-Modified through http.ServeContent, which copies an *os.File
// with the kernel's sendfile.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, digest string, f *os.File, fi os.FileInfo) {
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+digest+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(&countingWriter{ResponseWriter: w, m: &s.m}, r, "", fi.ModTime(), f)
}

// openVerified opens the stored artifact if this process has verified it
// (hashing it first if not). A file that does not hash to its name is
// quarantined, and errNotStored returned, as for a file that is not there.
func (s *Server) openVerified(ctx context.Context, digest string) (*os.File, os.FileInfo, error) {
	p := s.cfg.Store.Path(digest)
	for attempt := 0; attempt < 3; attempt++ {
		f, err := openNoFollow(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, errNotStored
		}
		if errors.Is(err, syscall.ELOOP) {
			s.logf("cache: %s is a symbolic link, not an artifact: not serving it", p)
			return nil, nil, errNotStored
		}
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			s.logf("cache: %s is not a regular file: not serving it", p)
			return nil, nil, errNotStored
		}
		if s.isVerified(digest, fi) {
			return f, fi, nil
		}
		// A download of it promoted the file a moment ago and is about to
		// mark it verified, having hashed it as it came: wait for that
		// rather than hash it again.
		if done := s.fetchInFlight(digest); done != nil {
			f.Close()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		res, err := s.verifyShared(ctx, digest)
		if err != nil {
			f.Close()
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved meanwhile: look again
			}
			return nil, nil, err
		}
		if res.bad != nil {
			f.Close()
			if res.bad.QuarantinedAs == "" {
				continue // replaced meanwhile: look again
			}
			return nil, nil, errNotStored
		}
		if sameFileVersion(res.info, fi) {
			return f, fi, nil
		}
		f.Close() // what was hashed is not what we opened: look again
	}
	return nil, nil, fmt.Errorf("%s keeps changing on disk", p)
}

func sameFileVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (s *Server) isVerified(digest string, fi os.FileInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sameFileVersion(s.verified[digest], fi)
}

func (s *Server) setVerified(digest string, fi os.FileInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi == nil {
		delete(s.verified, digest)
	} else {
		s.verified[digest] = fi
	}
}

// verifyShared hashes the stored file once however many requests ask at the
// same time. The hashing runs in the background: a caller whose ctx ends
// stops waiting, the hash goes on and its result is kept.
func (s *Server) verifyShared(ctx context.Context, digest string) (verifyResult, error) {
	ch := s.verifyFlight.DoChan(digest, func() (any, error) {
		if !s.bgEnter() {
			return verifyResult{}, ErrServerClosed
		}
		defer s.bgLeave()
		// A request that opened the file before the previous hash of it
		// finished lands here: no need to hash it again.
		if fi, err := os.Lstat(s.cfg.Store.Path(digest)); err == nil && s.isVerified(digest, fi) {
			return verifyResult{info: fi}, nil
		}
		res, err := s.cfg.Store.verifyOne(s.ctx, digest)
		if err != nil {
			return res, err
		}
		s.hashes.Add(1)
		if res.bad != nil {
			s.setVerified(digest, nil)
			if res.bad.QuarantinedAs != "" {
				s.m.quarantined.Add(1)
				s.logf("cache: artifact %s hashes to %s: moved to %s; it is no longer served", digest, res.bad.Got, res.bad.QuarantinedAs)
			}
		} else {
			s.setVerified(digest, res.info)
		}
		return res, nil
	})
	select {
	case r := <-ch:
		res, _ := r.Val.(verifyResult)
		return res, r.Err
	case <-ctx.Done():
		return verifyResult{}, ctx.Err()
	}
}

// fetchShared downloads an artifact into the store once however many
// requests (pull-through or prefetch) ask for it at the same time. It
// reports whether it downloaded anything. The download runs in the
// background under the server's lifetime.
func (s *Server) fetchShared(ctx context.Context, digest string, loc artifactLocation) (bool, error) {
	ch := s.fetchFlight.DoChan(digest, func() (any, error) {
		if !s.bgEnter() {
			return false, ErrServerClosed
		}
		defer s.bgLeave()
		done := make(chan struct{})
		s.mu.Lock()
		s.fetching[digest] = done
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.fetching, digest)
			s.mu.Unlock()
			close(done)
		}()
		start := time.Now()
		st, err := s.cfg.Store.FetchStats(s.ctx, loc.url, digest, loc.size)
		downloaded := st.Downloaded
		if downloaded || err != nil {
			s.m.observeFetch(time.Since(start), err)
		}
		// The transfer hashed the file it promoted: that file, if the path
		// still names it, needs no second hash. Anything else is hashed
		// before it is served (openVerified).
		if fi, lerr := os.Lstat(s.cfg.Store.Path(digest)); err == nil && lerr == nil && sameFileVersion(st.promoted, fi) {
			s.setVerified(digest, fi)
		}
		return downloaded, err
	})
	select {
	case r := <-ch:
		downloaded, _ := r.Val.(bool)
		return downloaded, r.Err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// fetchInFlight is closed once the download of digest under way, if any,
// has ended and marked what it promoted verified; nil when none is.
func (s *Server) fetchInFlight(digest string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetching[digest]
}

func (s *Server) bgEnter() bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgClosed {
		return false
	}
	s.bg.Add(1)
	return true
}

func (s *Server) bgLeave() { s.bg.Done() }

// VerifyStored hashes every stored artifact this process has not verified
// yet, quarantining those that do not match, so that first requests do not
// wait for hashing. Run it in the background after starting the server if
// wanted; it returns early with ctx.Err() when ctx ends.
func (s *Server) VerifyStored(ctx context.Context) error {
	entries, err := s.cfg.Store.List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		f, _, err := s.openVerified(ctx, e.Digest)
		if err == nil {
			f.Close()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, errNotStored) {
			return err
		}
	}
	return nil
}

// lookup finds where the upstream holds an artifact, from the manifests
// under ChannelDir (cached for a few seconds; prefetch invalidates it).
func (s *Server) lookup(digest string) (artifactLocation, bool, error) {
	s.locMu.Lock()
	defer s.locMu.Unlock()
	if s.locs == nil || time.Since(s.locsTime) > locationsCacheTime {
		locs, err := s.readLocations()
		if err != nil {
			return artifactLocation{}, false, err
		}
		s.locs, s.locsTime = locs, time.Now()
	}
	loc, ok := s.locs[digest]
	return loc, ok, nil
}

func (s *Server) invalidateLocations() {
	s.locMu.Lock()
	s.locs = nil
	s.locMu.Unlock()
}

// readLocations reads every JSON document under ChannelDir (dotfiles
// skipped, never leaving the directory) and collects the artifacts of
// those shaped like a manifest: {"components":[{"artifact":{"url","sha256","size"}}]}.
func (s *Server) readLocations() (map[string]artifactLocation, error) {
	locs := map[string]artifactLocation{}
	root, err := os.OpenRoot(s.cfg.ChannelDir)
	if errors.Is(err, fs.ErrNotExist) {
		return locs, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() || !strings.HasSuffix(p, ".json") || !validChannelPath(p) {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > maxChannelDocBytes {
			return nil
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return nil
		}
		var doc struct {
			Components []struct {
				Artifact struct {
					URL    string `json:"url"`
					SHA256 string `json:"sha256"`
					Size   int64  `json:"size"`
				} `json:"artifact"`
			} `json:"components"`
		}
		if json.Unmarshal(data, &doc) != nil {
			return nil // not JSON, or not shaped like a manifest
		}
		base, err := url.Parse(s.upstream.String() + "/" + p)
		if err != nil {
			return nil
		}
		for _, c := range doc.Components {
			a := c.Artifact
			if !isDigestName(a.SHA256) || a.URL == "" || a.Size < 0 {
				continue
			}
			au, err := base.Parse(a.URL)
			if err != nil || (au.Scheme != "http" && au.Scheme != "https") {
				continue
			}
			if strings.HasPrefix(p, "targets/") {
				// A TUF repository serves a target under its consistent-snapshot name.
				dir, file := path.Split(au.Path)
				au.Path = dir + a.SHA256 + "." + file
			}
			if _, dup := locs[a.SHA256]; !dup {
				locs[a.SHA256] = artifactLocation{url: au.String(), size: a.Size}
			}
		}
		return nil
	})
	return locs, err
}

// ---- channel metadata ----

// validChannelPath accepts a relative, clean, slash-separated path of
// [a-zA-Z0-9._-] elements, none of them starting with a dot (so no "..",
// no dotfiles).
func validChannelPath(p string) bool {
	if p == "" || len(p) > maxChannelPath || !fs.ValidPath(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '/', c == '-':
		default:
			return false
		}
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el[0] == '.' {
			return false
		}
	}
	return true
}

func (s *Server) handleChannel(w http.ResponseWriter, r *http.Request, name string) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if s.cfg.ChannelDir == "" || !validChannelPath(name) {
		http.NotFound(w, r)
		return
	}
	// OpenInRoot refuses anything (a symbolic link included) that would
	// leave ChannelDir.
	f, err := os.OpenInRoot(s.cfg.ChannelDir, name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logf("cache: channel file %s: %v", name, err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r) // no directory listings
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, path.Base(name), fi.ModTime(), f)
}

// ---- prefetch ----

// PrefetchEvent is one JSON line of the prefetch response. Event is
// "progress" (a download started or advanced: Bytes so far of Size),
// "done" (an artifact is in the store, Cached if it already was; or a
// metadata file, Path, was written) or "error". The last line is a
// PrefetchResult.
type PrefetchEvent struct {
	Event  string `json:"event"`
	SHA256 string `json:"sha256,omitempty"`
	Path   string `json:"path,omitempty"`
	Bytes  *int64 `json:"bytes,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	Cached bool   `json:"cached,omitempty"`
	Error  string `json:"error,omitempty"`
}

// PrefetchResult is the last line of the prefetch response: artifacts
// downloaded, artifacts already stored, artifacts and metadata files that
// failed, metadata files written.
type PrefetchResult struct {
	Event           string `json:"event"`
	Fetched         int    `json:"fetched"`
	Cached          int    `json:"cached"`
	Failed          int    `json:"failed"`
	MetadataWritten int    `json:"metadata_written"`
}

type metaFile struct {
	path string
	data []byte
}

func (s *Server) authorized(r *http.Request, token string) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

func prefetchError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"event": "error", "error": msg})
}

func (s *Server) handlePrefetch(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	token := s.token()
	if token == "" {
		prefetchError(w, http.StatusForbidden, "prefetch is disabled: this cache daemon has no token (token_file in its configuration)")
		return
	}
	if r.TLS == nil && !s.cfg.PlainHTTP {
		prefetchError(w, http.StatusForbidden, "prefetch is refused over plain HTTP: the token is only accepted over TLS (reach this daemon with https://; its config has tls_cert_file)")
		return
	}
	if !s.authorized(r, token) {
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sentinel-cache"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sentinel-cache", error="invalid_token"`)
		}
		prefetchError(w, http.StatusUnauthorized, "prefetch needs the cache's token: Authorization: Bearer <token>")
		return
	}

	if !s.canPrefetch() {
		prefetchError(w, http.StatusForbidden, prefetchDisabled)
		return
	}
	var req PrefetchRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxPrefetchBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			prefetchError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes: a prefetch names releases, patches and a sentinel build, nothing more; nothing fetched", MaxPrefetchBody))
			return
		}
		prefetchError(w, http.StatusBadRequest, "bad request body: "+err.Error()+
			`: the body is {"releases": [...], "patches": [...], "sentinel": {"os": ..., "arch": ...}}, names only (a sentinel that sends URLs or documents is older than this daemon: upgrade it); nothing fetched`)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		prefetchError(w, http.StatusBadRequest, "bad request body: data after the JSON object; nothing fetched")
		return
	}
	arts, metas, err := s.resolvePrefetch(r.Context(), &req)
	if errors.Is(err, errChannelUnreadable) {
		prefetchError(w, http.StatusBadGateway, err.Error())
		return
	}
	if err != nil {
		prefetchError(w, http.StatusBadRequest, err.Error())
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var emitMu sync.Mutex
	emit := func(v any) {
		line, _ := json.Marshal(v)
		emitMu.Lock()
		defer emitMu.Unlock()
		w.Write(append(line, '\n'))
		rc.Flush()
	}

	ctx := r.Context()
	var mu sync.Mutex
	var res PrefetchResult
	res.Event = "result"
	g := new(errgroup.Group)
	g.SetLimit(PrefetchConcurrency)
	for _, a := range arts {
		if ctx.Err() != nil {
			break // the client went away
		}
		g.Go(func() error {
			cached, err := s.prefetchOne(ctx, a, emit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Failed++
			case cached:
				res.Cached++
			default:
				res.Fetched++
			}
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil {
		return
	}

	if len(metas) > 0 {
		if res.Failed > 0 {
			res.Failed += len(metas)
			emit(PrefetchEvent{Event: "error", Error: fmt.Sprintf("channel metadata not written: %d artifacts could not be fetched, and the cache must not offer a release it cannot serve; run the prefetch again", res.Failed-len(metas))})
		} else {
			for _, m := range metas {
				if err := s.writeChannelFile(m); err != nil {
					res.Failed++
					s.logf("cache: prefetch: writing %s: %v", m.path, err)
					emit(PrefetchEvent{Event: "error", Path: m.path, Error: "cannot write it into the cache's channel directory: the daemon's log says why (disk full? channel_dir's owner?); run the prefetch again"})
					continue
				}
				res.MetadataWritten++
				n := int64(len(m.data))
				emit(PrefetchEvent{Event: "done", Path: m.path, Bytes: &n})
			}
			s.invalidateLocations()
		}
	}
	emit(res)
}

// prefetchOne makes sure one artifact is in the store, verified, and
// reports whether it already was.
func (s *Server) prefetchOne(ctx context.Context, a prefetchTarget, emit func(any)) (bool, error) {
	fail := func(err error) (bool, error) {
		s.logf("cache: prefetch: %s from %s: %v", a.sha256, a.url, err)
		emit(PrefetchEvent{Event: "error", SHA256: a.sha256, Error: fetchFailure(err)})
		return false, err
	}
	size := a.size
	// Already stored: re-hash it (once per process) so the cache is known
	// good before the maintenance window; a rotten copy is quarantined and
	// fetched again.
	if f, _, err := s.openVerified(ctx, a.sha256); err == nil {
		f.Close()
		emit(PrefetchEvent{Event: "done", SHA256: a.sha256, Bytes: &size, Cached: true})
		return true, nil
	} else if !errors.Is(err, errNotStored) {
		return fail(err)
	}

	var zero int64
	emit(PrefetchEvent{Event: "progress", SHA256: a.sha256, Bytes: &zero, Size: &size})
	done := make(chan struct{})
	var downloaded bool
	var err error
	go func() {
		defer close(done)
		downloaded, err = s.fetchShared(ctx, a.sha256, artifactLocation{url: a.url, size: a.size})
	}()
	tick := time.NewTicker(prefetchProgressInterval)
	defer tick.Stop()
	last := int64(0)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			// Best effort: the size of the download in progress, where the
			// store keeps it (README: cache/partial/ while downloading).
			if fi, err := os.Stat(filepath.Join(s.cfg.Store.Dir, "partial", a.sha256+".part")); err == nil && fi.Size() != last {
				last = fi.Size()
				emit(PrefetchEvent{Event: "progress", SHA256: a.sha256, Bytes: &last, Size: &size})
			}
		}
	}
	if err != nil {
		return fail(err)
	}
	emit(PrefetchEvent{Event: "done", SHA256: a.sha256, Bytes: &size, Cached: !downloaded})
	return !downloaded, nil
}

// writeChannelFile writes one metadata file under ChannelDir atomically
// (durable.WriteFileIn), never leaving the directory: os.Root refuses any
// path, symbolic links included, that would.
func (s *Server) writeChannelFile(m metaFile) error {
	if err := os.MkdirAll(s.cfg.ChannelDir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(s.cfg.ChannelDir)
	if err != nil {
		return err
	}
	defer root.Close()
	return durable.WriteFileIn(root, m.path, m.data, 0o644)
}

// ---- metrics ----

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	n := -1
	if entries, err := s.cfg.Store.List(); err == nil {
		n = len(entries)
	} else {
		s.logf("cache: listing the store for metrics: %v", err)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.m.write(w, n)
}

// ---- running ----

// Serve listens on addr (host:port; ":0" picks a free port), calls ready,
// if not nil, with the bound address, and serves until ctx is done. Then it
// shuts down gracefully: the listener is closed at once (new connections
// are refused), in-flight requests and downloads get ShutdownTimeout to
// finish, after which connections are closed and downloads cancelled. It
// returns nil after a graceful shutdown. A Server is served once; Serve
// closes it.
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("cache server: Serve called twice")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close(context.Background())
		return fmt.Errorf("cache server: %w", err)
	}
	hs := s.httpServer()
	if hs.TLSConfig != nil {
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	hs.RegisterOnShutdown(func() {
		s.logf("cache: shutting down: no new connections; in-flight requests have %s to finish", s.cfg.ShutdownTimeout)
		if s.onShutdown != nil {
			s.onShutdown()
		}
	})
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	select {
	case err := <-errc:
		s.Close(context.Background())
		return fmt.Errorf("cache server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err = hs.Shutdown(sctx)
	if err != nil {
		s.logf("cache: shutdown timeout: closing the remaining connections")
		hs.Close()
	}
	<-errc // http.ErrServerClosed
	if cerr := s.Close(sctx); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache server: shutdown: %w", err)
	}
	return nil
}

// Close stops background work: no new hash or download starts, those under
// way get until ctx is done to finish, then are cancelled. It waits for them
// to end either way. Serve calls it; call it yourself when mounting Handler
// in your own http.Server.
func (s *Server) Close(ctx context.Context) error {
	s.bgMu.Lock()
	s.bgClosed = true
	s.bgMu.Unlock()
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-done
	}
	s.cancel()
	return err
}

// serverLogWriter sends net/http's own error log lines to Log, but for a
// connection closed during the TLS handshake with a plain EOF: what a TCP
// reachability check does (sentinel's preflight, a load balancer's health
// check), not an error anyone should chase.
type serverLogWriter func(format string, args ...any)

func (l serverLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if strings.Contains(line, "TLS handshake error from ") && strings.HasSuffix(line, ": EOF") {
		return len(p), nil
	}
	l("%s", line)
	return len(p), nil
}
