package release

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/trust"
)

// maxDocumentBytes bounds any metadata document: a channel that serves more
// is broken or hostile.
const maxDocumentBytes = 16 << 20

// Channel is an opened upstream: its index, and the way to read the
// documents it points at.
type Channel struct {
	URL   *url.URL
	Index *Index
	http  *http.Client
	// raw keeps every document as it was read, by its path relative to the
	// index, so a cache can serve exactly what the upstream published.
	raw map[string][]byte
	// elsewhere lists manifests the index names outside its own directory:
	// a cache cannot serve those under the same names.
	elsewhere []string
	// verifier, when set, checks every document before it is parsed
	// (see WithTrust); verified lists what it accepted, in reading order.
	verifier *trust.Verifier
	verified []trust.Meta
}

// channelConfig is what ChannelOptions change.
type channelConfig struct {
	transport *http.Transport
	verifier  *trust.Verifier
}

// ChannelOption changes how a channel is read.
type ChannelOption func(*channelConfig)

// WithoutProxy reads the channel directly, whatever http_proxy says: for
// a cache daemon on the cluster's own network.
func WithoutProxy() ChannelOption { return func(c *channelConfig) { c.transport.Proxy = nil } }

// WithTLS verifies https peers with tc: for a cache daemon whose
// certificate the cluster file pins.
func WithTLS(tc *tls.Config) ChannelOption {
	return func(c *channelConfig) { c.transport.TLSClientConfig = tc }
}

// WithTrust verifies every document the channel reads with v before it is
// parsed: first the channel's root rotations (N.root.json from the trusted
// version on), then index.json and each document read through the channel
// (manifests, and any other document the index names), each by its path
// relative to the index and its detached .sig. A refusal is a *trust.Error
// naming the document and the check. The caller commits v (trust.Verifier.Commit)
// once it has read everything it will act on.
func WithTrust(v *trust.Verifier) ChannelOption {
	return func(c *channelConfig) { c.verifier = v }
}

// newConfig bounds how long a peer may take to accept and to answer:
// a wrong address or a hung server fails in seconds, not minutes.
func newConfig(opts []ChannelOption) *channelConfig {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 60 * time.Second
	cfg := &channelConfig{transport: t}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

// OpenChannel reads and validates the index at rawURL (http://, https:// or
// file://). HTTP honours http_proxy, https_proxy and no_proxy.
func OpenChannel(ctx context.Context, rawURL string, opts ...ChannelOption) (*Channel, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return nil, &MetadataError{Doc: rawURL, Err: fmt.Errorf("channel URL must be http://, https:// or file://")}
	}
	cfg := newConfig(opts)
	c := &Channel{URL: u, http: &http.Client{Transport: cfg.transport}, raw: map[string][]byte{}, verifier: cfg.verifier}
	if c.verifier != nil {
		if err := c.updateRoots(ctx); err != nil {
			return nil, err
		}
	}
	data, err := c.get(ctx, u)
	if err != nil {
		return nil, err
	}
	c.raw["index.json"] = data // a cache serves every channel's index under this name
	c.Index, err = ParseIndex(u.String(), data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Manifest reads and validates the manifest of release v. Artifact URLs in
// the result are absolute.
func (c *Channel) Manifest(ctx context.Context, v string) (*Manifest, error) {
	e, ok := c.Index.Entry(v)
	if !ok {
		return nil, &UnknownReleaseError{Version: v, Offered: c.Index.Versions()}
	}
	mu, err := c.URL.Parse(e.Manifest)
	if err != nil {
		return nil, &MetadataError{Doc: c.URL.String(), Err: fieldErr("releases.manifest", err)}
	}
	data, err := c.get(ctx, mu)
	if err != nil {
		return nil, err
	}
	if rel, ok := relativePath(e.Manifest); ok {
		c.raw[rel] = data
	} else {
		c.elsewhere = append(c.elsewhere, e.Manifest)
	}
	m, err := ParseManifest(mu.String(), data)
	if err != nil {
		return nil, err
	}
	if m.Version != v {
		return nil, &MetadataError{Doc: mu.String(), Err: fieldErr("version", fmt.Errorf("index says %s, manifest says %s", v, m.Version))}
	}
	for i := range m.Components {
		au, err := mu.Parse(m.Components[i].Artifact.URL)
		if err != nil {
			return nil, &MetadataError{Doc: mu.String(), Err: fieldErr(fmt.Sprintf("components[%d].artifact.url", i), err)}
		}
		m.Components[i].Artifact.URL = au.String()
	}
	return m, nil
}

// Documents returns the documents read so far, as published, by their path
// relative to the index ("index.json", "releases/3.4.2/manifest.json"). It
// fails if the index names a manifest outside its own directory (by
// absolute URL, or above it): a cache could not serve that channel as is.
func (c *Channel) Documents() (map[string][]byte, error) {
	if len(c.elsewhere) > 0 {
		return nil, &MetadataError{Doc: c.URL.String(), Err: fmt.Errorf("the index names manifests outside its own directory (%s): a cache node can only hold channels whose manifests are below the index; ask the channel's publisher for relative manifest paths", strings.Join(c.elsewhere, ", "))}
	}
	out := make(map[string][]byte, len(c.raw))
	for k, v := range c.raw {
		out[k] = v
	}
	return out, nil
}

// relativePath accepts a manifest reference that stays below the index.
func relativePath(ref string) (string, bool) {
	u, err := url.Parse(ref)
	if err != nil || u.IsAbs() || u.Host != "" || strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	clean := path.Clean(u.Path)
	if clean == "." || strings.HasPrefix(clean, "../") || clean == ".." {
		return "", false
	}
	return clean, true
}

// FetchError says which document could not be read and from where.
type FetchError struct {
	URL    string
	Status int // HTTP status, when the server answered
	Err    error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("cannot read %s: %v (check the channel URL and that the upstream is reachable%s)", e.URL, e.Err, proxyHint(e.URL))
}
func (e *FetchError) Unwrap() error { return e.Err }

// get reads the document at u and, with a verifier, verifies it.
func (c *Channel) get(ctx context.Context, u *url.URL) ([]byte, error) {
	data, err := c.read(ctx, u, maxDocumentBytes)
	if err != nil {
		return nil, err
	}
	if c.verifier != nil {
		// The verifier refuses an oversized document itself, by name.
		if err := c.verify(ctx, u, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	if len(data) > maxDocumentBytes {
		return nil, &FetchError{URL: u.String(), Err: errors.New("document larger than 16 MiB")}
	}
	return data, nil
}

// read returns the body at u, at most limit+1 bytes of it, so that a
// caller can tell a document that is too large.
func (c *Channel) read(ctx context.Context, u *url.URL, limit int64) ([]byte, error) {
	var body io.ReadCloser
	switch u.Scheme {
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, &FetchError{URL: u.String(), Err: err}
		}
		body = f
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, &FetchError{URL: u.String(), Err: err}
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, &FetchError{URL: u.String(), Err: describeProxyError(req, err)}
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, &FetchError{URL: u.String(), Status: resp.StatusCode, Err: fmt.Errorf("HTTP %s", resp.Status)}
		}
		body = resp.Body
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, &FetchError{URL: u.String(), Err: err}
	}
	return data, nil
}
