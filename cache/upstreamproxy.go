package cache

import (
	"net/http"
	"net/url"

	"github.com/sentinel-paas/sentinel/release"
)

// upstreamProxy is the proxy the daemon's own fetch of u goes through:
// its configuration's proxy, else its environment's (as curl reads it);
// nil: direct. Nothing in a request chooses it.
func (s *Server) upstreamProxy(u *url.URL) *url.URL {
	if s.cfg.Proxy != nil {
		return s.cfg.Proxy
	}
	p, err := release.ProxyFromEnvironment(&http.Request{URL: u})
	if err != nil {
		return nil
	}
	return p
}

// upstreamClient is the HTTP client of the daemon's reads of its
// upstream's channel, through upstreamProxy.
func (s *Server) upstreamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
		return s.upstreamProxy(r.URL), nil
	}}}
}

// reportedProxy is the proxy /readyz names: host and port only, never
// credentials; "" when the daemon's upstream fetches go direct. Without a
// configured upstream it is the proxy an https URL would take.
func (s *Server) reportedProxy() string {
	u := s.upstream
	if u == nil {
		u = &url.URL{Scheme: "https", Host: "upstream.invalid"}
	}
	if p := s.upstreamProxy(u); p != nil {
		return p.Host
	}
	return ""
}
