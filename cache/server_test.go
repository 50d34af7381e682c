package cache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- helpers (prefixed: the package's other tests live alongside) ----

func daemonRand(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func daemonWriteFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testArtifact is a manifest's artifact entry, for pull-through tests.
type testArtifact struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func daemonManifest(arts ...testArtifact) []byte {
	type comp struct {
		Name     string       `json:"name"`
		Artifact testArtifact `json:"artifact"`
	}
	var doc struct {
		Version    string `json:"version"`
		Components []comp `json:"components"`
	}
	doc.Version = "1.0.0"
	for i, a := range arts {
		doc.Components = append(doc.Components, comp{Name: fmt.Sprintf("c%d", i), Artifact: a})
	}
	b, _ := json.Marshal(doc)
	return b
}

// daemonUp is an upstream channel on 127.0.0.1 serving a directory and
// counting the requests per path.
type daemonUp struct {
	URL string
	mu  sync.Mutex
	n   map[string]int
}

func (u *daemonUp) hits(p string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[p]
}

func daemonUpstream(t *testing.T, dir string, files map[string][]byte) *daemonUp {
	t.Helper()
	for name, data := range files {
		daemonWriteFile(t, filepath.Join(dir, filepath.FromSlash(name)), data)
	}
	u := &daemonUp{n: map[string]int{}}
	fsrv := http.FileServer(http.Dir(dir))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.n[r.URL.Path]++
		u.mu.Unlock()
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	u.URL = ts.URL
	return u
}

// daemonSrv is a Server running Serve on 127.0.0.1:0.
type daemonSrv struct {
	s      *Server
	addr   string
	base   string
	tr     *http.Transport
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve has returned
	err    error         // what Serve returned
}

func daemonStart(t *testing.T, cfg ServerConfig) *daemonSrv {
	t.Helper()
	return daemonStartServer(t, cfg, nil)
}

func daemonStartServer(t *testing.T, cfg ServerConfig, onShutdown func()) *daemonSrv {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = t.Logf
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.onShutdown = onShutdown
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemonSrv{s: s, cancel: cancel, done: make(chan struct{})}
	ready := make(chan net.Addr, 1)
	go func() {
		defer close(d.done)
		d.err = s.Serve(ctx, "127.0.0.1:0", func(a net.Addr) { ready <- a })
	}()
	select {
	case a := <-ready:
		d.addr = a.String()
	case <-d.done:
		t.Fatalf("Serve: %v", d.err)
	}
	d.base = "http://" + d.addr
	d.tr = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	d.client = &http.Client{Transport: d.tr}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return d
}

// stop closes the client's idle connections, cancels Serve's context and
// returns what Serve returned.
func (d *daemonSrv) stop() error {
	d.tr.CloseIdleConnections()
	d.cancel()
	<-d.done
	return d.err
}

func (d *daemonSrv) do(t *testing.T, method, p string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, d.base+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (d *daemonSrv) get(t *testing.T, p string) (int, []byte) {
	t.Helper()
	resp, body := d.do(t, http.MethodGet, p, nil)
	return resp.StatusCode, body
}

// daemonParallel runs fn(0..n-1) at once (released together) and returns
// their results.
func daemonParallel(t *testing.T, n int, fn func(i int) int) []int {
	out := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// daemonRaw sends target verbatim on a fresh connection, so nothing on the
// client side cleans or re-encodes it.
func daemonRaw(t *testing.T, addr, method, target string) (int, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: cache\r\nConnection: close\r\n\r\n", method, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func daemonFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(des)
}

// daemonEventually polls cond until it holds or the deadline passes: a
// bounded wait for goroutines and descriptors owned by the runtime to wind
// down after Shutdown and CloseIdleConnections have returned.
func daemonEventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// ---- tests ----

func TestServerConcurrentRanges(t *testing.T) {
	// Warm the network poller up so its descriptors are in the baseline.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	st := &Store{Dir: t.TempDir()}
	data := daemonRand(3<<20+123, 10)
	d := daemonPut(t, st, data)
	size := int64(len(data))

	baseG := runtime.NumGoroutine()
	baseFD := daemonFDs(t)

	srv := daemonStart(t, ServerConfig{Store: st})
	etag := `"` + d + `"`
	url := "/artifacts/sha256/" + d

	const n = 200
	var errs atomic.Int64
	fail := func(i int, format string, args ...any) {
		errs.Add(1)
		t.Errorf("request %d: "+format, append([]any{i}, args...)...)
	}
	daemonParallel(t, n, func(i int) int {
		r := rand.New(rand.NewPCG(uint64(i), 99))
		a := r.Int64N(size)
		b := a + r.Int64N(min(size-a, 512<<10))
		rangeHdr := fmt.Sprintf("bytes=%d-%d", a, b)
		req, _ := http.NewRequest(http.MethodGet, srv.base+url, nil)
		kind := i % 7
		switch kind {
		case 0: // full GET
		case 1: // HEAD
			req.Method = http.MethodHead
		case 2, 3: // one range
			req.Header.Set("Range", rangeHdr)
		case 4: // If-Range with the right ETag: the range
			req.Header.Set("Range", rangeHdr)
			req.Header.Set("If-Range", etag)
		case 5: // If-Range with a wrong ETag: the whole file
			req.Header.Set("Range", rangeHdr)
			req.Header.Set("If-Range", `"`+strings.Repeat("0", 64)+`"`)
		case 6: // two ranges, and a suffix
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d,-%d", a/2, a/2+99, 1+r.Int64N(4096)))
		}
		resp, err := srv.client.Do(req)
		if err != nil {
			fail(i, "%v", err)
			return 0
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			fail(i, "reading: %v", err)
			return 0
		}
		if resp.Header.Get("ETag") != etag {
			fail(i, "ETag %q", resp.Header.Get("ETag"))
		}
		if resp.Header.Get("Last-Modified") == "" {
			fail(i, "no Last-Modified")
		}
		switch kind {
		case 0, 5:
			if resp.StatusCode != 200 || !bytes.Equal(body, data) {
				fail(i, "kind %d: HTTP %d, %d bytes", kind, resp.StatusCode, len(body))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
				fail(i, "Content-Type %q", ct)
			}
		case 1:
			if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != size {
				fail(i, "HEAD: HTTP %d, length %d, body %d", resp.StatusCode, resp.ContentLength, len(body))
			}
		case 2, 3, 4:
			if resp.StatusCode != 206 || !bytes.Equal(body, data[a:b+1]) {
				fail(i, "range %s: HTTP %d, %d bytes", rangeHdr, resp.StatusCode, len(body))
			}
			if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", a, b, size) {
				fail(i, "Content-Range %q", cr)
			}
		case 6:
			mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			if resp.StatusCode != 206 || mt != "multipart/byteranges" {
				fail(i, "multi-range: HTTP %d, %s", resp.StatusCode, mt)
				return 0
			}
			mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
			parts := 0
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					fail(i, "multipart: %v", err)
					break
				}
				var x, y, total int64
				fmt.Sscanf(p.Header.Get("Content-Range"), "bytes %d-%d/%d", &x, &y, &total)
				pb, _ := io.ReadAll(p)
				if total != size || !bytes.Equal(pb, data[x:y+1]) {
					fail(i, "part %q: wrong bytes", p.Header.Get("Content-Range"))
				}
				parts++
			}
			if parts != 2 {
				fail(i, "%d parts, want 2", parts)
			}
		}
		return resp.StatusCode
	})
	if errs.Load() > 0 {
		return
	}
	if n := srv.s.hashes.Load(); n != 1 {
		t.Errorf("the artifact was hashed %d times, want once", n)
	}

	if err := srv.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if !daemonEventually(10*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+2 }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after shutdown, %d before\n%s", runtime.NumGoroutine(), baseG, buf[:runtime.Stack(buf, true)])
	}
	if !daemonEventually(10*time.Second, func() bool { return daemonFDs(t) <= baseFD }) {
		t.Errorf("file descriptors: %d after shutdown, %d before", daemonFDs(t), baseFD)
	}
}

func TestServerPathHostility(t *testing.T) {
	tmp := t.TempDir()
	secret := []byte("TOP-SECRET-OUTSIDE-THE-CACHE")
	daemonWriteFile(t, filepath.Join(tmp, "secret"), secret)
	daemonWriteFile(t, filepath.Join(tmp, "x"), secret)
	st := &Store{Dir: filepath.Join(tmp, "store")}
	good := daemonPut(t, st, []byte("a good artifact"))
	// A digest-named symbolic link to a file with that digest, outside.
	ds := daemonDigest(secret)
	if err := os.Symlink(filepath.Join(tmp, "secret"), st.Path(ds)); err != nil {
		t.Fatal(err)
	}
	// Quarantined and partial files are never served.
	dq := daemonDigest([]byte("quarantined"))
	daemonWriteFile(t, filepath.Join(st.Dir, "quarantine", dq+".1"), []byte("quarantined"))
	dp := daemonDigest([]byte("partial"))
	daemonWriteFile(t, filepath.Join(st.Dir, "partial", dp+".part"), []byte("partial"))

	ch := filepath.Join(tmp, "channel")
	daemonWriteFile(t, filepath.Join(ch, "index.json"), []byte(`{"channel":"stable"}`))
	daemonWriteFile(t, filepath.Join(ch, ".hidden"), secret)
	daemonWriteFile(t, filepath.Join(ch, ".git", "config"), secret)
	daemonWriteFile(t, filepath.Join(ch, "releases", "1.0.0", "manifest.json"), []byte(`{}`))
	if err := os.Symlink(filepath.Join(tmp, "secret"), filepath.Join(ch, "link.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tmp, filepath.Join(ch, "up")); err != nil {
		t.Fatal(err)
	}

	srv := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch})

	for _, target := range []string{
		"/artifacts/sha256/../../etc/passwd",
		"/artifacts/sha256/../../secret",
		"/artifacts/sha256/%2e%2e%2fx",
		"/artifacts/sha256/%2e%2e%2f%2e%2e%2fsecret",
		"/artifacts/sha256/..%2f..%2fsecret",
		"/artifacts/sha256/" + strings.ToUpper(good),
		"/artifacts/sha256/" + good[:63],
		"/artifacts/sha256/" + good + "0",
		"/artifacts/sha256/" + good + "/",
		"/artifacts/sha256/" + good + "/x",
		"/artifacts/sha256/" + good + "%2f",
		"/artifacts/sha256/" + good[:62] + "%61" + good[63:],
		"/artifacts/sha256/",
		"/artifacts/sha256",
		"/artifacts/",
		"/artifacts/sha512/" + good + good,
		"/artifacts/sha256/../sha256/" + good,
		"/artifacts/sha256//" + good,
		"/artifacts/sha256/" + ds, // a symbolic link out of the store
		"/artifacts/sha256/" + dq, // quarantined
		"/artifacts/sha256/" + dp, // partial
		"/artifacts/../channel/index.json",
		"/channel/../x",
		"/channel/../secret",
		"/channel/..%2fsecret",
		"/channel/%2e%2e/secret",
		"/channel/.hidden",
		"/channel/.git/config",
		"/channel/%2ehidden",
		"/channel/",
		"/channel/releases",
		"/channel/releases/",
		"/channel/releases/../index.json",
		"/channel/./index.json",
		"/channel//index.json",
		"/channel/link.json",
		"/channel/up/secret",
		"/channel/" + filepath.Join(tmp, "secret"),
		"/secret",
		"/../secret",
	} {
		for _, method := range []string{"GET", "HEAD"} {
			code, body := daemonRaw(t, srv.addr, method, target)
			if code != 400 && code != 404 {
				t.Errorf("%s %s: HTTP %d, want 400 or 404", method, target, code)
			}
			if bytes.Contains(body, secret) || bytes.Contains(body, []byte("root:")) {
				t.Errorf("%s %s: leaked a file: %q", method, target, body)
			}
		}
	}
	// And the legitimate paths work.
	if code, body := daemonRaw(t, srv.addr, "GET", "/artifacts/sha256/"+good+"?x=/../../secret"); code != 200 || string(body) != "a good artifact" {
		t.Errorf("a query is not part of the path: HTTP %d %q", code, body)
	}
	if code, body := daemonRaw(t, srv.addr, "GET", "/artifacts/sha256/"+good); code != 200 || string(body) != "a good artifact" {
		t.Errorf("good artifact: HTTP %d %q", code, body)
	}
	if code, body := daemonRaw(t, srv.addr, "GET", "/channel/index.json"); code != 200 || string(body) != `{"channel":"stable"}` {
		t.Errorf("index.json: HTTP %d %q", code, body)
	}
	if code, _ := daemonRaw(t, srv.addr, "GET", "/channel/releases/1.0.0/manifest.json"); code != 200 {
		t.Errorf("manifest: HTTP %d", code)
	}
	if code, _ := daemonRaw(t, srv.addr, "DELETE", "/artifacts/sha256/"+good); code != 405 {
		t.Errorf("DELETE: HTTP %d, want 405", code)
	}
	if !st.Has(good) {
		t.Error("the good artifact went away")
	}
	if s, _ := os.ReadFile(filepath.Join(tmp, "secret")); !bytes.Equal(s, secret) {
		t.Error("the file outside changed")
	}
}

func daemonPrefetch(t *testing.T, srv *daemonSrv, auth string, req any) (*http.Response, []map[string]any) {
	t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, srv.base+"/prefetch", bytes.NewReader(body))
	if auth != "" {
		hr.Header.Set("Authorization", auth)
	}
	resp, err := srv.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("response line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return resp, lines
}

func daemonTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	return out
}

// The prefetch API's gate: no token, a wrong one, or no channel root and
// upstream, and nothing is fetched or written. What an authorized
// request can do is in prefetch_class_test.go, against a real channel.
func TestServerPrefetch(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	ch := filepath.Join(t.TempDir(), "channel")
	const token = "s3cret-t0ken"
	req := PrefetchRequest{Releases: []string{"1.0.0"}}

	// Prefetch disabled without a token.
	off := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch})
	if resp, _ := daemonPrefetch(t, off, "Bearer "+token, req); resp.StatusCode != 403 {
		t.Errorf("no token configured: HTTP %d, want 403", resp.StatusCode)
	}
	// A token but no root and upstream: refused, saying what to set.
	noRoot := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch, Token: token, PlainHTTP: true})
	resp, lines := daemonPrefetch(t, noRoot, "Bearer "+token, req)
	if resp.StatusCode != 403 || len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["error"]), "trust_root") || !strings.Contains(fmt.Sprint(lines[0]["error"]), "upstream") {
		t.Errorf("no root: HTTP %d %v, want 403 naming trust_root and upstream", resp.StatusCode, lines)
	}
	if rep := noRoot.s.Ready(); !strings.Contains(strings.Join(rep.Warnings, "\n"), "prefetch is disabled") {
		t.Errorf("/readyz warnings %q do not say prefetch is disabled", rep.Warnings)
	}

	srv := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch, Token: token, PlainHTTP: true, Root: []byte("{}"), Upstream: "http://127.0.0.1:1"})
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+token)), token, "Bearer"} {
		resp, _ := daemonPrefetch(t, srv, auth, req)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: HTTP %d, WWW-Authenticate %q", auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if code, _ := srv.get(t, "/prefetch"); code != 405 {
		t.Errorf("GET /prefetch: HTTP %d", code)
	}
	if len(daemonTree(t, ch)) != 0 || len(daemonTree(t, filepath.Join(st.Dir, "sha256"))) != 0 {
		t.Fatal("refused requests fetched or wrote something")
	}
}

// daemonMetrics parses the text exposition format into name{labels} -> value.
func daemonMetrics(t *testing.T, srv *daemonSrv) (map[string]float64, string) {
	t.Helper()
	resp, body := srv.do(t, http.MethodGet, "/metrics", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out, string(body)
}

func TestServerMetrics(t *testing.T) {
	upDir := t.TempDir()
	big := daemonRand(4<<20, 31)
	small := daemonRand(777, 32)
	pulled := daemonRand(200<<10, 33)
	gone := daemonRand(1000, 34) // listed in the manifest, missing upstream
	corrupt := daemonRand(5000, 35)
	up := daemonUpstream(t, upDir, map[string][]byte{"art/pulled": pulled})
	st := &Store{Dir: t.TempDir()}
	dBig, dSmall := daemonPut(t, st, big), daemonPut(t, st, small)
	dCorrupt := daemonPut(t, st, corrupt)
	daemonFlip(t, st.Path(dCorrupt), 10)
	ch := t.TempDir()
	daemonWriteFile(t, filepath.Join(ch, "releases", "1.0.0", "manifest.json"), daemonManifest(
		testArtifact{URL: "../../art/pulled", SHA256: daemonDigest(pulled), Size: int64(len(pulled))},
		testArtifact{URL: "../../art/gone", SHA256: daemonDigest(gone), Size: int64(len(gone))}))
	srv := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch, Upstream: up.URL + "/"})

	var received int64
	get := func(p string, hdr map[string]string, method string, want int) {
		t.Helper()
		resp, body := srv.do(t, method, p, hdr)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: HTTP %d, want %d: %s", method, p, resp.StatusCode, want, body)
		}
		if want/100 == 2 {
			received += int64(len(body))
		}
	}
	get("/artifacts/sha256/"+dBig, nil, "GET", 200)                                         // hit
	get("/artifacts/sha256/"+dBig, map[string]string{"Range": "bytes=100-199"}, "GET", 206) // hit
	get("/artifacts/sha256/"+dSmall, nil, "HEAD", 200)                                      // hit
	get("/artifacts/sha256/"+dSmall, nil, "GET", 200)                                       // hit
	get("/artifacts/sha256/"+daemonDigest([]byte("unknown")), nil, "GET", 404)              // miss
	get("/artifacts/sha256/"+daemonDigest(pulled), nil, "GET", 200)                         // miss, pulled through
	get("/artifacts/sha256/"+daemonDigest(pulled), nil, "GET", 200)                         // hit
	get("/artifacts/sha256/"+dCorrupt, nil, "GET", 404)                                     // miss: quarantined
	get("/artifacts/sha256/"+daemonDigest(gone), nil, "GET", 502)                           // error: upstream 404
	get("/artifacts/sha256/"+strings.ToUpper(dBig), nil, "GET", 400)                        // error

	m, text := daemonMetrics(t, srv)
	want := map[string]float64{
		`sentinel_cache_requests_total{result="hit"}`:   5,
		`sentinel_cache_requests_total{result="miss"}`:  3,
		`sentinel_cache_requests_total{result="error"}`: 2,
		"sentinel_cache_upstream_fetch_seconds_count":   2,
		"sentinel_cache_upstream_errors_total":          1,
		"sentinel_cache_artifacts":                      3, // big, small, pulled
		"sentinel_cache_quarantined_total":              1,
		"sentinel_cache_bytes_served_total":             float64(received),
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if m["sentinel_cache_upstream_fetch_seconds_sum"] <= 0 {
		t.Errorf("upstream fetch seconds sum %v", m["sentinel_cache_upstream_fetch_seconds_sum"])
	}
	for _, typ := range []string{
		"# TYPE sentinel_cache_bytes_served_total counter",
		"# TYPE sentinel_cache_requests_total counter",
		"# TYPE sentinel_cache_upstream_fetch_seconds summary",
		"# TYPE sentinel_cache_upstream_errors_total counter",
		"# TYPE sentinel_cache_artifacts gauge",
		"# TYPE sentinel_cache_quarantined_total counter",
	} {
		if !strings.Contains(text, typ+"\n") {
			t.Errorf("no %q", typ)
		}
	}
	wantBytes := int64(len(big) + 100 + len(small) + 2*len(pulled))
	if received != wantBytes {
		t.Fatalf("client received %d bytes, want %d", received, wantBytes)
	}
	// Every body byte went through the wrapper's ReadFrom, that is through
	// net/http's sendfile path, not through Write.
	if rf := srv.s.m.readFromBytes.Load(); rf != received {
		t.Errorf("bytes through ReadFrom %d, want all %d", rf, received)
	}
	if code, body := srv.get(t, "/healthz"); code != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
}

// Pull-through: concurrent requests for a missing artifact download it once.
func TestServerPullThroughCollapses(t *testing.T) {
	upDir := t.TempDir()
	data := daemonRand(1<<20, 41)
	up := daemonUpstream(t, upDir, map[string][]byte{"a": data})
	ch := t.TempDir()
	d := daemonDigest(data)
	daemonWriteFile(t, filepath.Join(ch, "m.json"), daemonManifest(testArtifact{URL: "a", SHA256: d, Size: int64(len(data))}))
	st := &Store{Dir: t.TempDir()}
	srv := daemonStart(t, ServerConfig{Store: st, ChannelDir: ch, Upstream: up.URL})
	codes := daemonParallel(t, 40, func(i int) int {
		code, body := srv.get(t, "/artifacts/sha256/"+d)
		if code == 200 && !bytes.Equal(body, data) {
			t.Errorf("request %d: wrong bytes", i)
		}
		return code
	})
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d: HTTP %d", i, c)
		}
	}
	if n := up.hits("/a"); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	if n := srv.s.hashes.Load(); n != 0 {
		t.Errorf("hashed %d times after the verified fetch, want 0", n)
	}
}

func TestServerGracefulShutdown(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	data := daemonRand(24<<20, 51)
	d := daemonPut(t, st, data)
	shut := make(chan struct{})
	srv := daemonStartServer(t, ServerConfig{Store: st, ShutdownTimeout: time.Minute}, func() { close(shut) })

	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(32 << 10) // a slow client with a small window
	fmt.Fprintf(conn, "GET /artifacts/sha256/%s HTTP/1.1\r\nHost: cache\r\n\r\n", d)
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	small := make([]byte, 16<<10)
	got, err := io.ReadFull(resp.Body, small[:8<<10])
	if err != nil {
		t.Fatal(err)
	}
	h.Write(small[:got])

	// Shut down in the middle of the download.
	srv.cancel()
	<-shut // the listener is closed
	if c, err := net.Dial("tcp", srv.addr); err == nil {
		c.Close()
		t.Error("a new connection was accepted after shutdown began")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("new connection: %v, want connection refused", err)
	}
	select {
	case <-srv.done:
		t.Fatalf("Serve returned (%v) with a download in flight", srv.err)
	default:
	}

	// The in-flight download completes, read in small pieces.
	total := int64(got)
	for {
		n, err := resp.Body.Read(small)
		h.Write(small[:n])
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
	}
	resp.Body.Close()
	if total != int64(len(data)) || hex.EncodeToString(h.Sum(nil)) != d {
		t.Fatalf("download after shutdown began: %d bytes, sha256 %x", total, h.Sum(nil))
	}
	// The now idle connection is closed by the server, and Serve returns.
	<-srv.done
	if srv.err != nil {
		t.Errorf("Serve: %v", srv.err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection after shutdown: %v, want EOF", err)
	}
}

// A download running in the background when shutdown begins (its client
// left) is finished before Serve returns.
func TestServerShutdownWaitsForDownloads(t *testing.T) {
	data := daemonRand(256<<10, 61)
	d := daemonDigest(data)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	started := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:1000])
		w.(http.Flusher).Flush()
		close(started)
		<-release
		w.Write(data[1000:])
	}))
	t.Cleanup(up.Close)
	ch := t.TempDir()
	daemonWriteFile(t, filepath.Join(ch, "m.json"), daemonManifest(testArtifact{URL: "a", SHA256: d, Size: int64(len(data))}))
	st := &Store{Dir: t.TempDir()}
	shut := make(chan struct{})
	srv := daemonStartServer(t, ServerConfig{Store: st, ChannelDir: ch, Upstream: up.URL, ShutdownTimeout: time.Minute}, func() { close(shut) })
	t.Cleanup(unblock) // runs first: a failed test does not leave the download hanging

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.base+"/artifacts/sha256/"+d, nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel() // the client leaves; the download goes on
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request succeeded")
	}
	srv.tr.CloseIdleConnections()
	srv.cancel()
	<-shut
	select {
	case <-srv.done:
		t.Fatalf("Serve returned (%v) with a download in flight", srv.err)
	default:
	}
	unblock()
	<-srv.done
	if srv.err != nil {
		t.Errorf("Serve: %v", srv.err)
	}
	if b, err := os.ReadFile(st.Path(d)); err != nil || !bytes.Equal(b, data) {
		t.Errorf("the download was not finished: %v", err)
	}
}
