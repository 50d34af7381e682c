package release

import (
	"net/http"
	"net/url"
	"testing"
)

func TestProxyFromEnvironment(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		url  string
		want string // proxy host, "" for direct
	}{
		{"http proxy", map[string]string{"http_proxy": "proxy:3128"}, "http://upstream.example/x", "proxy:3128"},
		{"loopback is not bypassed silently", map[string]string{"http_proxy": "http://127.0.0.1:8888"}, "http://127.0.0.1:9000/x", "127.0.0.1:8888"},
		{"upper-case HTTP_PROXY ignored (httpoxy)", map[string]string{"HTTP_PROXY": "proxy:3128"}, "http://upstream.example/x", ""},
		{"HTTPS_PROXY honoured", map[string]string{"HTTPS_PROXY": "proxy:3128"}, "https://upstream.example/x", "proxy:3128"},
		{"all_proxy fallback", map[string]string{"all_proxy": "proxy:1080"}, "https://upstream.example/x", "proxy:1080"},
		{"no_proxy domain and subdomains", map[string]string{"http_proxy": "p:1", "no_proxy": "example.com"}, "http://a.b.example.com/x", ""},
		{"no_proxy leading dot", map[string]string{"http_proxy": "p:1", "no_proxy": ".example.com"}, "http://example.com/x", ""},
		{"no_proxy is not a suffix match", map[string]string{"http_proxy": "p:1", "no_proxy": "ample.com"}, "http://example.com/x", "p:1"},
		{"no_proxy CIDR", map[string]string{"http_proxy": "p:1", "no_proxy": "10.0.0.0/8"}, "http://10.1.2.3:9077/x", ""},
		{"no_proxy CIDR miss", map[string]string{"http_proxy": "p:1", "no_proxy": "10.0.0.0/8"}, "http://11.1.2.3/x", "p:1"},
		{"no_proxy default port", map[string]string{"https_proxy": "p:1", "no_proxy": "example.com:443"}, "https://example.com/x", ""},
		{"no_proxy other port", map[string]string{"https_proxy": "p:1", "no_proxy": "example.com:8443"}, "https://example.com/x", "p:1"},
		{"no_proxy IPv6", map[string]string{"http_proxy": "p:1", "no_proxy": "[::1]:9077"}, "http://[::1]:9077/x", ""},
		{"no_proxy star", map[string]string{"http_proxy": "p:1", "NO_PROXY": "*"}, "http://anything/x", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"} {
				t.Setenv(k, c.env[k])
			}
			u, _ := url.Parse(c.url)
			p, err := ProxyFromEnvironment(&http.Request{URL: u})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if p != nil {
				got = p.Host
			}
			if got != c.want {
				t.Errorf("proxy for %s = %q, want %q", c.url, got, c.want)
			}
		})
	}
}
