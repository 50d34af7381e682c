package main

// The end-to-end harness: what the scenarios of the *_e2e_test.go files
// share. Each feature file keeps only its own scenarios and the helpers no
// other file uses; harness_parts_test.go starts the real parts beside
// sentinel (sshd, tinyproxy, the DEA controller).
//
//   - the sentinel binary, built once, and longScenario, which keeps the
//     long scenarios for `make test-e2e`;
//   - the lab: a fresh one per test (a copy of what the test process made
//     for the first lab of those options), its journal, its channel's
//     signatures;
//   - running sentinel against a lab: to the end, killed after journal
//     record k, or in the background;
//   - what a node holds, for comparing runs;
//   - the cache node's daemon and the upstream's cut.
//
// A scenario calls t.Parallel() first (after longScenario), so that
// scenarios share the two cores of a test machine (one alone keeps about
// one busy), unless its outcome hangs on wall-clock time (live traffic,
// drain and reboot deadlines, clocks, watch windows, expiries, retries of
// an unreachable node) or it uses the machine's own state (the release
// builds, the Debian package and its fixed port): those run one at a time,
// before the others start.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// sentinelBin is the sentinel binary built once for the end-to-end tests:
// they run it as a user would, as a subprocess.
var sentinelBin string

// testBuildTags are the build tags of every sentinel these tests build to
// run: crashtest turns crash injection on (package crashhook), which the
// crash sweeps need. `make build`'s binary has no tags (build_test.go
// checks that it ignores the crash variables).
const testBuildTags = "crashtest"

// labBin is sentinel-lab, built beside it: the live lab's app instances and
// routers run it.
var labBin string

// labCache holds the channel and the node roots of the labs this process
// made, so that each lab is a copy of them rather than a fresh install.
var labCache *fixtures.LabCache

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sentinel-e2e-bin-")
	if err != nil {
		panic(err)
	}
	sentinelBin = filepath.Join(dir, "sentinel")
	labBin = filepath.Join(dir, "sentinel-lab")
	for bin, pkg := range map[string]string{sentinelBin: ".", labBin: "../sentinel-lab"} {
		build := testBuild("-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s for the end-to-end tests: %v\n", filepath.Base(bin), err)
			os.Exit(1)
		}
	}
	// The go command above inherits GOTOOLCHAIN (the Makefile exports it)
	// and go test puts its own toolchain first on PATH: the binary under
	// test is built by the toolchain running these tests, or they stop.
	if err := sameToolchain(sentinelBin); err != nil {
		fmt.Fprintln(os.Stderr, "building sentinel for the end-to-end tests:", err)
		os.Exit(1)
	}
	if labCache, err = fixtures.NewLabCache(filepath.Join(dir, "labs")); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testBuild is `go build` with the test build tags, static as `make build`
// is (CGO_ENABLED=0): what the nodes run, and each of the hundreds of
// agents a run starts skips the dynamic loader and libc's start-up.
func testBuild(args ...string) *exec.Cmd {
	cmd := exec.Command("go", append([]string{"build", "-tags", testBuildTags}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// writeExecutable writes an executable file from a child process, never
// through a file descriptor of this one: while this process has it open
// for writing, a child that a parallel test forks holds it open too until
// that child execs, and exec'ing the file meanwhile fails with "text file
// busy" (ETXTBSY, golang.org/issue/22315).
func writeExecutable(t testing.TB, path string, data []byte) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `cat >"$0" && chmod 755 "$0"`, path)
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("writing %s: %v\n%s", path, err, out)
	}
}

// sameToolchain says whether the binary at path was built by the Go
// version running this test.
func sameToolchain(path string) error {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}
	if info.GoVersion != runtime.Version() {
		return fmt.Errorf("%s built by %s, the tests run on %s: set GOTOOLCHAIN as the Makefile does", path, info.GoVersion, runtime.Version())
	}
	return nil
}

// e2eEnv selects the long scenarios: `make test-e2e` sets it to "long".
const e2eEnv = "SENTINEL_E2E"

// longScenario marks a test as a long end-to-end scenario (twenty nodes,
// every record of a crash sweep, ...): `make test-e2e` runs it, with
// SENTINEL_E2E=long, and CI runs both targets; `make test` and a plain
// `go test` skip it. The Makefile finds these tests by this call, so a
// test needs nothing else to be one.
func longScenario(t *testing.T) {
	t.Helper()
	if os.Getenv(e2eEnv) != "long" {
		t.Skip("long scenario: run by make test-e2e")
	}
}

// ----------------------------------------------------------------------------
// The lab

type testLab struct {
	*fixtures.Lab
	t        testing.TB
	upstream *fixtures.Upstream
	cacheIP  string // IP:PORT of the cache daemon, once started
	cacheCmd *exec.Cmd
	// cacheLog, if set, takes the cache daemon's log instead of the
	// test's stderr (a benchmark keeps its output to its figures).
	cacheLog io.Writer
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
	opt.Dir, opt.Cache = t.TempDir(), labCache
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

// core is the lab's core node.
func (l *testLab) core() cluster.Node {
	n, ok := l.Node("core")
	if !ok {
		l.t.Fatal("lab has no core node")
	}
	return n
}

// manifest reads a release manifest of the lab's channel.
func (l *testLab) manifest(version string) *release.Manifest {
	l.t.Helper()
	p := filepath.Join(l.SourceDir, "releases", version, "manifest.json")
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

// journalPath is the lab's most recent run journal.
func (l *testLab) journalPath() string {
	l.t.Helper()
	inv := l.inventory()
	p, err := rollout.Runs{Dir: inv.State()}.LatestPath()
	if err != nil || p == "" {
		l.t.Fatalf("no journal in %s: %v", inv.State(), err)
	}
	return p
}

// inventory loads the lab's cluster file as sentinel does.
func (l *testLab) inventory() *cluster.Inventory {
	l.t.Helper()
	inv, err := loadInventory(l.ClusterFile)
	if err != nil {
		l.t.Fatal(err)
	}
	return inv
}

// republish publishes docs of the lab's working tree (fixtures.Lab.SourceDir,
// slash paths) again as its publisher would after editing them: a new
// version of targets, snapshot and timestamp.
func (l *testLab) republish(docs ...string) {
	l.t.Helper()
	if err := l.Republish(docs...); err != nil {
		l.t.Fatal(err)
	}
}

// served is where the lab's upstream serves a target now (its
// consistent-snapshot file), for a test to damage it.
func (l *testLab) served(target string) string {
	l.t.Helper()
	p, err := l.ServedPath(target)
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

// source is a file of the lab's working tree, for a test to edit before
// republishing it.
func (l *testLab) source(target string) string {
	return filepath.Join(l.SourceDir, filepath.FromSlash(target))
}

// ----------------------------------------------------------------------------
// Running sentinel

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

// background is a sentinel process the test runs alongside others.
type background struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *bufio.Reader
}

// startSentinel starts sentinel against the lab, killed when the test ends.
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

// crashAt runs sentinel (an upgrade, a patch run) so that it SIGKILLs
// itself right after journal record k, and checks where it stopped.
func (l *testLab) crashAt(k int, args ...string) {
	l.t.Helper()
	r := l.sentinel([]string{fmt.Sprintf("%s=%d", resume.CrashAfterRecordEnv, k)}, args...)
	if r.signal != syscall.SIGKILL {
		l.t.Fatalf("upgrade with crash after record %d: exit %d signal %v, want SIGKILL\n%s", k, r.code, r.signal, r.stderr)
	}
	if k == 1 {
		// The first record is made durable in a temporary file before the
		// journal takes its name: a crash then leaves no run at all.
		if p, _ := (rollout.Runs{Dir: l.inventory().State()}).LatestPath(); p != "" {
			l.t.Fatalf("a crash before the first record was durable left a journal %s", p)
		}
		return
	}
	// A step's success is written with the record after it: a crash "at"
	// such a record comes once that next one is on disk.
	rep, err := resume.Read(l.journalPath())
	n := len(rep.Records)
	if err != nil || !(n == k || n == k+1 && rep.Records[k-1].Type == "step-done") {
		l.t.Fatalf("after a crash at record %d the journal holds %d records (%v)", k, n, err)
	}
}

// run runs the given sentinel executable against the lab with extra
// environment.
func (l *testLab) run(bin string, env []string, args ...string) result {
	l.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "SENTINEL_CLUSTER="+l.ClusterFile), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			r.signal, r.code = ws.Signal(), -1
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		l.t.Fatalf("running %s %v: %v", bin, args, err)
	}
	return r
}

// mustRun is run, and fails the test unless bin exits 0.
func (l *testLab) mustRun(bin string, env []string, args ...string) result {
	l.t.Helper()
	r := l.run(bin, env, args...)
	if r.code != 0 {
		l.t.Fatalf("%s %v: exit %d (signal %v)\nstdout:\n%s\nstderr:\n%s", bin, args, r.code, r.signal, r.stdout, r.stderr)
	}
	return r
}

// ----------------------------------------------------------------------------
// What a node holds

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

// fileSum is the sha256 of the file at p, in hex.
func fileSum(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// everyComponentOn asserts that each component's current link points at
// version and that it runs that version.
func everyComponentOn(t *testing.T, root, version string) {
	t.Helper()
	for _, c := range fixtures.Components() {
		if _, err := os.Stat(filepath.Join(root, "code", c.Name)); err != nil {
			continue // not one of this node's roles
		}
		link, _ := os.Readlink(filepath.Join(root, "code", c.Name, "current"))
		running, _ := fixtures.RunningVersion(root, c.Name)
		if link != "releases/"+version || running != version {
			t.Errorf("%s: current %s, running %q; want %s", c.Name, link, running, version)
		}
	}
}

// checkAllOn: every node records release v and runs every installed
// component on it.
func checkAllOn(t *testing.T, lab *testLab, v string) {
	t.Helper()
	for _, n := range lab.Nodes {
		rec, err := steps.ReadRecord(n.Root)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Release != v {
			t.Errorf("node %s records release %s, want %s", n.Name, rec.Release, v)
		}
		t.Run(n.Name, func(t *testing.T) { everyComponentOn(t, n.Root, v) })
	}
}

// mustRead reads the file at p, or fails the test.
func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ----------------------------------------------------------------------------
// The cache node and the upstream

// startCache makes the core node the cache node and runs the real
// `sentinel cache serve` for it, as an operator would: holding the
// channel's root and the lab's upstream, which prefetch needs (unless
// extraArgs give their own --trust-root).
func (l *testLab) startCache(env []string, extraArgs ...string) {
	l.t.Helper()
	if !slices.Contains(extraArgs, "--trust-root") {
		extraArgs = append(extraArgs, "--trust-root", l.TrustRoot, "--upstream", l.upstream.URL)
	}
	c, err := l.PrepareCache()
	if err != nil {
		l.t.Fatal(err)
	}
	core := l.core()
	crt, key := l.CacheTLSFiles()
	args := append([]string{"cache", "serve", "--dir", c.Dir, "--listen", core.Address + ":0", "--token-file", c.TokenFile, "--tls-cert", crt, "--tls-key", key}, extraArgs...)
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if l.cacheLog != nil {
		cmd.Stderr = l.cacheLog
	}
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
	l.cacheCmd = cmd
	_, port, _ := net.SplitHostPort(l.cacheIP)
	p, _ := strconv.Atoi(port)
	if err := l.SetCacheDaemon(c, p, cmd.Process.Pid); err != nil {
		l.t.Fatal(err)
	}
}

// stopCache stops the cache daemon (SIGTERM), as if its node were down.
func (l *testLab) stopCache() {
	l.t.Helper()
	if err := l.cacheCmd.Process.Signal(syscall.SIGTERM); err != nil {
		l.t.Fatal(err)
	}
	l.cacheCmd.Wait()
}

// cutUpstream stops the upstream, as if the internet were gone: from now
// on a tripwire answers on its address, counting (and refusing) whatever
// still comes.
func (l *testLab) cutUpstream() *tripwire {
	l.t.Helper()
	tw := &tripwire{}
	l.upstream.Cut(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw.hits.Add(1)
		http.Error(w, "the upstream is gone", http.StatusServiceUnavailable)
	}))
	return tw
}

type tripwire struct{ hits atomic.Int64 }
