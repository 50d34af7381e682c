package cache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
)

// prefetchLab is a daemon that holds a real channel's root, its upstream,
// and a bait: a file served on another loopback port that no release of
// the channel names.
type prefetchLab struct {
	daemon   *httptest.Server
	srv      *cache.Server
	storeDir string
	chDir    string
	upstream *fixtures.Upstream
	bait     string // URL
	baitSHA  string
	baitHits atomic.Int64
	closed   string // a loopback URL nothing listens on
}

const prefetchToken = "t0k3n"

func newPrefetchLab(t *testing.T) *prefetchLab {
	t.Helper()
	dir := t.TempDir()
	if _, err := fixtures.Generate(filepath.Join(dir, "src"), fixtures.Options{Versions: []string{"3.4.1", "3.4.2"}}); err != nil {
		t.Fatal(err)
	}
	repo, err := fixtures.Publish(filepath.Join(dir, "src"), filepath.Join(dir, "up"), filepath.Join(dir, "keys"), fixtures.LabExpiry)
	if err != nil {
		t.Fatal(err)
	}
	root, err := repo.RootBytes()
	if err != nil {
		t.Fatal(err)
	}
	up, err := fixtures.ServeUpstream(filepath.Join(dir, "up"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	l := &prefetchLab{storeDir: filepath.Join(dir, "store"), chDir: filepath.Join(dir, "channel"), upstream: up}
	secret := []byte("a file of the cache node's network that no release names")
	sum := sha256.Sum256(secret)
	l.baitSHA = hex.EncodeToString(sum[:])
	bait := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.baitHits.Add(1)
		w.Write(secret)
	}))
	t.Cleanup(bait.Close)
	l.bait = bait.URL + "/secret"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.closed = "http://" + ln.Addr().String() + "/secret"
	ln.Close()

	srv, err := cache.NewServer(cache.ServerConfig{Store: &cache.Store{Dir: l.storeDir}, ChannelDir: l.chDir,
		Upstream: up.URL, Root: root, Token: prefetchToken, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	l.srv, l.daemon = srv, httptest.NewServer(srv.Handler())
	t.Cleanup(func() { l.daemon.Close(); srv.Close(context.Background()) })
	return l
}

func (l *prefetchLab) prefetch(t *testing.T, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, l.daemon.URL+"/prefetch", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+prefetchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (l *prefetchLab) get(t *testing.T, p string) int {
	t.Helper()
	resp, err := http.Get(l.daemon.URL + p)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tree lists the files under dir with their sizes: what the daemon can
// serve from its store and channel directory.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel+" "+strconv.FormatInt(fi.Size(), 10))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Issue 16's must-show 3 and issue 13's must-show 7: prefetch requests of
// every shape - a URL in any field (a release name included), a name the
// channel lacks, the digest of something else, a path, an old-style body
// with artifact URLs and documents, an oversized body, bad JSON - leave
// nothing new downloadable from the daemon, never reach what they point
// at, and answer alike whatever they pointed at.
func TestPrefetchOfEveryShapeRevealsNothing(t *testing.T) {
	l := newPrefetchLab(t)
	// A first, real fill: what is downloadable afterwards is what the
	// verified channel names for 3.4.1.
	if code, body := l.prefetch(t, mustJSON(t, cache.PrefetchRequest{Releases: []string{"3.4.1"}})); code != 200 || !strings.Contains(body, `"failed":0`) {
		t.Fatalf("prefetch of 3.4.1: HTTP %d %s", code, body)
	}
	for _, r := range l.srv.Ready().Reasons {
		if r.Check == "channel" {
			t.Errorf("/readyz after the fill: %s", r.Reason)
		}
	}
	store0, ch0 := tree(t, l.storeDir), tree(t, l.chDir)
	if len(store0) == 0 || len(ch0) == 0 {
		t.Fatalf("the fill stored nothing: %v %v", store0, ch0)
	}

	bodies := map[string][]byte{
		"old-style artifact URL": []byte(`{"artifacts":[{"url":"` + l.bait + `","sha256":"` + l.baitSHA + `","size":57}]}`),
		"old-style document":     []byte(`{"metadata":[{"path":"metadata/timestamp.json","content_base64":"e30="}]}`),
		"old-style names":        []byte(`{"names":{"releases":["3.4.2"]},"artifacts":[{"url":"` + l.bait + `","sha256":"` + l.baitSHA + `","size":57}]}`),
		"URL as a patch":         mustJSON(t, cache.PrefetchRequest{Patches: []string{l.bait}}),
		"URL as a platform":      mustJSON(t, cache.PrefetchRequest{Sentinel: &cache.Platform{OS: l.bait, Arch: l.closed}}),
		"digest as a release":    mustJSON(t, cache.PrefetchRequest{Releases: []string{l.baitSHA}}),
		"path as a release":      mustJSON(t, cache.PrefetchRequest{Releases: []string{"../../metadata/root"}}),
		"a known and a bad name": mustJSON(t, cache.PrefetchRequest{Releases: []string{"3.4.2", l.bait}}),
		"oversized":              append(append([]byte(`{"releases":["`), bytes.Repeat([]byte("a"), cache.MaxPrefetchBody)...), `"]}`...),
		"bad JSON":               []byte(`{"releases":["3.4.2"`),
		"trailing data":          []byte(`{"releases":["3.4.2"]} {"releases":["` + l.bait + `"]}`),
		"nothing named":          []byte(`{}`),
	}
	// The same request shape with a closed port, an open port and a name
	// the channel lacks: one answer, apart from the name echoed.
	alike := map[string]string{"closed port": l.closed, "open port": l.bait, "unknown name": "9.9.9"}
	var answers []string
	for what, name := range alike {
		code, body := l.prefetch(t, mustJSON(t, cache.PrefetchRequest{Releases: []string{name}}))
		if code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %s, want 400", what, code, body)
		}
		answers = append(answers, what+": "+strings.Replace(body, strings.Trim(strconv.Quote(strconv.Quote(name)), `"`), "NAME", 1))
	}
	sort.Strings(answers)
	for _, a := range answers[1:] {
		if _, x, _ := strings.Cut(a, ": "); x != strings.SplitN(answers[0], ": ", 2)[1] {
			t.Errorf("answers differ beyond the name:\n%s", strings.Join(answers, "\n"))
			break
		}
	}
	for what, body := range bodies {
		code, resp := l.prefetch(t, body)
		if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: HTTP %d, want 400 or 413", what, code)
		}
		if !strings.Contains(resp, "nothing fetched") {
			t.Errorf("%s: %q does not say nothing was fetched", what, resp)
		}
	}
	for _, a := range answers {
		for _, leak := range []string{"refused", "reset", "timeout", "EOF", "dial", "tls", "57 ", l.baitSHA[:16]} {
			if strings.Contains(a, leak) {
				t.Errorf("an answer tells %q: %s", leak, a)
			}
		}
	}
	if n := l.baitHits.Load(); n != 0 {
		t.Errorf("the daemon reached the bait %d times", n)
	}
	if got := tree(t, l.storeDir); fmt.Sprint(got) != fmt.Sprint(store0) {
		t.Errorf("the store changed:\n%v\n%v", store0, got)
	}
	if got := tree(t, l.chDir); fmt.Sprint(got) != fmt.Sprint(ch0) {
		t.Errorf("the channel directory changed:\n%v\n%v", ch0, got)
	}
	if code := l.get(t, "/artifacts/sha256/"+l.baitSHA); code != http.StatusNotFound {
		t.Errorf("the bait's digest: HTTP %d, want 404", code)
	}
	if code := l.get(t, "/channel/secret"); code != http.StatusNotFound {
		t.Errorf("/channel/secret: HTTP %d, want 404", code)
	}
}

// The daemon's own upstream unreachable: the requester learns that the
// channel could not be read and where to look, not how the connection
// failed; the daemon's log has the detail.
func TestPrefetchUpstreamFailureSaysNoConnectionDetail(t *testing.T) {
	l := newPrefetchLab(t)
	l.upstream.Close()
	code, body := l.prefetch(t, mustJSON(t, cache.PrefetchRequest{Releases: []string{"3.4.1"}}))
	if code != http.StatusBadGateway || !strings.Contains(body, "its log says why") {
		t.Errorf("HTTP %d %s, want 502 pointing at the daemon's log", code, body)
	}
	for _, leak := range []string{"refused", "dial", "127.0.0.1", "connect"} {
		if strings.Contains(body, leak) {
			t.Errorf("the answer tells %q: %s", leak, body)
		}
	}
}
