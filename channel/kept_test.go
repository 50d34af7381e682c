package channel_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/channel"
)

// A run that verified the channel (a staging run) keeps its metadata and
// the documents it read; with every source gone, OpenKept reads them with
// no request at all, verifies them again, and refuses what was changed,
// what was never kept, and what expired (unless expired metadata is
// allowed, which it reports).
func TestOpenKeptReadsNoNetwork(t *testing.T) {
	tr := newRepo(t)
	manifest := []byte(`{"version":"3.4.2"}`)
	if err := tr.repo.AddTarget("releases/3.4.2/manifest.json", manifest, nil); err != nil {
		t.Fatal(err)
	}
	if err := tr.repo.AddTarget("releases/3.4.3/manifest.json", []byte(`{"version":"3.4.3"}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := tr.repo.Publish(); err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	fs := http.FileServer(http.Dir(tr.repo.Dir))
	tr.url = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fs.ServeHTTP(w, r)
	}))
	c := tr.mustOpen()
	if _, err := c.Read(context.Background(), "releases/3.4.2/manifest.json"); err != nil {
		t.Fatal(err)
	}

	before := requests.Load()
	cfg := channel.Config{URL: tr.url, Anchor: tr.anchor, StateDir: tr.state}
	k, err := channel.OpenKept(cfg)
	if err != nil {
		t.Fatalf("OpenKept: %v", err)
	}
	if !k.Kept() {
		t.Error("a client opened from the kept state does not say so")
	}
	got, err := k.Read(context.Background(), "releases/3.4.2/manifest.json")
	if err != nil || !bytes.Equal(got, manifest) {
		t.Fatalf("kept manifest: %q, %v; want %q", got, err, manifest)
	}
	var ke *channel.KeptError
	if _, err := k.Read(context.Background(), "releases/3.4.3/manifest.json"); !errors.As(err, &ke) {
		t.Errorf("a document never read online: %v; want a KeptError naming it", err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("the kept channel made %d requests, want none", n)
	}

	// A kept copy changed on disk is refused by its signed hash.
	kept, _ := filepath.Glob(filepath.Join(tr.state, "targets", "releases", "3.4.2", "*.manifest.json"))
	if len(kept) != 1 {
		t.Fatalf("kept copies of the manifest: %v, want one", kept)
	}
	if err := os.WriteFile(kept[0], []byte(`{"version":"6.6.6"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = k.Read(context.Background(), "releases/3.4.2/manifest.json")
	wantRefused(t, err, "releases/3.4.2/manifest.json", channel.CheckHash)

	// Kept metadata past its expiry: refused, or accepted and reported.
	tr.repo.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
	if err := tr.repo.Timestamp(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.open(func(c *channel.Config) { c.AllowExpired = true }); err != nil {
		t.Fatal(err)
	}
	_, err = channel.OpenKept(cfg)
	wantRefused(t, err, "timestamp", channel.CheckExpired)
	cfg.AllowExpired = true
	k, err = channel.OpenKept(cfg)
	if err != nil {
		t.Fatalf("OpenKept with expired metadata allowed: %v", err)
	}
	if ex := k.Expired(); len(ex) != 1 || ex[0].Doc != "metadata/timestamp.json" {
		t.Errorf("expired documents accepted: %+v", ex)
	}
}
