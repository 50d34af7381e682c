package preflight

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/release"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func near(got, want, slack uint64) bool {
	return got+slack >= want && got <= want+slack
}

func TestDiskOnTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "70m")

	facts, err := Disk(mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", facts)
	if !near(facts.FreeBytes, 70*MiB, MiB) || !near(facts.TotalBytes, 70*MiB, MiB) {
		t.Errorf("free %d, total %d bytes: want 70 MiB within 1 MiB", facts.FreeBytes, facts.TotalBytes)
	}
	if facts.Mount != mnt || facts.Path != mnt {
		t.Errorf("path %q mount %q, want both %q", facts.Path, facts.Mount, mnt)
	}

	// A cache_dir that does not exist yet is measured where it will be.
	sub := filepath.Join(mnt, "var", "sentinel-cache")
	facts, err = Disk(sub)
	if err != nil {
		t.Fatal(err)
	}
	if facts.Path != sub || facts.Mount != mnt || !near(facts.FreeBytes, 70*MiB, MiB) {
		t.Errorf("%+v: want path %s on the 70 MiB tmpfs at %s", facts, sub, mnt)
	}

	// Filling the file system shows.
	if err := os.WriteFile(filepath.Join(mnt, "ballast"), make([]byte, 10*MiB), 0o644); err != nil {
		t.Fatal(err)
	}
	facts, err = Disk(sub)
	if err != nil {
		t.Fatal(err)
	}
	if !near(facts.FreeBytes, 60*MiB, MiB) {
		t.Errorf("free %s after writing 10 MiB to a 70 MiB tmpfs", FormatBytes(facts.FreeBytes))
	}
	if err := os.Remove(filepath.Join(mnt, "ballast")); err != nil {
		t.Fatal(err)
	}

	facts, err = Disk(sub)
	if err != nil {
		t.Fatal(err)
	}
	_, errs := DiskCheck{Facts: facts, Need: 71 * MiB}.Check(context.Background())
	if len(errs) != 1 {
		t.Fatalf("DiskCheck with 71 MiB needed on 70 MiB: %v", errs)
	}
	msg := errs[0].Error()
	want := fmt.Sprintf("70.0 MiB free on %s (mounted at %s), 71.0 MiB needed: the whole file system is 70.0 MiB, so mount a larger one there", sub, mnt)
	if msg != want {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
	if w, errs := (DiskCheck{Facts: facts, Need: 69 * MiB}).Check(context.Background()); w != nil || errs != nil {
		t.Errorf("DiskCheck with 69 MiB needed on 70 MiB: %v %v", w, errs)
	}

	// Through the runner, as sentinel uses it.
	rep := Run(context.Background(), map[string][]Checker{"cache": {DiskCheck{Facts: facts, Need: 71 * MiB, CacheDir: true}}}, nil)
	err = rep.Err()
	var f *Failure
	if !errors.As(err, &f) || f.Node != "cache" || f.Check != NameDiskSpace || !strings.Contains(err.Error(), "cache.dir in the cluster file") ||
		!strings.HasSuffix(err.Error(), "--ignore-preflight-errors=DiskSpace (or all)") {
		t.Errorf("Err() = %v", err)
	}
}

func TestDiskErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Disk(filepath.Join(file, "sub"))
	if !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), file) {
		t.Errorf("Disk under a regular file: %v, want ENOTDIR naming the path", err)
	}

	// A relative path is measured too.
	t.Chdir(dir)
	facts, err := Disk("not/yet")
	if err != nil || facts.TotalBytes == 0 || facts.Path != "not/yet" || facts.Mount == "" {
		t.Errorf("Disk(relative) = %+v, %v", facts, err)
	}
}

func TestMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/mnt/my\040disk\134x`); got != `/mnt/my disk\x` {
		t.Errorf("unescape: %q", got)
	}
	if got := unescapeMountinfo(`/end\04`); got != `/end\04` {
		t.Errorf("unescape of a cut escape: %q", got)
	}
	mounts := []mount{{point: "/"}, {point: "/srv"}, {point: "/srv/cache"}, {point: "/srv"}, {point: "/srvx"}}
	mounts[3].fstype = "hides the first /srv"
	for p, want := range map[string]string{"/": "/", "/etc": "/", "/srv": "/srv", "/srv/x": "/srv", "/srvx/a": "/srvx", "/srv/cache/sha256": "/srv/cache", "/srv/cachex": "/srv"} {
		m := mountOf(mounts, p)
		if m.point != want {
			t.Errorf("mountOf(%s) = %s, want %s", p, m.point, want)
		}
		if want == "/srv" && m.fstype == "" {
			t.Errorf("mountOf(%s) took the hidden mount", p)
		}
	}
}

// The memory probe runs in a child process (the test binary again) put in
// a fresh cgroup: the child prints its MemoryFacts after this marker.
const (
	memoryChildEnv = "SENTINEL_PREFLIGHT_MEMORY_CHILD"
	factsMarker    = "MEMORY-FACTS "
)

// TestMemoryProbeChild is the child's side: it holds the resident memory
// the parent asks for, then prints Memory() (mode "probe"), or holds it,
// says "ready" and waits for its stdin to close (mode "hold").
func TestMemoryProbeChild(t *testing.T) {
	mode := os.Getenv(memoryChildEnv)
	if mode == "" {
		t.Skip("the child of the cgroup tests")
	}
	hold, _ := strconv.Atoi(os.Getenv("HOLD_MIB"))
	ballast := make([]byte, hold<<20)
	for i := range ballast {
		ballast[i] = 1 // resident, not just reserved
	}
	switch mode {
	case "probe":
		facts, err := Memory(os.Getenv("MEMORY_CGROUP"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(facts)
		fmt.Printf("%s%s\n", factsMarker, b)
	case "hold":
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	}
	if len(ballast) > 0 {
		ballast[len(ballast)/2]++ // keep the ballast alive until here
	}
}

// memoryCgroupV1 makes a fresh memory cgroup with the given limit (0: none),
// removed at the end of the test; it skips when that is not possible.
func memoryCgroupV1(t *testing.T, limit uint64) (dir, name string) {
	t.Helper()
	const root = "/sys/fs/cgroup/memory"
	if err := unix.Access(root, unix.W_OK); err != nil {
		t.Skipf("%s is not writable (%v): needs cgroup v1 memory and root", root, err)
	}
	if levels, v, _, err := liveView.memoryCgroups(""); err != nil || v != 1 {
		t.Skipf("this process is not in a cgroup v1 memory hierarchy (version %d, %d limits, %v)", v, len(levels), err)
	}
	buf := make([]byte, 6)
	rand.Read(buf)
	name = "/sentinel-preflight-test-" + hex.EncodeToString(buf)
	dir = root + name
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing the cgroup: %v", err)
		}
	})
	if limit > 0 {
		setLimit(t, dir, limit)
	}
	return dir, name
}

func setLimit(t *testing.T, dir string, limit uint64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatUint(limit, 10)), 0o644); err != nil {
		t.Fatalf("setting the cgroup's limit: %v", err)
	}
}

// inCgroup is a command running this test binary as mode inside the
// cgroup dir: the shell moves itself there, then becomes the test binary.
func inCgroup(dir, mode string, holdMiB int, measure ...string) *exec.Cmd {
	cmd := exec.Command("sh", "-c", `echo $$ > "$CGROUP/cgroup.procs" && exec "$0" "$@"`,
		os.Args[0], "-test.run=^TestMemoryProbeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), memoryChildEnv+"="+mode, "CGROUP="+dir, fmt.Sprintf("HOLD_MIB=%d", holdMiB), "MEMORY_CGROUP="+strings.Join(measure, ""))
	return cmd
}

// probeIn runs Memory(measure) in a child inside the cgroup dir.
func probeIn(t *testing.T, dir string, holdMiB int, measure string) MemoryFacts {
	t.Helper()
	var stderr bytes.Buffer
	cmd := inCgroup(dir, "probe", holdMiB, measure)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s%s", err, out, stderr.Bytes())
	}
	for _, line := range strings.Split(string(out), "\n") {
		if js, ok := strings.CutPrefix(line, factsMarker); ok {
			var f MemoryFacts
			if err := json.Unmarshal([]byte(js), &f); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", js)
			return f
		}
	}
	t.Fatalf("no facts from the child:\n%s%s", out, stderr.Bytes())
	return MemoryFacts{}
}

func TestMemoryInCgroupV1(t *testing.T) {
	dir, name := memoryCgroupV1(t, 300*MiB)
	const slack = 4 * MiB

	for _, tt := range []struct {
		limit   uint64
		holdMiB int // resident memory of the probe itself: not counted
	}{
		{300 * MiB, 0},
		{200 * MiB, 0},
		{300 * MiB, 48},
	} {
		setLimit(t, dir, tt.limit)
		f := probeIn(t, dir, tt.holdMiB, name)
		if !near(f.AvailableBytes, tt.limit, slack) {
			t.Errorf("limit %s, probe holding %d MiB: %s available, want the limit within %s",
				FormatBytes(tt.limit), tt.holdMiB, FormatBytes(f.AvailableBytes), FormatBytes(slack))
		}
		if f.Source != "cgroup v1 "+name || f.Cgroup != name || f.CgroupLimitBytes != tt.limit {
			t.Errorf("source %q, cgroup %q, limit %d: want the cgroup %s, limit %d", f.Source, f.Cgroup, f.CgroupLimitBytes, name, tt.limit)
		}
		if tt.holdMiB > 0 && f.CgroupUsageBytes < uint64(tt.holdMiB)*MiB {
			t.Errorf("cgroup usage %s while the probe holds %d MiB: the test does not test what it says", FormatBytes(f.CgroupUsageBytes), tt.holdMiB)
		}
		if f.HostAvailableBytes < f.AvailableBytes {
			t.Errorf("host available %d < available %d", f.HostAvailableBytes, f.AvailableBytes)
		}
	}

	// Another process of the node holding 48 MiB does count, with its runtime.
	setLimit(t, dir, 200*MiB)
	hold := inCgroup(dir, "hold", 48)
	stdin, _ := hold.StdinPipe()
	stdout, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the cgroup is removed
		stdin.Close()
		hold.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder said %q, %v", line, err)
	}
	held, err := chargedBytes(fmt.Sprintf("/proc/%d/status", hold.Process.Pid))
	if err != nil || held < 48*MiB {
		t.Fatalf("the holder has %s, %v: want at least 48 MiB", FormatBytes(held), err)
	}
	f := probeIn(t, dir, 0, name)
	if want := 200*MiB - held; f.AvailableBytes > want+MiB || f.AvailableBytes+slack < want {
		t.Errorf("%s available with another process holding %s under a 200 MiB limit: want about %s",
			FormatBytes(f.AvailableBytes), FormatBytes(held), FormatBytes(want))
	}
	_, errs := MemoryCheck{Facts: f, Need: NodeMemoryBytes, Roles: []string{"dea"}}.Check(context.Background())
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "(memory cgroup "+name+" limit 200.0 MiB), 512.0 MiB needed") {
		t.Errorf("MemoryCheck: %v", errs)
	}
}

// A probe that runs in a small cgroup (an SSH login session's) but is not
// told where the roles run measures the node as a whole, not its own
// cgroup. On the commit where the issue was filed it reported the
// session's limit.
func TestMemoryNotTheProbesOwnCgroup(t *testing.T) {
	dir, name := memoryCgroupV1(t, 200*MiB)
	f := probeIn(t, dir, 0, "")
	if f.Source != "host" || f.Cgroup == name || f.AvailableBytes != f.HostAvailableBytes {
		t.Errorf("%+v: want the node's figure, not the probe's cgroup %s (limit 200 MiB)", f, name)
	}
	// The roles' cgroup, named, is measured from outside it: the probe's
	// own memory is not taken off its usage.
	roles, rolesName := memoryCgroupV1(t, 300*MiB)
	holder := inCgroup(roles, "hold", 32)
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder said %q, %v", line, err)
	}
	f = probeIn(t, dir, 0, rolesName)
	if f.Source != "cgroup v1 "+rolesName || f.CgroupLimitBytes != 300*MiB || f.AvailableBytes > 300*MiB-32*MiB {
		t.Errorf("%+v: want the roles' cgroup %s, 300 MiB less what its process holds", f, rolesName)
	}
	if _, err := Memory("/no-such-cgroup-here"); err == nil || !strings.Contains(err.Error(), "memory_cgroup") {
		t.Errorf("a cgroup that does not exist: %v", err)
	}
}

// TestMemoryInThisProcess: whatever this process's cgroup, never more than the host has.
func TestMemoryInThisProcess(t *testing.T) {
	f, err := Memory("")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", f)
	if f.AvailableBytes == 0 || f.AvailableBytes > f.HostAvailableBytes {
		t.Errorf("%+v: available must be in (0, host available]", f)
	}
	if f.Source == "host" && f.AvailableBytes != f.HostAvailableBytes {
		t.Errorf("%+v: source host but not the host's figure", f)
	}
	if avail, ok := memAvailable(t); ok && !near(f.HostAvailableBytes, avail, 256*MiB) {
		t.Errorf("host available %s, /proc/meminfo says %s", FormatBytes(f.HostAvailableBytes), FormatBytes(avail))
	}
}

// TestMemoryInCgroupWithoutLimit: in a cgroup without a limit (under the
// root, which has none either), the host's figure.
func TestMemoryInCgroupWithoutLimit(t *testing.T) {
	dir, name := memoryCgroupV1(t, 0)
	f := probeIn(t, dir, 0, name)
	if f.Source != "host" || f.Cgroup != "" || f.AvailableBytes != f.HostAvailableBytes || f.CgroupLimitBytes != 0 {
		t.Errorf("%+v: want the host's figure and no cgroup", f)
	}
}

func memAvailable(t *testing.T) (uint64, bool) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10, err == nil
		}
	}
	return 0, false
}

// TestCgroupLevels walks hierarchies laid out in directories, as the
// kernel shows them: which ancestors' limits apply, and what they say.
func TestCgroupLevels(t *testing.T) {
	layout := func(t *testing.T, files map[string]string) string {
		root := t.TempDir()
		for name, value := range files {
			file := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(value+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	v2 := map[string]string{ // the root has no memory.max; /a/b has none either
		"a/memory.max": "314572800", "a/memory.current": "104857600", "a/memory.stat": "anon 1\ninactive_file 10485760\nactive_file 5",
		"a/b/memory.max": "max", "a/b/memory.current": "52428800",
		"a/b/c/memory.max": "1073741824", "a/b/c/memory.current": "52428800",
	}
	v1 := map[string]string{
		"memory.limit_in_bytes": "9223372036854771712", "memory.usage_in_bytes": "1", "memory.use_hierarchy": "1",
		"a/memory.limit_in_bytes": "314572800", "a/memory.usage_in_bytes": "104857600", "a/memory.use_hierarchy": "0",
		"a/memory.stat":             "inactive_file 1\ntotal_inactive_file 10485760",
		"a/b/memory.limit_in_bytes": "209715200", "a/b/memory.usage_in_bytes": "52428800", "a/b/memory.use_hierarchy": "1",
		"a/b/c/memory.limit_in_bytes": "9223372036854771712", "a/b/c/memory.usage_in_bytes": "52428800",
	}
	tests := []struct {
		name  string
		files map[string]string
		cg    cgroupFiles
		mroot string // the mount's root in the hierarchy
		want  []cgroupLevel
	}{
		{"v2", v2, cgroupV2Files, "/", []cgroupLevel{{"/a/b/c", 1 << 30, 50 * MiB, 0}, {"/a", 300 * MiB, 100 * MiB, 10 * MiB}}},
		{"v1, /a not hierarchical", v1, cgroupV1Files, "/", []cgroupLevel{{"/a/b", 200 * MiB, 50 * MiB, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := layout(t, tt.files)
			levels, err := cgroupLevels(mount{root: "/", point: root}, "/a/b/c", tt.cg)
			if err != nil || fmt.Sprint(levels) != fmt.Sprint(tt.want) {
				t.Errorf("levels %v, %v; want %v", levels, err, tt.want)
			}
			// A mount of a sub-tree (a container's view): names stay as the kernel gives them.
			levels, err = cgroupLevels(mount{root: "/a", point: filepath.Join(root, "a")}, "/a/b/c", tt.cg)
			if err != nil || fmt.Sprint(levels) != fmt.Sprint(tt.want) {
				t.Errorf("sub-tree mount: levels %v, %v; want %v", levels, err, tt.want)
			}
			if err := os.WriteFile(filepath.Join(root, "a", "b", "c", tt.cg.limit), []byte("lots\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := cgroupLevels(mount{root: "/", point: root}, "/a/b/c", tt.cg); err == nil || !strings.Contains(err.Error(), `"lots"`) {
				t.Errorf("garbage in %s: %v", tt.cg.limit, err)
			}
		})
	}
}

// proxy is a tiny forward proxy: CONNECT tunnels, and absolute-form
// requests forwarded (502 when the host cannot be reached).
type proxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD target"
}

func newProxy(t *testing.T) *proxy {
	p := &proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.RequestURI)
	p.mu.Unlock()
	if r.Method == http.MethodConnect {
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(rw, "HTTP/1.1 200 Connection established\r\n\r\n")
		rw.Flush()
		go io.Copy(up, rw)
		io.Copy(conn, up)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	resp, err := (&http.Transport{}).RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func fixedProxy(rawURL string) func(*http.Request) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	return func(*http.Request) (*url.URL, error) { return u, err }
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestReach(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler()) // any answer from the upstream will do
	t.Cleanup(upstream.Close)
	tlsUpstream := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsUpstream.Config.ErrorLog = log.New(io.Discard, "", 0) // a bare TCP connect is a TLS handshake error to it
	tlsUpstream.StartTLS()
	t.Cleanup(tlsUpstream.Close)
	prox := newProxy(t)
	proxyAddr := prox.Listener.Addr().String()
	closed := closedAddr(t)
	deadProxy := closedAddr(t)
	badGateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cannot reach the host", http.StatusBadGateway)
	}))
	t.Cleanup(badGateway.Close)
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the kernel does) but never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name      string
		url       string
		proxy     string // "" for none
		ok        bool
		errHas    []string
		proxySeen string // a request the proxy must have seen
	}{
		{name: "direct", url: upstream.URL + "/stable/index.json", ok: true},
		{name: "direct https", url: tlsUpstream.URL, ok: true},
		{name: "http through proxy", url: upstream.URL + "/stable/index.json", proxy: prox.URL, ok: true,
			proxySeen: "HEAD " + upstream.URL + "/stable/index.json"},
		{name: "https through proxy", url: tlsUpstream.URL + "/stable/index.json", proxy: prox.URL, ok: true,
			proxySeen: "CONNECT " + tlsUpstream.Listener.Addr().String()},
		{name: "closed port", url: "http://" + closed + "/x", errHas: []string{"reaching " + closed + ":", "connection refused"}},
		{name: "closed port through proxy (502)", url: "http://" + closed + "/x", proxy: prox.URL,
			errHas: []string{"reaching " + closed + " through proxy " + proxyAddr, "502 Bad Gateway", "could not reach the host"}},
		{name: "closed https port through proxy", url: "https://" + closed, proxy: prox.URL,
			errHas: []string{"reaching " + closed + " through proxy " + proxyAddr, "answered CONNECT " + closed + " with 502 Bad Gateway"}},
		{name: "proxy closed", url: upstream.URL, proxy: "http://" + deadProxy,
			errHas: []string{"reaching " + upstream.Listener.Addr().String() + " through proxy " + deadProxy, "connecting to the proxy", "connection refused"}},
		{name: "proxy answers 502", url: upstream.URL, proxy: badGateway.URL,
			errHas: []string{"through proxy " + badGateway.Listener.Addr().String(), "answered HEAD " + upstream.URL + " with 502 Bad Gateway"}},
		{name: "proxy refuses CONNECT", url: "https://upgrade.example.com", proxy: badGateway.URL,
			errHas: []string{"reaching upgrade.example.com:443 through proxy", "answered CONNECT upgrade.example.com:443 with 502"}},
		{name: "proxy silent", url: "https://upgrade.example.com", proxy: "http://" + silent.Addr().String(),
			errHas: []string{"through proxy " + silent.Addr().String(), "no answer within 300ms"}},
		{name: "proxy scheme", url: upstream.URL, proxy: "socks5://127.0.0.1:1080", errHas: []string{`scheme "socks5" not supported`}},
		{name: "not a URL", url: "ftp://example.com/x", errHas: []string{`"ftp://example.com/x": not an http or https URL`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var proxyFor func(*http.Request) (*url.URL, error)
			if tt.proxy != "" {
				proxyFor = fixedProxy(tt.proxy)
			}
			f := Reach(context.Background(), tt.url, proxyFor, 300*time.Millisecond)
			t.Logf("%+v", f)
			if f.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", f.OK, tt.ok, f.Error)
			}
			if tt.ok && f.Error != "" {
				t.Errorf("OK with error %q", f.Error)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(f.Error, s) {
					t.Errorf("error %q does not say %q", f.Error, s)
				}
			}
			if wantVia := tt.proxy != "" && !strings.HasPrefix(tt.proxy, "socks5"); wantVia != (f.Via != "") {
				t.Errorf("via %q with proxy %q", f.Via, tt.proxy)
			}
			if tt.proxySeen != "" && !contains(prox.requests(), tt.proxySeen) {
				t.Errorf("the proxy saw %q, not %q", prox.requests(), tt.proxySeen)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestReachWithProxyFromEnvironment passes sentinel's own proxy picker.
func TestReachWithProxyFromEnvironment(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(upstream.Close)
	prox := newProxy(t)
	t.Setenv("http_proxy", prox.URL)
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("no_proxy", "")
	t.Setenv("NO_PROXY", "")

	f := Reach(context.Background(), upstream.URL, release.ProxyFromEnvironment, 5*time.Second)
	if !f.OK || f.Via != prox.Listener.Addr().String() {
		t.Errorf("%+v: want OK through %s", f, prox.Listener.Addr())
	}
	t.Setenv("no_proxy", "127.0.0.1")
	f = Reach(context.Background(), upstream.URL, release.ProxyFromEnvironment, 5*time.Second)
	if !f.OK || f.Via != "" {
		t.Errorf("%+v: want OK, direct (no_proxy)", f)
	}
	if got := prox.requests(); len(got) != 1 {
		t.Errorf("the proxy saw %q: want one request", got)
	}

	// As the agent reports it and the orchestrator checks it.
	t.Setenv("no_proxy", "")
	facts := []ReachFacts{
		Reach(context.Background(), upstream.URL, release.ProxyFromEnvironment, 5*time.Second),
		Reach(context.Background(), "http://"+closedAddr(t)+"/index.json", release.ProxyFromEnvironment, 5*time.Second),
	}
	b, err := json.Marshal(facts)
	if err != nil {
		t.Fatal(err)
	}
	var back []ReachFacts
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	_, errs := ReachCheck{Facts: back}.Check(context.Background())
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "through proxy "+prox.Listener.Addr().String()) || !strings.Contains(errs[0].Error(), "http_proxy") {
		t.Errorf("ReachCheck: %v", errs)
	}
}

// TestMemoryInRecordedTrees measures cgroup trees laid out under testdata
// as the kernel shows them (v2 on a systemd host and in a container, v1 on
// a hybrid host), the probe in the SSH login session's small scope: the
// node as a whole unless the roles' cgroup is named, never the session.
func TestMemoryInRecordedTrees(t *testing.T) {
	const host = 8 << 30
	for _, tt := range []struct {
		tree, cgroup string
		source       string
		available    uint64
		err          string
	}{
		{"v2-systemd-session", "", "host", host, ""},
		{"v2-systemd-session", "/system.slice/stackato.slice", "cgroup v2 /system.slice/stackato.slice", 3<<30 - (2<<30 - 512*MiB), ""},
		{"v2-systemd-session", "/system.slice/stackato.slice/dea_ng.service", "cgroup v2 /system.slice/stackato.slice", 3<<30 - (2<<30 - 512*MiB), ""},
		{"v2-systemd-session", "/system.slice/nope.slice", "", 0, "no such cgroup under /sys/fs/cgroup (cgroup v2)"},
		{"v2-container", "", "cgroup v2 /", 4<<30 - (1<<30 - 256*MiB), ""},
		{"v1-hybrid-session", "", "host", host, ""},
		{"v1-hybrid-session", "/system.slice/stackato.slice", "cgroup v1 /system.slice/stackato.slice", 3<<30 - (2<<30 - 512*MiB), ""},
	} {
		t.Run(tt.tree+tt.cgroup, func(t *testing.T) {
			dir := filepath.Join("testdata", "cgroupfs", tt.tree)
			v := cgroupView{selfCgroup: filepath.Join(dir, "proc-self-cgroup"), mountinfo: filepath.Join(dir, "proc-self-mountinfo"),
				fsRoot: dir, meminfo: func() (uint64, error) { return host, nil }}
			f, err := v.memory(tt.cgroup)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.available
			if tt.tree == "v2-container" {
				want += f.ProbeBytes // the probe runs inside the container: its own memory is not the node's
			}
			if f.Source != tt.source || f.AvailableBytes != want || strings.Contains(f.Cgroup, "session") {
				t.Errorf("%+v: want %s available from %s", f, FormatBytes(tt.available), tt.source)
			}
		})
	}
}
