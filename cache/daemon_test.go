package cache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLines collects the daemon's JSON log lines and lets a test wait for
// one.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
	added chan struct{}
}

func newLogLines() *logLines { return &logLines{added: make(chan struct{}, 1)} }

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	var m map[string]any
	if json.Unmarshal(p, &m) == nil {
		l.lines = append(l.lines, m)
	}
	select {
	case l.added <- struct{}{}:
	default:
	}
	return len(p), nil
}

// wait returns the first line for which match holds, waiting for it (up
// to a minute: a failure, not a timing).
func (l *logLines) wait(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if match(m) {
				l.mu.Unlock()
				return m
			}
		}
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no log line %s; log:\n%s", what, l.text())
		}
	}
}

func (l *logLines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// testDaemon is the daemon as `sentinel cache serve --config` runs it.
type testDaemon struct {
	s      *Server
	cfg    Config
	addr   string
	base   string
	log    *logLines
	client *http.Client
	certs  *x509.CertPool
}

// testDaemonCert makes a certificate for 127.0.0.1 in dir.
func testDaemonCert(t *testing.T, dir string) Cert {
	t.Helper()
	c, err := GenerateCert(CertRequest{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteCert(dir, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// startTestDaemon writes cfg's certificate (unless plain) and token, then
// runs NewDaemon and ServeDaemon on 127.0.0.1.
func startTestDaemon(t *testing.T, cfg Config) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(dir, "cache")
		if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Listen = "127.0.0.1:0"
	d := &testDaemon{log: newLogLines(), certs: x509.NewCertPool()}
	if !cfg.PlainHTTP && cfg.TLSCertFile == "" {
		testDaemonCert(t, filepath.Join(dir, "tls"))
		cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls", CertFileName), filepath.Join(dir, "tls", KeyFileName)
	}
	if cfg.TLSCertFile != "" {
		d.certs.AppendCertsFromPEM(mustReadFile(t, cfg.TLSCertFile))
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(d.log, nil))
	s, err := NewDaemon(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan net.Addr, 1), make(chan error, 1)
	go func() { done <- ServeDaemon(ctx, s, cfg, logger, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		d.addr = a.String()
	case err := <-done:
		t.Fatalf("ServeDaemon: %v", err)
	}
	tr := &http.Transport{DisableCompression: true, TLSClientConfig: &tls.Config{RootCAs: d.certs}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeDaemon returned %v", err)
		}
	})
	d.s, d.cfg, d.client = s, cfg, &http.Client{Transport: tr}
	d.base = "https://" + d.addr
	if cfg.PlainHTTP {
		d.base = "http://" + d.addr
	}
	return d
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putArtifact stores data in the daemon's store, as a fill would.
func (d *testDaemon) putArtifact(t *testing.T, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	daemonWriteFile(t, d.s.cfg.Store.Path(digest), data)
	return digest
}

func (d *testDaemon) get(t *testing.T, p string) (*http.Response, []byte) {
	t.Helper()
	resp, err := d.client.Get(d.base + p)
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

// A client that opens an artifact and never reads is cut after the
// no-progress timeout, while a normal client is served meanwhile and a
// slow but steady one, whose download lasts many times that timeout,
// finishes.
func TestDaemonCutsClientThatStopsReading(t *testing.T) {
	const timeout = time.Second
	d := startTestDaemon(t, Config{PlainHTTP: true, NoProgressTimeout: timeout})
	data := daemonRand(8<<20, 61) // more than the socket buffers of both ends
	digest := d.putArtifact(t, data)
	path := "/artifacts/sha256/" + digest

	// The stuck client: a small receive buffer, the request sent, nothing read.
	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: cache\r\n\r\n", path)
	stuck := conn.LocalAddr().String()

	var wg sync.WaitGroup
	var slowTook time.Duration
	results := make(chan string, 2)
	wg.Add(2)
	go func() { // normal
		defer wg.Done()
		resp, err := d.client.Get(d.base + path)
		if err != nil {
			results <- "normal: " + err.Error()
			return
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, data) {
			results <- fmt.Sprintf("normal: %d bytes, %v", len(got), err)
		}
	}()
	go func() { // slow but steady: 64 KiB every 20 ms, about 2.6 s in all
		defer wg.Done()
		resp, err := d.client.Get(d.base + path)
		if err != nil {
			results <- "slow: " + err.Error()
			return
		}
		defer resp.Body.Close()
		start := time.Now()
		defer func() { slowTook = time.Since(start) }()
		var got bytes.Buffer
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			n, err := io.CopyN(&got, resp.Body, 64<<10)
			if err == io.EOF || (err == nil && n == 0) {
				break
			}
			if err != nil {
				results <- fmt.Sprintf("slow: cut after %d bytes: %v", got.Len(), err)
				return
			}
		}
		if !bytes.Equal(got.Bytes(), data) {
			results <- fmt.Sprintf("slow: %d bytes, want %d", got.Len(), len(data))
		}
	}()
	wg.Wait()
	close(results)
	for r := range results {
		t.Error(r)
	}

	// The stuck client's request ends, cut, with less than the artifact.
	line := d.log.wait(t, "for the stuck client's request", func(m map[string]any) bool {
		return m["msg"] == "request" && m["client"] == stuck
	})
	if sent := line["bytes"].(float64); sent >= float64(len(data)) {
		t.Errorf("the stuck client was sent all %v bytes; want it cut", sent)
	}
	if took := line["duration_s"].(float64); took < timeout.Seconds() {
		t.Errorf("the stuck client was cut after %.2fs, before the no-progress timeout", took)
	}
	if slowTook <= timeout {
		t.Errorf("the slow download took %s, not longer than the timeout: the test shows nothing", slowTook)
	}
}

func readyz(t *testing.T, d *testDaemon) (int, ReadyReport) {
	t.Helper()
	resp, body := d.get(t, "/readyz")
	var rep ReadyReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	return resp.StatusCode, rep
}

func reasonChecks(rep ReadyReport) string {
	var out []string
	for _, r := range rep.Reasons {
		out = append(out, r.Check)
	}
	return strings.Join(out, ",")
}

// /readyz: 503 with its reasons until the store is usable, the disk has
// room and a channel is there; then 200, with the certificate and token.
func TestDaemonReadyz(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	daemonWriteFile(t, token, []byte("s3cret\n"))
	d := startTestDaemon(t, Config{TokenFile: token})

	code, rep := readyz(t, d)
	if code != http.StatusServiceUnavailable || reasonChecks(rep) != "channel" || !strings.Contains(rep.Reasons[0].Reason, "--download-only") {
		t.Fatalf("empty cache: %d %+v; want 503 naming the missing channel", code, rep)
	}
	daemonWriteFile(t, filepath.Join(d.cfg.ChannelDir, "metadata", "timestamp.json"), []byte(`{}`))
	code, rep = readyz(t, d)
	if code != http.StatusOK || !rep.Ready || len(rep.Reasons) != 0 {
		t.Fatalf("with a channel: %d %+v; want 200", code, rep)
	}
	leaf, _ := d.s.certs.current()
	if rep.TLS == nil || rep.TLS.Fingerprint != CertFingerprint(leaf.Certificate[0]) || rep.TLS.ExpiresInS < 800*24*3600 {
		t.Errorf("tls in /readyz: %+v", rep.TLS)
	}
	if rep.Token == nil || rep.Token.File != token || rep.Token.Modified.IsZero() || rep.PlainHTTP {
		t.Errorf("token in /readyz: %+v, plain_http %v", rep.Token, rep.PlainHTTP)
	}
	if strings.Contains(string(mustJSON(rep)), "s3cret") {
		t.Error("/readyz shows the token")
	}

	// The disk "full": more free space asked for than there is.
	d.s.cfg.MinFreeDisk = 1 << 62
	if code, rep = readyz(t, d); code != http.StatusServiceUnavailable || reasonChecks(rep) != "disk" {
		t.Errorf("disk full: %d %+v", code, rep)
	}
	d.s.cfg.MinFreeDisk = 0

	// The store gone (a disk unmounted under it).
	if err := os.RemoveAll(d.cfg.CacheDir); err != nil {
		t.Fatal(err)
	}
	code, rep = readyz(t, d)
	if code != http.StatusServiceUnavailable || !strings.Contains(reasonChecks(rep), "store") || !strings.Contains(reasonChecks(rep), "channel") {
		t.Errorf("store gone: %d %+v", code, rep)
	}
	// Alive all the same.
	if resp, _ := d.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// Plain HTTP only when asked, and then said: at start, on /readyz and as
// requests come.
func TestDaemonPlainHTTPWarns(t *testing.T) {
	d := startTestDaemon(t, Config{PlainHTTP: true})
	d.log.wait(t, "warning at start", func(m map[string]any) bool { return m["level"] == "WARN" && m["msg"] == PlainHTTPWarning })
	_, rep := readyz(t, d)
	if !rep.PlainHTTP || len(rep.Warnings) == 0 || rep.Warnings[0] != PlainHTTPWarning || rep.TLS != nil {
		t.Errorf("/readyz of a plain daemon: %+v", rep)
	}
	if n := strings.Count(d.log.text(), "serving plain HTTP"); n < 2 {
		t.Errorf("the warning was logged %d times; want at start and with the first requests", n)
	}

	var c Config
	c.CacheDir = t.TempDir()
	err := c.Check()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "tls_cert_file" || !strings.Contains(err.Error(), "plain_http: true") {
		t.Errorf("no TLS and no plain_http: %v", err)
	}
}

// One JSON line per request: method, path, status, bytes, duration,
// client; never the token.
func TestDaemonAccessLog(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	daemonWriteFile(t, token, []byte("t0k3n-never-logged"))
	d := startTestDaemon(t, Config{TokenFile: token})
	digest := d.putArtifact(t, []byte("hello artifact"))
	d.get(t, "/artifacts/sha256/"+digest)
	d.get(t, "/artifacts/sha256/"+strings.Repeat("0", 64))
	req, _ := http.NewRequest(http.MethodPost, d.base+"/prefetch", strings.NewReader(`{"artifacts":[]}`))
	req.Header.Set("Authorization", "Bearer t0k3n-never-logged")
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	for _, want := range []struct {
		method, path string
		status       float64
		bytes        float64
	}{
		{"GET", "/artifacts/sha256/" + digest, 200, 14},
		{"GET", "/artifacts/sha256/" + strings.Repeat("0", 64), 404, -1},
		{"POST", "/prefetch", 403, -1}, // the token taken; no channel root here
	} {
		m := d.log.wait(t, want.method+" "+want.path, func(m map[string]any) bool {
			return m["msg"] == "request" && m["method"] == want.method && m["path"] == want.path
		})
		if m["status"] != want.status || (want.bytes >= 0 && m["bytes"] != want.bytes) || m["tls"] != true {
			t.Errorf("%s %s: %v", want.method, want.path, m)
		}
		if c, _ := m["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
			t.Errorf("client %v", m["client"])
		}
		if _, ok := m["duration_s"].(float64); !ok || m["time"] == nil {
			t.Errorf("no duration or time: %v", m)
		}
	}
	if strings.Contains(d.log.text(), "t0k3n-never-logged") {
		t.Error("the token is in the log")
	}
}

// A client address with max_conns_per_client connections open gets 429
// on the next one, at once; once it closes one, it is served again.
func TestDaemonPerClientLimit(t *testing.T) {
	d := startTestDaemon(t, Config{PlainHTTP: true, MaxConnsPerClient: 2})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, status := rawGet(t, d.addr, "/healthz")
		if status != 200 {
			t.Fatalf("connection %d: %d", i, status)
		}
		held = append(held, c) // kept open (keep-alive)
	}
	c, status := rawGet(t, d.addr, "/healthz")
	c.Close()
	if status != http.StatusTooManyRequests {
		t.Fatalf("third connection: %d, want 429", status)
	}
	d.log.wait(t, "saying why", func(m map[string]any) bool {
		s, _ := m["msg"].(string)
		return strings.Contains(s, "max_conns_per_client") && strings.Contains(s, "127.0.0.1")
	})
	held[0].Close()
	// The close is seen by the server asynchronously: wait for a 200.
	deadline := time.Now().Add(time.Minute)
	for {
		c, status := rawGet(t, d.addr, "/healthz")
		c.Close()
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after closing a connection", status)
		}
		d.log.wait(t, "another refusal", func(map[string]any) bool { return true })
	}
	held[1].Close()
}

// rawGet sends one GET on a new connection, reads the answer and returns
// the connection, still open.
func rawGet(t *testing.T, addr, path string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: cache\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, resp.StatusCode
}

// peerFingerprint connects with TLS and returns the fingerprint of the
// certificate the daemon presents.
func peerFingerprint(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test compares fingerprints itself
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return CertFingerprint(c.ConnectionState().PeerCertificates[0].Raw)
}

// A new certificate and key, and a new token, take effect without a
// restart; a broken certificate file keeps the last good one in use.
func TestDaemonReloadsCertAndToken(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	daemonWriteFile(t, token, []byte("first"))
	tlsDir := filepath.Join(dir, "tls")
	first := testDaemonCert(t, tlsDir)
	d := startTestDaemon(t, Config{TokenFile: token, TLSCertFile: filepath.Join(tlsDir, CertFileName), TLSKeyFile: filepath.Join(tlsDir, KeyFileName)})
	if got := peerFingerprint(t, d.addr); got != first.Fingerprint {
		t.Fatalf("serving %s, want %s", got, first.Fingerprint)
	}

	// Replaced as an operator would: new files renamed over the old ones.
	second, err := GenerateCert(CertRequest{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	newDir := filepath.Join(dir, "new")
	if _, _, err := WriteCert(newDir, second); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{KeyFileName, CertFileName} {
		if err := os.Rename(filepath.Join(newDir, n), filepath.Join(tlsDir, n)); err != nil {
			t.Fatal(err)
		}
	}
	d.certs.AppendCertsFromPEM(second.CertPEM)
	if got := peerFingerprint(t, d.addr); got != second.Fingerprint {
		t.Fatalf("after replacing the files: serving %s, want the new %s", got, second.Fingerprint)
	}
	if _, rep := readyz(t, d); rep.TLS == nil || rep.TLS.Fingerprint != second.Fingerprint {
		t.Errorf("/readyz: %+v", rep.TLS)
	}
	d.log.wait(t, "about the reload", func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["msg"]), "TLS certificate reloaded") })

	// Half-written: the last good pair stays.
	daemonWriteFile(t, filepath.Join(tlsDir, CertFileName), []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	if got := peerFingerprint(t, d.addr); got != second.Fingerprint {
		t.Errorf("after a broken file: serving %s, want the last good %s", got, second.Fingerprint)
	}
	d.log.wait(t, "about the broken file", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m["msg"]), "previous one stays in use")
	})

	// The token.
	if code := prefetchStatus(t, d, "first"); code != statusTokenTaken {
		t.Fatalf("prefetch with the token: %d", code)
	}
	daemonWriteFile(t, token, []byte("second-and-longer"))
	if code := prefetchStatus(t, d, "first"); code != http.StatusUnauthorized {
		t.Errorf("the old token after a change: %d, want 401", code)
	}
	if code := prefetchStatus(t, d, "second-and-longer"); code != statusTokenTaken {
		t.Errorf("the new token: %d, want 200", code)
	}
}

// prefetchStatus is the status of an authorized-looking prefetch, with
// statusTokenTaken standing for the daemon's refusal for want of a
// channel root (these daemons hold none): it got past TLS and the token.
func prefetchStatus(t *testing.T, d *testDaemon, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.base+"/prefetch", strings.NewReader(`{"releases":["3.4.2"]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden && strings.Contains(string(body), "fetches by name only") {
		return statusTokenTaken
	}
	return resp.StatusCode
}

const statusTokenTaken = 1

// A token is taken only over TLS: a prefetch over plain HTTP is refused
// unless the daemon was told plain_http.
func TestTokenOverPlainHTTPRefused(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	srv := daemonStart(t, ServerConfig{Store: st, ChannelDir: filepath.Join(st.Dir, "channel"), Token: "t0k3n"}) // neither TLS nor PlainHTTP
	resp, events := daemonPrefetch(t, srv, "Bearer t0k3n", PrefetchRequest{})
	if resp.StatusCode != http.StatusForbidden || len(events) != 1 || !strings.Contains(fmt.Sprint(events[0]["error"]), "only accepted over TLS") {
		t.Errorf("token over plain HTTP: %d %v; want 403 saying TLS", resp.StatusCode, events)
	}
	// A client told plain_http sends the token; the daemon, not told so, refuses it and says why.
	cl := &Client{BaseURL: srv.base, Token: "t0k3n", PlainHTTP: true}
	if _, err := cl.Prefetch(context.Background(), PrefetchRequest{}, nil); err == nil || !strings.Contains(err.Error(), "only accepted over TLS") {
		t.Errorf("the client's error for a token over plain HTTP: %v; want the daemon's reason", err)
	}
	plain := daemonStart(t, ServerConfig{Store: st, ChannelDir: filepath.Join(st.Dir, "channel"), Token: "t0k3n", PlainHTTP: true})
	if resp, ev := daemonPrefetch(t, plain, "Bearer t0k3n", PrefetchRequest{}); resp.StatusCode != http.StatusForbidden || !strings.Contains(fmt.Sprint(ev), "fetches by name only") {
		t.Errorf("with PlainHTTP: %d %v, want the token taken (then refused for want of a channel root)", resp.StatusCode, ev)
	}
	dir := t.TempDir()
	daemonWriteFile(t, filepath.Join(dir, "token"), []byte("t0k3n"))
	tlsd := startTestDaemon(t, Config{TokenFile: filepath.Join(dir, "token")})
	if code := prefetchStatus(t, tlsd, "t0k3n"); code != statusTokenTaken {
		t.Errorf("over TLS: %d", code)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		daemonWriteFile(t, p, []byte(text))
		return p
	}
	good := write("good.yaml", "cache_dir: cache\ntls_cert_file: /etc/sentinel/tls/sentinel-d.crt\ntls_key_file: /etc/sentinel/tls/sentinel-d.key\ntoken_file: token\nno_progress_timeout: 90s\n")
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheDir != filepath.Join(dir, "cache") || c.ChannelDir != filepath.Join(dir, "cache", "channel") || c.TokenFile != filepath.Join(dir, "token") ||
		c.Listen != ":9077" || c.NoProgressTimeout != 90*time.Second || c.MaxConnsPerClient != DefaultMaxConnsPerClient || !c.TLS() {
		t.Errorf("loaded %+v", c)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"unknown", "cache_dir: /c\nplain_http: true\ncahce_dir: /d\n", "unknown.yaml: cahce_dir: line 3: unknown setting"},
		{"nodir", "plain_http: true\n", "nodir.yaml: cache_dir: required"},
		{"notls", "cache_dir: /c\n", "notls.yaml: tls_cert_file: required"},
		{"both", "cache_dir: /c\nplain_http: true\ntls_cert_file: a\ntls_key_file: b\n", "both.yaml: plain_http: set together with tls_cert_file"},
		{"halftls", "cache_dir: /c\ntls_cert_file: a\n", "halftls.yaml: tls_key_file: tls_cert_file and tls_key_file go together"},
		{"upstream", "cache_dir: /c\nplain_http: true\nupstream: ftp://x\n", "upstream.yaml: upstream: \"ftp://x\" is not an http"},
		{"timeout", "cache_dir: /c\nplain_http: true\nno_progress_timeout: -1s\n", "timeout.yaml: no_progress_timeout: -1s is out of bounds"},
		{"badtype", "cache_dir: /c\nplain_http: maybe\n", "badtype.yaml: line 2: cannot unmarshal"},
		{"big", "cache_dir: /c\n" + strings.Repeat("# padding\n", MaxConfigBytes/10+1), "big.yaml: larger than"},
	} {
		_, err := LoadConfig(write(tc.name+".yaml", tc.text))
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a ConfigError containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot read it") {
		t.Errorf("missing file: %v", err)
	}
}

// WriteCert never replaces a certificate.
func TestWriteCertNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	first := testDaemonCert(t, dir)
	c, err := GenerateCert(CertRequest{IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("192.168.1.5")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteCert(dir, c); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second WriteCert: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName))
	if err != nil || CertFingerprint(pair.Certificate[0]) != first.Fingerprint {
		t.Errorf("the first pair changed: %v", err)
	}
	blk, _ := pem.Decode(c.CertPEM)
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[1].Equal(net.ParseIP("192.168.1.5")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFileName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode())
	}
}

// The drop-in names every directory the daemon writes, so they follow the
// configuration when cache_dir moves; cache_dir is created.
func TestSystemdDropIn(t *testing.T) {
	dir := t.TempDir()
	c := Config{CacheDir: filepath.Join(dir, "moved", "cache"), ChannelDir: filepath.Join(dir, "elsewhere", "channel"), LogFile: filepath.Join(dir, "log", "sentinel-d.log"), PlainHTTP: true}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sentinel-d.service.d", "50-paths.conf")
	if err := InstallDropIn(c, "/etc/sentinel/sentinel-d.yaml", out, ""); err != nil {
		t.Fatal(err)
	}
	text := string(mustReadFile(t, out))
	for _, want := range []string{"[Service]\n", `ReadWritePaths="` + c.CacheDir + `"`, `ReadWritePaths="` + c.ChannelDir + `"`, `ReadWritePaths="` + filepath.Join(dir, "log") + `"`} {
		if !strings.Contains(text, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, text)
		}
	}
	if fi, err := os.Stat(c.CacheDir); err != nil || !fi.IsDir() {
		t.Errorf("cache_dir not created: %v", err)
	}
	inside := Config{CacheDir: filepath.Join(dir, "c"), PlainHTTP: true}
	inside.Check()
	if text, _ := SystemdDropIn(inside, "f"); strings.Count(text, "ReadWritePaths=") != 1 {
		t.Errorf("channel_dir under cache_dir listed twice:\n%s", text)
	}
	bad := Config{CacheDir: "/mnt/a\"b", PlainHTTP: true}
	bad.Check()
	if _, err := SystemdDropIn(bad, "f"); err == nil {
		t.Error("a path with a quote was accepted")
	}
}

// /readyz names the proxy of the daemon's own upstream fetches: its
// configuration's (host and port, never credentials) over the
// environment's, the environment's when none is configured, "" direct.
func TestDaemonReadyzNamesItsProxy(t *testing.T) {
	for _, v := range []string{"http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"} {
		t.Setenv(v, "")
	}
	t.Setenv("https_proxy", "http://127.0.0.9:8888")
	d := startTestDaemon(t, Config{Proxy: "http://op:pa55word@127.0.0.7:3128"})
	_, rep := readyz(t, d)
	if rep.Proxy != "127.0.0.7:3128" {
		t.Errorf("configured proxy: /readyz says %q, want 127.0.0.7:3128", rep.Proxy)
	}
	if strings.Contains(string(mustJSON(rep)), "pa55word") {
		t.Error("/readyz shows the proxy's password")
	}
	d = startTestDaemon(t, Config{})
	if _, rep = readyz(t, d); rep.Proxy != "127.0.0.9:8888" {
		t.Errorf("no proxy configured: /readyz says %q, want the environment's 127.0.0.9:8888", rep.Proxy)
	}
	t.Setenv("https_proxy", "")
	d = startTestDaemon(t, Config{})
	if _, rep = readyz(t, d); rep.Proxy != "" {
		t.Errorf("no proxy anywhere: /readyz says %q, want \"\" (direct)", rep.Proxy)
	}
}

// A daemon with a token but no channel root and upstream starts and serves
// what it holds; it says at start and on /readyz that prefetch is
// disabled and which settings enable it, and refuses prefetch.
func TestDaemonWithoutRootSaysPrefetchDisabled(t *testing.T) {
	dir := t.TempDir()
	daemonWriteFile(t, filepath.Join(dir, "token"), []byte("t0k3n"))
	d := startTestDaemon(t, Config{TokenFile: filepath.Join(dir, "token")})
	m := d.log.wait(t, "the prefetch-disabled warning", func(m map[string]any) bool {
		return m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "prefetch is disabled")
	})
	if msg := fmt.Sprint(m["msg"]); !strings.Contains(msg, "trust_root") || !strings.Contains(msg, "upstream") {
		t.Errorf("the start warning does not name the settings: %s", msg)
	}
	if _, rep := readyz(t, d); !strings.Contains(strings.Join(rep.Warnings, "\n"), "prefetch is disabled") {
		t.Errorf("/readyz warnings: %q", rep.Warnings)
	}
	if code := prefetchStatus(t, d, "t0k3n"); code != statusTokenTaken {
		t.Errorf("prefetch: %d, want the refusal naming trust_root and upstream", code)
	}
	digest := d.putArtifact(t, []byte("served all the same"))
	if resp, _ := d.get(t, "/artifacts/sha256/"+digest); resp.StatusCode != http.StatusOK {
		t.Errorf("serving a stored artifact: %d", resp.StatusCode)
	}
}

// A TCP reachability check (preflight's, a load balancer's) closes its
// connection without a TLS handshake: the daemon's log does not call that
// an error, and still logs a handshake that goes wrong.
func TestDaemonLogLeavesOutReachabilityChecks(t *testing.T) {
	var got []string
	w := serverLogWriter(func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) })
	for _, line := range []string{
		"http: TLS handshake error from 127.0.0.1:40000: EOF\n",
		"http: TLS handshake error from 127.0.0.1:40001: tls: first record does not look like a TLS handshake\n",
		"http: TLS handshake error from 127.0.0.1:40002: remote error: tls: bad certificate\n",
	} {
		log.New(w, "cache: ", 0).Print(line)
	}
	if len(got) != 2 || !strings.Contains(got[0], "first record") || !strings.Contains(got[1], "bad certificate") {
		t.Errorf("logged %q; want the two failed handshakes and not the closed check", got)
	}
}
