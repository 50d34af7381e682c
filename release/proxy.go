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
	return EnvironmentProxy().Proxy(req)
}

// ProxySettings are the proxy variables, as read from an environment: the
// operator's are sent with the requests to the nodes' agents, whose own
// login environment (over SSH) does not have them.
type ProxySettings struct {
	HTTP  string `json:"http_proxy,omitempty"`
	HTTPS string `json:"https_proxy,omitempty"`
	All   string `json:"all_proxy,omitempty"`
	No    string `json:"no_proxy,omitempty"`
}

// EnvironmentProxy reads this process's proxy variables as curl does.
func EnvironmentProxy() ProxySettings {
	return ProxySettings{HTTP: os.Getenv("http_proxy"), HTTPS: firstEnv("https_proxy", "HTTPS_PROXY"),
		All: firstEnv("all_proxy", "ALL_PROXY"), No: firstEnv("no_proxy", "NO_PROXY")}
}

// Set reports whether any proxy is set.
func (ps ProxySettings) Set() bool { return ps.HTTP != "" || ps.HTTPS != "" || ps.All != "" }

// Proxy picks the proxy for a request, as ProxyFromEnvironment does.
func (ps ProxySettings) Proxy(req *http.Request) (*url.URL, error) {
	raw := ""
	switch req.URL.Scheme {
	case "https":
		raw = ps.HTTPS
	case "http":
		raw = ps.HTTP
	}
	if raw == "" {
		raw = ps.All
	}
	if raw == "" || bypassProxy(req.URL, ps.No) {
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
