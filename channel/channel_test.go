package channel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/publish"
)

// testRepo is a channel served over HTTP on loopback, its publisher, and
// a client state that trusted it once.
type testRepo struct {
	t      *testing.T
	repo   *publish.Repo
	url    string
	state  string
	anchor []byte
}

func newRepo(t *testing.T) *testRepo {
	t.Helper()
	work := t.TempDir()
	r, err := publish.Init(filepath.Join(work, "channel"), filepath.Join(work, "keys"), publish.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddTarget("index.json", []byte(`{"releases":[]}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(); err != nil {
		t.Fatal(err)
	}
	anchor, _ := r.RootBytes()
	tr := &testRepo{t: t, repo: r, state: filepath.Join(work, "state"), anchor: anchor}
	tr.url = serve(t, http.FileServer(http.Dir(r.Dir)))
	return tr
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

func (tr *testRepo) open(mod ...func(*channel.Config)) (*channel.Client, error) {
	cfg := channel.Config{URL: tr.url, Anchor: tr.anchor, StateDir: tr.state}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := channel.Open(context.Background(), cfg)
	if err == nil {
		c.Close()
	}
	return c, err
}

func (tr *testRepo) mustOpen() *channel.Client {
	tr.t.Helper()
	c, err := tr.open()
	if err != nil {
		tr.t.Fatal(err)
	}
	return c
}

func (tr *testRepo) meta(name string) string { return filepath.Join(tr.repo.Dir, "metadata", name) }

func (tr *testRepo) key(role string) *publish.Key {
	tr.t.Helper()
	keys, err := publish.LoadKeys(tr.repo.Keys)
	if err != nil {
		tr.t.Fatal(err)
	}
	for _, id := range tr.repo.KeyIDs(role) {
		if k, ok := keys[id]; ok {
			return k
		}
	}
	tr.t.Fatalf("no %s key", role)
	return nil
}

// forgeTimestamp rewrites the served timestamp with edit, signed by keys.
func (tr *testRepo) forgeTimestamp(edit func(*metadata.TimestampType), keys ...*publish.Key) {
	tr.t.Helper()
	ts, err := metadata.Timestamp().FromFile(tr.meta("timestamp.json"))
	if err != nil {
		tr.t.Fatal(err)
	}
	edit(&ts.Signed)
	if err := publish.SignWith(ts, keys...); err != nil {
		tr.t.Fatal(err)
	}
	if err := ts.ToFile(tr.meta("timestamp.json"), true); err != nil {
		tr.t.Fatal(err)
	}
}

func wantRefused(t *testing.T, err error, doc, check string) {
	t.Helper()
	var ce *channel.Error
	if !errors.As(err, &ce) || ce.Check != check || !strings.Contains(ce.Doc, doc) {
		t.Fatalf("got %v, want a refusal of %s by the %s check", err, doc, check)
	}
}

func stranger(t *testing.T) *publish.Key {
	k, err := publish.NewKey(t.TempDir(), "timestamp")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Freeze and rollback: a timestamp older than the trusted one is refused,
// and so is an expired one, unless expired metadata is allowed, which
// still checks everything else and says which document was expired.
func TestTimestampFreezeAndRollback(t *testing.T) {
	tr := newRepo(t)
	old, _ := os.ReadFile(tr.meta("timestamp.json"))
	if err := tr.repo.Timestamp(); err != nil {
		t.Fatal(err)
	}
	tr.mustOpen()
	os.WriteFile(tr.meta("timestamp.json"), old, 0o644)
	_, err := tr.open()
	wantRefused(t, err, "timestamp.json", channel.CheckRollback)

	tr.repo.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
	if err := tr.repo.Timestamp(); err != nil {
		t.Fatal(err)
	}
	_, err = tr.open()
	wantRefused(t, err, "timestamp", channel.CheckExpired)
	c, err := tr.open(func(c *channel.Config) { c.AllowExpired = true })
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Expired(); len(ex) != 1 || ex[0].Doc != "metadata/timestamp.json" {
		t.Errorf("expired documents accepted: %+v", ex)
	}
	// The override skips expiry only: a stranger's signature is still refused.
	tr.forgeTimestamp(func(ts *metadata.TimestampType) { ts.Version += 5 }, stranger(t))
	_, err = tr.open(func(c *channel.Config) { c.AllowExpired = true })
	wantRefused(t, err, "timestamp.json", channel.CheckUnknownKey)
}

// Unknown keys, a threshold not met, a root rotation not signed by the
// old root's threshold: each refused, naming the check.
func TestSignatureRefusals(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		tr := newRepo(t)
		tr.forgeTimestamp(func(ts *metadata.TimestampType) { ts.Version++ }, stranger(t))
		_, err := tr.open()
		wantRefused(t, err, "timestamp.json", channel.CheckUnknownKey)
	})
	t.Run("threshold not met", func(t *testing.T) {
		tr := newRepo(t)
		if _, err := tr.repo.Rotate("timestamp", 2, 2); err != nil {
			t.Fatal(err)
		}
		tr.forgeTimestamp(func(ts *metadata.TimestampType) { ts.Version++ }, tr.key("timestamp"))
		_, err := tr.open()
		wantRefused(t, err, "timestamp.json", channel.CheckSignature)
	})
	t.Run("rotation not signed by the old threshold", func(t *testing.T) {
		tr := newRepo(t)
		root, err := metadata.Root().FromFile(tr.meta("1.root.json"))
		if err != nil {
			t.Fatal(err)
		}
		root.Signed.Version = 2
		newKey := stranger(t)
		for _, id := range tr.repo.KeyIDs("timestamp") {
			root.Signed.RevokeKey(id, "timestamp")
		}
		root.Signed.AddKey(newKey.Public(), "timestamp")
		// One of the two root keys (threshold 2): not enough.
		if err := publish.SignWith(root, tr.key("root")); err != nil {
			t.Fatal(err)
		}
		root.ToFile(tr.meta("2.root.json"), true)
		_, err = tr.open()
		wantRefused(t, err, "2.root.json", channel.CheckRotation)
	})
}

// A server streaming endless metadata is cut off at the role's maximum
// length: the client reads no more, and says the document is too large.
func TestEndlessMetadataIsCutOff(t *testing.T) {
	tr := newRepo(t)
	var wrote atomic.Int64
	files := http.FileServer(http.Dir(tr.repo.Dir))
	tr.url = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/timestamp.json" {
			files.ServeHTTP(w, r)
			return
		}
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for i := 0; i < (4<<30)/len(chunk); i++ { // 4 GiB, unless the client hangs up
			n, err := w.Write(chunk)
			wrote.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	_, err := tr.open()
	wantRefused(t, err, "timestamp.json", channel.CheckTooLarge)
	// What the kernel buffers on loopback aside, the server wrote no more
	// than the client read: far from the 4 GiB it had to send.
	t.Logf("the server wrote %d bytes of the 4 GiB before the client hung up (the role's maximum: %d)", wrote.Load(), channel.MaxTimestampBytes)
	if n := wrote.Load(); n > 64<<20 {
		t.Errorf("the server wrote %d bytes before the client hung up", n)
	}
}

// Fast-forward: leaked snapshot and timestamp keys sign a huge version,
// which clients trust; the publisher's next real timestamp is then a
// rollback. Once the publisher rotates both keys in the root, clients
// drop what those roles made them trust and accept the real metadata.
func TestFastForwardRecovery(t *testing.T) {
	tr := newRepo(t)
	tr.mustOpen()
	huge := int64(1) << 40
	snap, err := metadata.Snapshot().FromFile(tr.meta(fmt.Sprintf("%d.snapshot.json", tr.repo.Versions()["snapshot"])))
	if err != nil {
		t.Fatal(err)
	}
	snap.Signed.Version = huge
	publish.SignWith(snap, tr.key("snapshot"))
	snap.ToFile(tr.meta(fmt.Sprintf("%d.snapshot.json", huge)), true)
	data, _ := os.ReadFile(tr.meta(fmt.Sprintf("%d.snapshot.json", huge)))
	tr.forgeTimestamp(func(ts *metadata.TimestampType) {
		ts.Version = huge
		m := metadata.MetaFile(huge)
		m.Length = int64(len(data))
		ts.Meta["snapshot.json"] = m
	}, tr.key("timestamp"))
	tr.mustOpen() // validly signed: trusted

	// The publisher (tr.repo holds its own versions) publishes again.
	os.Remove(tr.meta(fmt.Sprintf("%d.snapshot.json", huge)))
	if err := tr.repo.Publish(); err != nil {
		t.Fatal(err)
	}
	_, err = tr.open()
	wantRefused(t, err, "timestamp.json", channel.CheckRollback)

	for _, role := range []string{"snapshot", "timestamp"} {
		if _, err := tr.repo.Rotate(role, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := tr.mustOpen()
	if !c.Has("index.json") {
		t.Error("the recovered channel lists no index")
	}
}
