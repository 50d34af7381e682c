package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// sentinelBin is the sentinel binary built once for the end-to-end tests:
// they run it as a user would, as a subprocess.
var sentinelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sentinel-e2e-bin-")
	if err != nil {
		panic(err)
	}
	sentinelBin = filepath.Join(dir, "sentinel")
	build := exec.Command("go", "build", "-o", sentinelBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sentinel for the end-to-end tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// upstream is one channel served over loopback for the whole test binary;
// each lab gets its own copy of nothing but node roots.
var (
	upstreamOnce sync.Once
	upstreamURL  string
	upstreamErr  error
)

type testLab struct {
	*fixtures.Lab
	t        testing.TB
	upstream *fixtures.Upstream
	cacheIP  string // IP:PORT of the cache daemon, once started
}

// newLab makes a lab whose cluster file points at an HTTP upstream on
// loopback serving the lab's own channel copy (so a test may damage it).
func newLab(t testing.TB, nodes int, rel string) *testLab {
	t.Helper()
	return newLabWith(t, fixtures.LabOptions{Nodes: nodes, Release: rel})
}

// newLabWith is newLab with every lab option.
func newLabWith(t testing.TB, opt fixtures.LabOptions) *testLab {
	t.Helper()
	opt.Dir = t.TempDir()
	lab, err := fixtures.CreateLab(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	up, err := fixtures.ServeUpstream(lab.UpstreamDir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if err := lab.SetUpstream(up.URL, 0); err != nil {
		t.Fatal(err)
	}
	return &testLab{Lab: lab, t: t, upstream: up}
}

func (l *testLab) core() cluster.Node {
	n, ok := l.Node("core")
	if !ok {
		l.t.Fatal("lab has no core node")
	}
	return n
}

type result struct {
	stdout, stderr string
	code           int
	signal         syscall.Signal
}

// sentinel runs the binary under test against the lab with extra
// environment.
func (l *testLab) sentinel(env []string, args ...string) result {
	l.t.Helper()
	return l.run(sentinelBin, env, args...)
}

// mustSucceed runs sentinel and fails the test unless it exits 0.
func (l *testLab) mustSucceed(args ...string) result {
	l.t.Helper()
	r := l.sentinel(nil, args...)
	if r.code != 0 {
		l.t.Fatalf("sentinel %v: exit %d (signal %v)\nstdout:\n%s\nstderr:\n%s", args, r.code, r.signal, r.stdout, r.stderr)
	}
	return r
}

// nodeState is everything about a node that an upgrade must get right:
// where each current link points, what node.json records (less its time),
// which version of each component runs, and each schema version.
func nodeState(t testing.TB, root string) map[string]string {
	t.Helper()
	st := map[string]string{}
	comps, _ := os.ReadDir(filepath.Join(root, "code"))
	for _, c := range comps {
		target, err := os.Readlink(filepath.Join(root, "code", c.Name(), "current"))
		if err != nil {
			t.Fatalf("component %s: %v", c.Name(), err)
		}
		st["current/"+c.Name()] = target
		rels, _ := os.ReadDir(filepath.Join(root, "code", c.Name(), "releases"))
		var names []string
		for _, r := range rels {
			names = append(names, r.Name())
		}
		st["releases/"+c.Name()] = strings.Join(names, ",")
		v, err := fixtures.RunningVersion(root, c.Name())
		if err != nil {
			t.Fatal(err)
		}
		st["running/"+c.Name()] = v
		if schema, err := os.ReadFile(fixtures.SchemaPath(root, c.Name())); err == nil {
			st["schema/"+c.Name()] = strings.TrimSpace(string(schema))
		}
	}
	rec, err := steps.ReadRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	rec.Updated = time.Time{} // differs between runs
	data, _ := json.Marshal(rec)
	st["node.json"] = string(data)
	return st
}

// treeDigest hashes every file, link and directory under dir.
func treeDigest(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return nil
			}
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %v\n", p, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "-> %s\n", target)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(h, "%x\n", sum)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// nodeDigest covers what an upgrade may change on a node: its code, its
// configuration and record, its cache and its running components.
func nodeDigest(t testing.TB, root string) string {
	var parts []string
	for _, d := range []string{"code", "etc", "cache", "var/run", "var/lib"} {
		parts = append(parts, treeDigest(t, filepath.Join(root, d)))
	}
	return strings.Join(parts, "/")
}

// background is a sentinel process the test runs alongside others.
type background struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *bufio.Reader
}

func startSentinel(t testing.TB, lab *testLab, args ...string) *background {
	t.Helper()
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &background{t: t, cmd: cmd, stdout: bufio.NewReader(out)}
	t.Cleanup(b.kill)
	return b
}

// waitForLine reads the process's output until a line contains s: the
// process itself says when it got there.
func waitForLine(t testing.TB, r *bufio.Reader, s string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if strings.Contains(line, s) {
			return
		}
		if err != nil {
			t.Fatalf("output ended before a line with %q: %v", s, err)
		}
	}
}

func (b *background) kill() {
	if b.cmd.ProcessState == nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	}
}

// manifest reads a release manifest of the lab's channel.
func (l *testLab) manifest(version string) *release.Manifest {
	l.t.Helper()
	p := filepath.Join(l.UpstreamDir, "releases", version, "manifest.json")
	data, err := os.ReadFile(p)
	if err != nil {
		l.t.Fatal(err)
	}
	m, err := release.ParseManifest(p, data)
	if err != nil {
		l.t.Fatal(err)
	}
	return m
}

// startCache makes the core node the cache node and runs the real
// `sentinel cache serve` for it, as an operator would.
func (l *testLab) startCache(env []string, extraArgs ...string) {
	l.t.Helper()
	c, err := l.PrepareCache()
	if err != nil {
		l.t.Fatal(err)
	}
	core := l.core()
	args := append([]string{"cache", "serve", "--dir", c.Dir, "--listen", core.Address + ":0", "--token-file", c.TokenFile}, extraArgs...)
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		l.t.Fatalf("cache daemon: %q, %v", line, err)
	}
	l.cacheIP = strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	_, port, _ := net.SplitHostPort(l.cacheIP)
	p, _ := strconv.Atoi(port)
	if err := l.SetCacheDaemon(c, p, cmd.Process.Pid); err != nil {
		l.t.Fatal(err)
	}
}

// cutUpstream stops the upstream, as if the internet were gone, and puts a
// tripwire on its address that counts (and refuses) whatever still comes.
func (l *testLab) cutUpstream() *tripwire {
	l.t.Helper()
	u, _ := url.Parse(l.upstream.URL)
	if err := l.upstream.Close(); err != nil {
		l.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		l.t.Fatalf("re-listening on the upstream's address: %v", err)
	}
	tw := &tripwire{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw.hits.Add(1)
		http.Error(w, "the upstream is gone", http.StatusServiceUnavailable)
	})}
	go srv.Serve(ln)
	l.t.Cleanup(func() { srv.Close() })
	return tw
}

type tripwire struct{ hits atomic.Int64 }
