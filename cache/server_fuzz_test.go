package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzServer is a daemon over an empty store and a channel directory that
// holds one document, with a secret file beside that directory: what no
// request may ever read.
func fuzzServer(t *testing.T) (*Server, string) {
	base := t.TempDir()
	ch := filepath.Join(base, "channel")
	daemonWriteFile(t, filepath.Join(ch, "index.json"), []byte(`{"ok":true}`))
	daemonWriteFile(t, filepath.Join(base, "secret"), []byte("SECRET-NOT-FOR-CLIENTS"))
	s, err := NewServer(ServerConfig{Store: &Store{Dir: filepath.Join(base, "store")}, ChannelDir: ch, Token: "tok", PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, base
}

// The daemon's routing of raw request paths: whatever the path, the answer
// is one of the routes' or a 4xx, only index.json is ever served, and
// nothing outside the channel directory and the store is read.
func FuzzDaemonRoute(f *testing.F) {
	for _, p := range []string{"/channel/index.json", "/artifacts/sha256/" + strings.Repeat("a", 64), "/channel/../secret",
		"/channel/%2e%2e/secret", "/artifacts/sha256/..%2f..%2fsecret", "/healthz", "/metrics", "/prefetch", "//channel/index.json", "/channel/.%2e/secret"} {
		f.Add("GET", p)
	}
	f.Add("POST", "/prefetch")
	f.Add("HEAD", "/channel/index.json")
	f.Fuzz(func(t *testing.T, method, target string) {
		if method != "GET" && method != "HEAD" && method != "POST" && method != "DELETE" {
			method = "GET"
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			t.Skip("not a request target a client can send")
		}
		s, _ := fuzzServer(t)
		r := httptest.NewRequest(method, "http://cache.test/", nil)
		r.URL, r.RequestURI = u, target
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		body := w.Body.String()
		if strings.Contains(body, "SECRET") {
			t.Fatalf("%s %q served a file outside the channel: %q", method, target, body)
		}
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %q: %d %q", method, target, w.Code, body)
		case w.Code == 200 && method == "GET" && strings.HasPrefix(u.EscapedPath(), "/channel/") && body != `{"ok":true}`:
			t.Fatalf("%s %q: 200 with %q", method, target, body)
		case w.Code == 200 && strings.HasPrefix(u.EscapedPath(), "/artifacts/"):
			t.Fatalf("%s %q: 200 from an empty store", method, target)
		}
	})
}

// The prefetch API's request decoding and checks, driven through the
// handler itself with a request context already ended, so that nothing is
// fetched or written: a body is answered 200 only if it decodes to a
// request whose every field passed the checks (digests, http(s) URLs,
// metadata paths inside the channel directory), else 400 or 413, never
// more, and nothing lands on disk either way.
func FuzzPrefetchRequest(f *testing.F) {
	for _, b := range []string{
		`{"releases":["3.4.2"],"patches":["3.4.2"],"sentinel":{"os":"linux","arch":"amd64"}}`,
		`{"releases":["http://127.0.0.1:1/x"]}`, `{"releases":["../../metadata/root.json"]}`,
		`{"releases":["` + strings.Repeat("a", 64) + `"]}`,
		`{"artifacts":[{"url":"https://up.test/a","sha256":"` + strings.Repeat("a", 64) + `","size":3}]}`,
		`{"metadata":[{"path":"releases/3.4.2/manifest.json","content_base64":"e30="}]}`,
		`{"names":{"releases":["3.4.2"]}}`, `{"releases":[]} {}`, `{"unknown":1}`, `[]`, `null`, ``, `{"sentinel":{"os":1}}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		base := t.TempDir()
		ch := filepath.Join(base, "channel")
		daemonWriteFile(t, filepath.Join(ch, "index.json"), []byte(`{"ok":true}`))
		// A root that verifies nothing and an upstream on a closed port:
		// whatever the body, nothing can be fetched or written.
		s, err := NewServer(ServerConfig{Store: &Store{Dir: filepath.Join(base, "store")}, ChannelDir: ch, Token: "tok", PlainHTTP: true,
			Root: []byte("{}"), Upstream: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequestWithContext(ctx, "POST", "http://cache.test/prefetch", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		switch w.Code {
		case 400, 413, 502:
			if !strings.Contains(w.Body.String(), `"event":"error"`) {
				t.Fatalf("%d without an error event: %q", w.Code, w.Body.String())
			}
			if w.Code == 502 {
				// Went as far as the channel: the body was names only.
				dec := json.NewDecoder(bytes.NewReader(body))
				dec.DisallowUnknownFields()
				var req PrefetchRequest
				if err := dec.Decode(&req); err != nil {
					t.Fatalf("a body that does not decode strictly reached the channel: %v", err)
				}
			}
		default:
			t.Fatalf("status %d: %q", w.Code, w.Body.String())
		}
		if entries, _ := os.ReadDir(ch); len(entries) != 1 {
			t.Fatalf("the channel directory changed: %v", entries)
		}
		if entries, _ := os.ReadDir(filepath.Join(base, "store", "sha256")); len(entries) != 0 {
			t.Fatalf("the store changed: %v", entries)
		}
	})
}
