package main

import (
	"strings"
	"testing"
)

// Through tinyproxy with http_proxy set, download-only works and the proxy
// carried the traffic; with the proxy stopped, the error names the proxy
// and the upstream host.
func TestDownloadOnlyThroughProxy(t *testing.T) {
	t.Parallel()
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

// Two proxies, each seeing its own traffic (issue 15, must-show 6): the
// cache daemon's proxy comes from its own configuration (`proxy`, here
// its --proxy flag), and its upstream fetches (the channel it verifies by
// name and the artifacts) go through it, not through the proxy set in the
// operator's shell, which a prefetch request does not carry; the run
// warns once that the two differ. The operator's proxy then carries the
// nodes' downloads over SSH, and the daemon's sees none of them.
func TestOperatorAndDaemonProxiesSeeTheirOwnTraffic(t *testing.T) {
	longScenario(t)
	t.Parallel()
	opProxy, daemonProxy := startTinyproxy(t), startTinyproxy(t)
	lab, sshds := sshLab(t, 1)
	clear := []string{"http_proxy=", "https_proxy=", "all_proxy=", "no_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "ALL_PROXY=", "NO_PROXY="}
	lab.startCache(clear, "--proxy", "http://"+daemonProxy.addr, "--trust-root", lab.TrustRoot, "--upstream", lab.upstream.URL)
	opEnv := append(clear, "http_proxy=http://"+opProxy.addr, "https_proxy=http://"+opProxy.addr)
	upstreamHost := hostOf(lab.upstream.URL)
	artifactGETs := func(p *tinyproxy) int64 { return p.artifactGETs(t, upstreamHost) }

	r := lab.sentinel(opEnv, "upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if r.code != 0 {
		t.Fatalf("download-only: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	filled := lab.upstream.ArtifactDownloads()
	if got := artifactGETs(daemonProxy); filled == 0 || got != filled {
		t.Errorf("the daemon's proxy carried %d of the %d artifact downloads of the fill: want all\n%s", got, filled, daemonProxy.logText(t))
	}
	if !strings.Contains(daemonProxy.logText(t), "GET http://"+upstreamHost+"/") || !strings.Contains(daemonProxy.logText(t), "metadata/") {
		t.Errorf("the daemon read its channel around its proxy:\n%s", daemonProxy.logText(t))
	}
	if got := artifactGETs(opProxy); got != 0 {
		t.Errorf("the operator's proxy carried %d of the daemon's artifact downloads: a prefetch chose the daemon's proxy", got)
	}
	out := r.stdout + r.stderr
	if n := strings.Count(out, "proxies differ"); n != 1 || !strings.Contains(out, opProxy.addr) || !strings.Contains(out, daemonProxy.addr) {
		t.Errorf("want one warning naming both proxies (%s, %s), got %d:\n%s", opProxy.addr, daemonProxy.addr, n, out)
	}

	r = lab.sentinel(opEnv, "upgrade", "3.4.2", "--yes", "--no-cache")
	if r.code != 0 {
		t.Fatalf("upgrade from the upstream over SSH: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkReachedOverSSH(t, sshds)
	nodes := lab.upstream.ArtifactDownloads() - filled
	if got := artifactGETs(opProxy); nodes == 0 || got != nodes {
		t.Errorf("the operator's proxy carried %d of the nodes' %d artifact downloads: want all\n%s", got, nodes, opProxy.logText(t))
	}
	if got := artifactGETs(daemonProxy); got != filled {
		t.Errorf("the daemon's proxy carried %d artifact downloads, %d after the fill: the nodes' went through it", got, got-filled)
	}
	checkAllOn(t, lab, "3.4.2")
}

// hostOf is the host:port of an http URL.
func hostOf(rawURL string) string {
	h := strings.TrimPrefix(rawURL, "http://")
	if i := strings.Index(h, "/"); i >= 0 {
		h = h[:i]
	}
	return h
}

// artifactGETs counts the artifact downloads from host the proxy carried
// (artifacts are TUF targets: /targets/artifacts/<hash>.<name>).
func (p *tinyproxy) artifactGETs(t *testing.T, host string) (n int64) {
	for _, line := range strings.Split(p.logText(t), "\n") {
		if strings.Contains(line, "GET http://"+host+"/") && strings.Contains(line, "/artifacts/") {
			n++
		}
	}
	return n
}
