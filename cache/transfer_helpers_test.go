package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const mib = 1 << 20

// testData is n deterministic pseudo-random bytes: the same n and seed
// give the same bytes in every process (the crash test's child relies on it
// only through the digest the parent passes).
func testData(n int, seed uint64) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(s).Read(b)
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// big64 is the 64 MiB artifact shared by the fault-injection tests.
var big64 = sync.OnceValues(func() ([]byte, string) {
	b := testData(64*mib, 64)
	return b, sha256Hex(b)
})

// testStore retries quickly so that fault tests stay fast.
func testStore(dir string) *Store {
	return &Store{Dir: dir, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond, StallTimeout: 10 * time.Second}
}

// seenRequest is what an origin recorded of one request.
type seenRequest struct {
	N       int   // 1-based
	Start   int64 // Range start; -1 without a Range header
	IfRange string
}

// origin is an HTTP server on 127.0.0.1 whose handler gets the request's
// number; it records every request's Range.
type origin struct {
	URL  string
	Addr string
	mu   sync.Mutex
	seen []seenRequest
}

func newOrigin(t testing.TB, h func(w http.ResponseWriter, r *http.Request, n int), configure ...func(*http.Server)) *origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{Addr: ln.Addr().String()}
	o.URL = "http://" + o.Addr + "/artifact.tgz"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		req := seenRequest{N: len(o.seen) + 1, Start: rangeStart(r), IfRange: r.Header.Get("If-Range")}
		o.seen = append(o.seen, req)
		o.mu.Unlock()
		h(w, r, req.N)
	})}
	for _, c := range configure {
		c(srv)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

func (o *origin) requests() []seenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seenRequest(nil), o.seen...)
}

func rangeStart(r *http.Request) int64 {
	v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return -1
	}
	a, _, _ := strings.Cut(v, "-")
	n, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// serve answers with http.ServeContent (Range, If-Range, ETag) for data.
func serve(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "artifact.tgz", modTime, bytes.NewReader(data))
}

// cutWriter passes the first left body bytes, then drops the connection
// (the client sees the body end early).
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) < c.left {
		n, err := c.ResponseWriter.Write(p)
		c.left -= int64(n)
		return n, err
	}
	c.ResponseWriter.Write(p[:c.left])
	c.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// thresholdWriter calls fire once, synchronously, when more than at body
// bytes have been written.
type thresholdWriter struct {
	http.ResponseWriter
	at, sent int64
	fire     func()
	once     sync.Once
}

func (c *thresholdWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

func (c *thresholdWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.sent += int64(n)
	if c.sent > c.at {
		c.once.Do(c.fire)
	}
	return n, err
}

// verifyStored checks that the stored file has the digest and that no
// partial file is left.
func verifyStored(t *testing.T, s *Store, digest string) {
	t.Helper()
	f, err := os.Open(s.Path(digest))
	if err != nil {
		t.Fatalf("artifact not stored: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		t.Fatalf("stored artifact has sha256 %s, want %s", got, digest)
	}
	for _, ext := range []string{".part", ".state", ".state.tmp", ".lock"} {
		if _, err := os.Stat(filepath.Join(s.Dir, "partial", digest+ext)); err == nil {
			t.Errorf("partial/%s%s left behind after a successful fetch", digest, ext)
		}
	}
}

// assertNothingStored checks that no artifact is visible under sha256/.
func assertNothingStored(t *testing.T, s *Store) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "sha256"))
	for _, e := range entries {
		t.Errorf("unexpected file in the store: sha256/%s", e.Name())
	}
}
