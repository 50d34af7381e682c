package main

import (
	"strings"
	"testing"
)

// Through tinyproxy with http_proxy set, download-only works and the proxy
// carried the traffic; with the proxy stopped, the error names the proxy
// and the upstream host.
func TestDownloadOnlyThroughProxy(t *testing.T) {
	proxy := startTinyproxy(t)
	lab := newLab(t, 1, "3.4.1")
	env := []string{"http_proxy=http://" + proxy.addr, "https_proxy=http://" + proxy.addr, "no_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="}
	lab.startCache(env)
	upstreamHost := strings.TrimSuffix(strings.TrimPrefix(lab.upstream.URL, "http://"), "/")

	r := lab.sentinel(env, "upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if r.code != 0 {
		t.Fatalf("download-only through the proxy: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	log := proxy.logText(t)
	if got := strings.Count(log, "Established connection to host"); got < 3 {
		t.Errorf("the proxy carried %d connections; the channel and the artifacts should have gone through it:\n%s", got, log)
	}
	if n := lab.upstream.ArtifactRequests(); n == 0 {
		t.Error("no artifact reached the upstream")
	}

	proxy.stop()
	r = lab.sentinel(env, "upgrade", "3.4.3", "--download-only", "--cache-ip", lab.cacheIP)
	if r.code == 0 {
		t.Fatal("download-only succeeded with the proxy stopped")
	}
	for _, want := range []string{"proxy " + proxy.addr, upstreamHost} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
}
