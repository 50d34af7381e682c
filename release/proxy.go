package release

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// ProxyFromEnvironment picks the proxy for a request as curl does:
// http_proxy for http (lower case only: curl ignores HTTP_PROXY, which a CGI
// request can set), https_proxy or HTTPS_PROXY for https, all_proxy or
// ALL_PROXY otherwise; no_proxy (or NO_PROXY) lists exceptions: "*", host
// names matching themselves and their subdomains (a leading dot is
// optional), IP addresses, CIDR ranges, each optionally with a port. Unlike
// net/http's default it does not silently bypass the proxy for localhost:
// an operator who sets a proxy gets it.
func ProxyFromEnvironment(req *http.Request) (*url.URL, error) {
	raw := ""
	switch req.URL.Scheme {
	case "https":
		raw = firstEnv("https_proxy", "HTTPS_PROXY")
	case "http":
		raw = os.Getenv("http_proxy")
	}
	if raw == "" {
		raw = firstEnv("all_proxy", "ALL_PROXY")
	}
	if raw == "" || bypassProxy(req.URL, firstEnv("no_proxy", "NO_PROXY")) {
		return nil, nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the proxy setting %q is not a URL: %w", raw, err)
	}
	return u, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// bypassProxy applies a no_proxy list to a URL.
func bypassProxy(u *url.URL, noProxy string) bool {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ip, ipErr := netip.ParseAddr(host)
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if e == "*" {
			return true
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			if ipErr == nil && p.Contains(ip) {
				return true
			}
			continue
		}
		if h, p, err := net.SplitHostPort(e); err == nil {
			if p != port {
				continue
			}
			e = h
		}
		e = strings.TrimSuffix(strings.TrimPrefix(strings.Trim(e, "[]"), "."), ".")
		if a, err := netip.ParseAddr(e); err == nil {
			if ipErr == nil && a == ip {
				return true
			}
			continue
		}
		if host == e || strings.HasSuffix(host, "."+e) {
			return true
		}
	}
	return false
}

// ProxyFor names the proxy a URL goes through, "" for none.
func ProxyFor(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	p, err := ProxyFromEnvironment(&http.Request{URL: u})
	if err != nil || p == nil {
		return ""
	}
	return p.Host
}
