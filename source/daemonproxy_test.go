package source

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cache"
)

// A run warns when the operator's proxy for the upstream and the one the
// cache daemon's configuration gives its own fetches differ, and only
// then; a daemon that does not say is not warned about.
func TestProxyMismatch(t *testing.T) {
	for _, v := range []string{"http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"} {
		t.Setenv(v, "")
	}
	const upstream = "http://127.0.0.5:8080/channel"
	daemon := func(proxy string) string {
		cfg := cache.ServerConfig{Store: &cache.Store{Dir: t.TempDir()}, ChannelDir: t.TempDir()}
		if proxy != "" {
			cfg.Proxy = &url.URL{Scheme: "http", Host: proxy}
		}
		s, err := cache.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name, operator, daemon string
		want                   []string // in the warning; nil: no warning
	}{
		{"both direct", "", "", nil},
		{"the same proxy", "127.0.0.7:3128", "127.0.0.7:3128", nil},
		{"different proxies", "127.0.0.7:3128", "127.0.0.8:3128", []string{"through the proxy 127.0.0.7:3128", "through the proxy 127.0.0.8:3128", "`proxy:`"}},
		{"the operator's only", "127.0.0.7:3128", "", []string{"through the proxy 127.0.0.7:3128", "directly (no proxy)"}},
		{"the daemon's only", "", "127.0.0.8:3128", []string{"directly (no proxy)", "through the proxy 127.0.0.8:3128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := daemon(tc.daemon)
			if tc.operator != "" {
				t.Setenv("http_proxy", "http://"+tc.operator)
			} else {
				t.Setenv("http_proxy", "")
			}
			got := ProxyMismatch(ctx, base, cache.Peer{}, upstream)
			if tc.want == nil {
				if got != "" {
					t.Errorf("warned: %s", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warning lacks %q: %q", w, got)
				}
			}
		})
	}
	t.Run("a daemon that does not say", func(t *testing.T) {
		t.Setenv("http_proxy", "http://127.0.0.7:3128")
		old := httptest.NewServer(nil) // 404 for /readyz, no proxy field
		defer old.Close()
		if got := ProxyMismatch(ctx, old.URL, cache.Peer{}, upstream); got != "" {
			t.Errorf("warned about a daemon that names no proxy: %s", got)
		}
	})
}
