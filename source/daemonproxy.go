package source

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/release"
)

// ProxyMismatch compares the proxy the operator set in sentinel's
// environment for the upstream with the one the cache daemon at base
// says (on /readyz) its own upstream fetches go through. It returns a
// warning when they differ, "" when they agree or the daemon does not say
// (an older daemon, or one that does not answer: other phases report
// that). The daemon's proxy is its own configuration's: a run cannot
// change it, only tell the operator.
func ProxyMismatch(ctx context.Context, base string, p cache.Peer, upstream string) string {
	daemon, ok := daemonProxy(ctx, base, p)
	if !ok {
		return ""
	}
	op := release.ProxyFor(upstream)
	if op == daemon {
		return ""
	}
	via := func(proxy string) string {
		if proxy == "" {
			return "directly (no proxy)"
		}
		return "through the proxy " + proxy
	}
	return fmt.Sprintf("proxies differ: this sentinel reaches the upstream %s %s (http_proxy/https_proxy/no_proxy in your shell), "+
		"but the cache daemon %s fetches from its upstream %s (its own configuration's `proxy`, else its environment). "+
		"A run does not send your proxy to the daemon; if the upstream is reachable only one way, set `proxy:` in the daemon's "+
		"configuration file (sentinel-d.yaml) and restart it", upstream, via(op), base, via(daemon))
}

// daemonProxy reads the daemon's proxy from /readyz (host:port, "" when
// direct); ok is false when the daemon does not say.
func daemonProxy(ctx context.Context, base string, p cache.Peer) (proxy string, ok bool) {
	c, err := p.HTTPClient()
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cache.ReadyURL(base), nil)
	if err != nil {
		return "", false
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var rep struct {
		Proxy *string `json:"proxy"`
	}
	// 503 says why the daemon is not ready, in the same document.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil || rep.Proxy == nil {
		return "", false
	}
	return *rep.Proxy, true
}
