package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/release"
)

// A source is where an artifact's bytes come from. The transfer engine
// (transfer.go) owns everything else: the partial file, hashing,
// checkpoints, retries, verification and promotion.
type source interface {
	// open starts reading at offset if it can, and says where its body
	// really starts: offset, or 0 when the source restarts from the
	// beginning (a server that ignored the range, a file that changed).
	// validator is the one the previous open reported ("" if none); open
	// uses it to make sure a resumed body belongs to the same file.
	// Errors are *statusError, *restartError, *permanentError or
	// transport errors, classified by the engine.
	open(ctx context.Context, offset int64, validator string) (*opened, error)
}

type opened struct {
	body      io.ReadCloser
	start     int64  // offset of the body's first byte: the requested offset or 0
	validator string // identifies this version of the file for a later resume; "" if none
	total     int64  // the whole file's size as the source declares it; -1 unknown
	// exact: a clean end of body before the expected size means the
	// source is short (files), not that the connection was cut.
	exact bool
	via   string // "through proxy HOST" or ""
}

// statusError is an HTTP answer other than 200, 206 or 416.
type statusError struct {
	Code       int
	Status     string
	RetryAfter time.Duration
}

func (e *statusError) Error() string { return "HTTP " + e.Status }

// restartError: the source cannot resume at the offset asked for; the
// engine drops the partial file and asks again from zero, without a range.
type restartError struct{ why string }

func (e *restartError) Error() string { return e.why }

// permanentError is never retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// forcedRE matches go-getter's forced sources ("git::https://...").
var forcedRE = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// UnsupportedSourceError: an artifact URL names a kind of source sentinel
// does not fetch. It is refused before anything is downloaded, and never
// retried.
type UnsupportedSourceError struct {
	URL  string
	Kind string // "git::", "hg::", "s3::", "ftp", ...
}

func (e *UnsupportedSourceError) Error() string {
	msg := fmt.Sprintf("artifact URL %s: %s sources are not supported: sentinel fetches http://, https:// and file:// URLs", e.URL, e.Kind)
	if e.Kind == "git::" || e.Kind == "hg::" {
		// Earlier builds fetched these: say why they no longer do.
		msg += " (go-getter, which fetched git:: and hg:: sources, was removed: it brought vulnerable decompressors into every sentinel binary)"
	}
	return msg + "; publish the artifact in the channel, served over https or read from file://"
}

// source picks the source for rawURL.
func (s *Store) source(rawURL string) (source, error) {
	if m := forcedRE.FindStringSubmatch(rawURL); m != nil {
		return nil, &UnsupportedSourceError{URL: rawURL, Kind: m[1] + "::"}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad artifact URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("bad artifact URL %q: no host", rawURL)
		}
		client := s.HTTP
		if client == nil {
			client = defaultHTTP
		}
		return &httpSource{url: rawURL, client: client}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("bad artifact URL %q: file URLs name a local path (file:///path)", rawURL)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("bad artifact URL %q: no path", rawURL)
		}
		return &fileSource{path: u.Path}, nil
	case "":
		return nil, fmt.Errorf("bad artifact URL %q: no scheme (http, https or file)", rawURL)
	default:
		return nil, &UnsupportedSourceError{URL: rawURL, Kind: u.Scheme + "://"}
	}
}

// defaultHTTP has no overall timeout (artifacts are gigabytes; stalls are
// the engine's job) and honours http_proxy, https_proxy and no_proxy the
// way curl does (release.ProxyFromEnvironment: no silent loopback bypass).
var defaultHTTP = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = release.ProxyFromEnvironment
	return &http.Client{Transport: t}
}()

// DirectHTTP reaches a cache daemon on the cluster's own network: no proxy,
// whatever http_proxy says.
var DirectHTTP = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Transport: t}
}()

type httpSource struct {
	url    string
	client *http.Client
}

func (h *httpSource) open(ctx context.Context, offset int64, validator string) (*opened, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, &permanentError{err}
	}
	// Offsets count bytes of the file itself: no transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if validator != "" {
			req.Header.Set("If-Range", validator)
		}
	}
	via := h.via(req)
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the engine's message already
		}
		if via != "" {
			return nil, &proxyError{via: via, err: err}
		}
		return nil, err
	}
	o := &opened{body: resp.Body, validator: validatorOf(resp), total: -1, via: via}
	switch resp.StatusCode {
	case http.StatusOK:
		o.total = resp.ContentLength // -1 when unknown
		return o, nil
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, end, total, ok := parseContentRange(cr)
		if !ok || start != offset || (total >= 0 && end != total-1) {
			drain(resp.Body)
			return nil, &restartError{fmt.Sprintf("asked for bytes %d- and got Content-Range %q", offset, cr)}
		}
		// A 206 for another version of the file (a cache in between that
		// ignored If-Range) would splice two files: start over instead.
		if validator != "" && o.validator != "" && o.validator != validator {
			drain(resp.Body)
			return nil, &restartError{fmt.Sprintf("resumed with validator %s but the server sent %s: the file changed", validator, o.validator)}
		}
		o.start, o.total = start, total
		if o.validator == "" {
			o.validator = validator
		}
		return o, nil
	case http.StatusRequestedRangeNotSatisfiable:
		drain(resp.Body)
		if offset > 0 {
			return nil, &restartError{fmt.Sprintf("asked for bytes %d- and got HTTP %s", offset, resp.Status)}
		}
	}
	drain(resp.Body)
	return nil, &statusError{Code: resp.StatusCode, Status: resp.Status, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
}

// via names the proxy the client will use for req, if any.
func (h *httpSource) via(req *http.Request) string {
	rt := h.client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok || t.Proxy == nil {
		return ""
	}
	u, err := t.Proxy(req)
	if err != nil || u == nil {
		return ""
	}
	return "through proxy " + u.Host
}

// proxyError: the request failed on its way through a proxy.
type proxyError struct {
	via string
	err error
}

func (e *proxyError) Error() string { return e.via + ": " + e.err.Error() }
func (e *proxyError) Unwrap() error { return e.err }

// validatorOf is what If-Range may carry: a strong ETag, else
// Last-Modified (weak ETags are not allowed in If-Range).
func validatorOf(resp *http.Response) string {
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return resp.Header.Get("Last-Modified")
}

// parseContentRange parses "bytes first-last/total" ("*" total: -1).
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, false
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, 0, false
		}
	}
	return start, end, total, true
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// drain reads a little of an unwanted body so the connection can be
// reused, then closes it.
func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// fileSource reads a local file. Its validator is size, mtime and inode,
// so a resume notices a replaced file.
type fileSource struct{ path string }

func (f *fileSource) open(ctx context.Context, offset int64, validator string) (*opened, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, &permanentError{err}
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, &permanentError{err}
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, &permanentError{fmt.Errorf("%s is not a regular file", f.path)}
	}
	v := fmt.Sprintf("%d-%d", st.Size(), st.ModTime().UnixNano())
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		v += fmt.Sprintf("-%d-%d", sys.Dev, sys.Ino)
	}
	o := &opened{body: &ctxReader{ctx: ctx, f: fh}, validator: v, total: st.Size(), exact: true}
	if offset > 0 && validator == v && offset <= st.Size() {
		if _, err := fh.Seek(offset, io.SeekStart); err != nil {
			fh.Close()
			return nil, &permanentError{err}
		}
		o.start = offset
	}
	return o, nil
}

// ctxReader stops reading a file once ctx is done (reads of a local file
// do not block on the network, so checking between reads is enough).
type ctxReader struct {
	ctx context.Context
	f   *os.File
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *ctxReader) Close() error { return r.f.Close() }
