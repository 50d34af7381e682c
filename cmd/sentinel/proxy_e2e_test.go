package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tinyproxy is Debian's tinyproxy, run in the foreground on loopback.
type tinyproxy struct {
	addr string
	log  string
	cmd  *exec.Cmd
}

func startTinyproxy(t *testing.T) *tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy is not installed (scripts/install-test-deps.sh installs it; CI runs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	p := &tinyproxy{addr: addr, log: filepath.Join(dir, "tinyproxy.log")}
	conf := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 60\nLogFile %q\nLogLevel Info\nMaxClients 100\n", port, p.log)
	if err := os.WriteFile(filepath.Join(dir, "tinyproxy.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-d", "-c", filepath.Join(dir, "tinyproxy.conf"))
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	// Ready when it accepts connections; bounded, not a fixed sleep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *tinyproxy) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

func (p *tinyproxy) logText(t *testing.T) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Through tinyproxy with http_proxy set, download-only works and the proxy
// carried the traffic; with the proxy stopped, the error names the proxy
// and the upstream host.
func TestDownloadOnlyThroughProxy(t *testing.T) {
	proxy := startTinyproxy(t)
	lab := newLab(t, 1, "3.4.1")
	env := []string{"http_proxy=http://" + proxy.addr, "https_proxy=http://" + proxy.addr, "no_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="}
	lab.startCache(env)
	upstreamHost := strings.TrimSuffix(strings.TrimPrefix(lab.upstream.URL, "http://"), "/index.json")

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
