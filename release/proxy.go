package release

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// ProxyFromEnvironment picks the proxy for a request as curl does: from
// http_proxy, https_proxy (and their upper-case forms), except for hosts that
// no_proxy lists. Unlike net/http's default it does not silently bypass the
// proxy for localhost and loopback addresses: an operator who sets a proxy
// gets it, and lists exceptions in no_proxy.
func ProxyFromEnvironment(req *http.Request) (*url.URL, error) {
	raw := ""
	switch req.URL.Scheme {
	case "https":
		raw = env("https_proxy")
	case "http":
		raw = env("http_proxy")
	}
	if raw == "" || bypassProxy(req.URL.Hostname(), req.URL.Port(), env("no_proxy")) {
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

func env(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return os.Getenv(strings.ToUpper(name))
}

// bypassProxy applies no_proxy: "*", host names (a leading dot or none
// matches subdomains too), and host:port entries.
func bypassProxy(host, port, noProxy string) bool {
	host = strings.ToLower(host)
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case e == "*":
			return true
		}
		if h, p, ok := strings.Cut(e, ":"); ok && !strings.Contains(p, ":") {
			if p != port {
				continue
			}
			e = h
		}
		e = strings.TrimPrefix(e, ".")
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

func proxyHint(rawURL string) string {
	if p := ProxyFor(rawURL); p != "" {
		return ", and that the proxy " + p + " from http_proxy/https_proxy works"
	}
	return ""
}

// describeProxyError says which proxy a failed request went through.
func describeProxyError(req *http.Request, err error) error {
	if p := ProxyFor(req.URL.String()); p != "" {
		return fmt.Errorf("through proxy %s to %s: %w", p, req.URL.Host, err)
	}
	return err
}
