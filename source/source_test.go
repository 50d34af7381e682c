package source

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

func TestCacheURL(t *testing.T) {
	for _, tc := range []struct{ addr, want, err string }{
		{"10.0.0.1", "http://10.0.0.1:9077", ""},
		{"10.0.0.1:8080", "http://10.0.0.1:8080", ""},
		{"[fd00::1]:8080", "http://[fd00::1]:8080", ""},
		{"10.0.0.1:0", "", "is not a port"},
		{"10.0.0.1:x", "", "is not a port"},
		{"10.0.0.1/x", "", "is not IP[:PORT]"},
		{"", "", "is not IP[:PORT]"},
		{"cache.example.invalid:9077", "", "is not IP[:PORT]"}, // a name: refused, never looked up
		{"cache.example.invalid", "", "is not IP[:PORT]"},
	} {
		got, err := CacheURL(tc.addr, 9077)
		var ae *AddressError
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("CacheURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		case tc.err != "" && (!errors.As(err, &ae) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("CacheURL(%q): error %v, want one saying %q", tc.addr, err, tc.err)
		}
	}
}

// The cache daemon's layout is applied here, and only to a cache source.
func TestSourceURLs(t *testing.T) {
	a := release.Artifact{URL: "https://up.invalid/artifacts/aok.tgz", SHA256: strings.Repeat("ab", 32)}
	up := Source{Upstream: "https://up.invalid/channel/"}
	if up.ChannelURL() != up.Upstream || up.ArtifactURL(a) != a.URL || up.FromCache() {
		t.Errorf("upstream: %s %s", up.ChannelURL(), up.ArtifactURL(a))
	}
	c := Source{Upstream: up.Upstream, Cache: "http://10.0.0.1:9077"}
	if c.ChannelURL() != "http://10.0.0.1:9077/channel/" || c.ArtifactURL(a) != "http://10.0.0.1:9077/artifacts/sha256/"+a.SHA256 {
		t.Errorf("cache: %s %s", c.ChannelURL(), c.ArtifactURL(a))
	}
	if c.HTTPClient().Transport.(*http.Transport).Proxy != nil {
		t.Error("the cache daemon is reached through a proxy")
	}
	if url, direct := (Fetch{CacheURL: c.Cache}).ArtifactURL(a); !direct || url != c.ArtifactURL(a) {
		t.Errorf("fetch from the cache: %s direct=%v", url, direct)
	}
}

// A document the cache daemon lacks says what to run to fill it, with the
// cache node's own address.
func TestExplainCacheMiss(t *testing.T) {
	c := Source{Cache: "http://10.0.0.1:9077", Fill: "sentinel upgrade 3.4.2 --download-only --cache-ip HOST"}
	for url, what := range map[string]string{
		"http://10.0.0.1:9077/channel/metadata/timestamp.json":                   "any channel documents",
		"http://10.0.0.1:9077/channel/targets/releases/3.4.2/ab12.manifest.json": "release 3.4.2",
		"http://10.0.0.1:9077/channel/targets/releases/3.4.2/ab12.patches.json":  "the patches of release 3.4.2",
	} {
		err := c.Explain(&channel.FetchError{URL: url, Status: http.StatusNotFound, Err: errors.New("404")})
		var miss *CacheMissError
		if !errors.As(err, &miss) || miss.What != what || !strings.Contains(err.Error(), "`sentinel upgrade 3.4.2 --download-only --cache-ip 10.0.0.1:9077`") {
			t.Errorf("%s: %v", url, err)
		}
	}
	down := c.Explain(&channel.FetchError{URL: "http://10.0.0.1:9077/channel/index.json", Err: errors.New("connection refused")})
	if !strings.Contains(down.Error(), "the cache node http://10.0.0.1:9077 does not answer") || strings.Contains(down.Error(), "upstream") {
		t.Errorf("an unreachable cache node: %v", down)
	}
	if err := (Source{}).Explain(&channel.FetchError{Status: 404}); errors.As(err, new(*CacheMissError)) {
		t.Error("a miss at the upstream blamed the cache node")
	}
}

// A resumed run names where its planned artifact URLs lie: the mirror
// whose base holds them, not a mirror whose base merely holds the
// upstream's; the upstream as "".
func TestPlannedAt(t *testing.T) {
	s := &Source{Upstream: "http://10.0.0.1/channel/", Mirrors: []string{"http://10.0.0.1/", "https://10.0.0.5/mirror/"}}
	for _, tc := range []struct {
		urls []string
		want string
	}{
		{[]string{"https://10.0.0.5/mirror/targets/a", "https://10.0.0.5/mirror/targets/b"}, "https://10.0.0.5/mirror/"},
		{[]string{"http://10.0.0.1/channel/targets/a"}, ""},
		{[]string{"http://10.0.0.1/other/targets/a"}, "http://10.0.0.1/"},
		{[]string{"https://10.0.0.5/mirror/targets/a", "http://10.0.0.9/targets/b"}, ""},
	} {
		var arts []release.Artifact
		for _, u := range tc.urls {
			arts = append(arts, release.Artifact{URL: u})
		}
		if got := s.PlannedAt(arts); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.urls, got, tc.want)
		}
	}
}
