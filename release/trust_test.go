package release

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/trust"
)

// testKey is a fixed key, so failures are reproducible.
func testKey(seed byte) *trust.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return trust.NewPrivateKey(ed25519.NewKeyFromSeed(s))
}

// signedChannel writes a one-release channel signed by key, with an
// artifact of 10 bytes, and returns its directory and the trust anchor.
func signedChannel(t *testing.T, key *trust.PrivateKey) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "releases", "3.4.2"), 0o755)
	os.MkdirAll(filepath.Join(dir, "releases", "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "releases", "a", "nats.tgz"), []byte("0123456789"), 0o644)
	docs := map[string]string{
		"index.json":                   `{"channel":"s","releases":[{"version":"3.4.2","manifest":"releases/3.4.2/manifest.json"}]}`,
		"releases/3.4.2/manifest.json": goodManifest,
	}
	for name, doc := range docs {
		os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644)
		resign(t, dir, name, 1, time.Now().Add(time.Hour), key)
	}
	root, err := trust.NewRoot([]trust.PublicKey{key.Public()}, 1, 1, time.Now().Add(24*time.Hour), key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, trust.RootName(1)), root.Bytes(), 0o644)
	return dir, root.Bytes()
}

func resign(t *testing.T, dir, name string, version int64, expires time.Time, keys ...*trust.PrivateKey) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := trust.Sign(name, doc, version, expires, keys...)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, trust.SigName(name)), sig, 0o644)
}

func openTrusted(t *testing.T, url string, anchor []byte, store *trust.Store) (*Channel, error) {
	t.Helper()
	v, err := trust.NewVerifier(store, anchor, trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := OpenChannel(context.Background(), url, WithTrust(v))
	if err != nil {
		return nil, err
	}
	_, err = ch.Manifest(context.Background(), "3.4.2")
	return ch, err
}

func wantRefusal(t *testing.T, err error, doc, check string) {
	t.Helper()
	var te *trust.Error
	if !errors.As(err, &te) || te.Doc != doc || te.Check != check {
		t.Fatalf("got %v, want a refusal of %s by the %s check", err, doc, check)
	}
}

// Over file:// and HTTP, a signed channel opens; its documents for a cache
// include every .sig and the trusted root, byte for byte.
func TestChannelWithTrust(t *testing.T) {
	key := testKey(1)
	dir, anchor := signedChannel(t, key)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	for _, url := range []string{"file://" + filepath.Join(dir, "index.json"), srv.URL + "/index.json"} {
		ch, err := openTrusted(t, url, anchor, nil)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if v := ch.Verified(); len(v) != 2 || v[0].Name != "index.json" || v[1].Name != "releases/3.4.2/manifest.json" {
			t.Errorf("%s: verified %+v", url, v)
		}
		docs, err := ch.Documents()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"index.json", "index.json.sig", "releases/3.4.2/manifest.json", "releases/3.4.2/manifest.json.sig", "1.root.json"} {
			want, _ := os.ReadFile(filepath.Join(dir, name))
			if string(docs[name]) != string(want) {
				t.Errorf("%s: document %s is not as published", url, name)
			}
		}
	}
}

func TestChannelTrustRefusals(t *testing.T) {
	key := testKey(1)
	m := "releases/3.4.2/manifest.json"
	cases := []struct {
		name        string
		tamper      func(t *testing.T, dir string)
		doc, check  string
		withStateV2 bool
	}{
		{"a flipped byte in the manifest", func(t *testing.T, dir string) { flip(t, filepath.Join(dir, m)) }, m, trust.CheckDigest, false},
		{"the manifest signed by another key", func(t *testing.T, dir string) { resign(t, dir, m, 1, time.Now().Add(time.Hour), testKey(9)) }, m, trust.CheckUnknownKey, false},
		{"no .sig for the index", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "index.json.sig")) }, "index.json", trust.CheckSignature, false},
		{"an expired index", func(t *testing.T, dir string) { resign(t, dir, "index.json", 1, time.Now().Add(-time.Minute), key) }, "index.json", trust.CheckExpired, false},
		{"an index older than trusted", func(t *testing.T, dir string) {}, "index.json", trust.CheckRollback, true},
		{"a manifest larger than any", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, m), make([]byte, trust.MaxDocumentBytes+1), 0o644)
		}, m, trust.CheckTooLarge, false},
		{"a rotation not signed by the old key", func(t *testing.T, dir string) {
			k2 := testKey(2)
			r, _ := trust.NewRoot([]trust.PublicKey{k2.Public()}, 1, 2, time.Now().Add(time.Hour), k2)
			os.WriteFile(filepath.Join(dir, trust.RootName(2)), r.Bytes(), 0o644)
		}, trust.RootName(2), trust.CheckRotation, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, anchor := signedChannel(t, key)
			url := "file://" + filepath.Join(dir, "index.json")
			var store *trust.Store
			if tc.withStateV2 {
				store, _ = trust.OpenStore(t.TempDir(), "s")
				resign(t, dir, "index.json", 2, time.Now().Add(time.Hour), key)
				ch, err := openTrusted(t, url, anchor, store)
				if err != nil {
					t.Fatal(err)
				}
				if err := ch.Verifier().Commit(); err != nil {
					t.Fatal(err)
				}
				resign(t, dir, "index.json", 1, time.Now().Add(time.Hour), key)
			}
			tc.tamper(t, dir)
			_, err := openTrusted(t, url, anchor, store)
			wantRefusal(t, err, tc.doc, tc.check)
		})
	}
}

// A rotation signed by the old key is followed, and the documents signed by
// the new key alone are accepted; the new root goes to a cache too.
func TestChannelFollowsRotation(t *testing.T) {
	k1, k2 := testKey(1), testKey(2)
	dir, anchor := signedChannel(t, k1)
	r, err := trust.NewRoot([]trust.PublicKey{k2.Public()}, 1, 2, time.Now().Add(time.Hour), k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, trust.RootName(2)), r.Bytes(), 0o644)
	resign(t, dir, "index.json", 2, time.Now().Add(time.Hour), k2)
	resign(t, dir, "releases/3.4.2/manifest.json", 2, time.Now().Add(time.Hour), k2)
	ch, err := openTrusted(t, "file://"+filepath.Join(dir, "index.json"), anchor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Verifier().Root().Version != 2 {
		t.Errorf("trusted root version %d, want 2", ch.Verifier().Root().Version)
	}
	docs, _ := ch.Documents()
	if string(docs[trust.RootName(2)]) != string(r.Bytes()) {
		t.Error("the new root is not among the documents for a cache")
	}
}

// A manifest the index names outside its directory has no signed name.
func TestChannelTrustRefusesManifestElsewhere(t *testing.T) {
	key := testKey(1)
	dir, anchor := signedChannel(t, key)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "manifest.json"), []byte(goodManifest), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"channel":"s","releases":[{"version":"3.4.2","manifest":"file://`+filepath.Join(other, "manifest.json")+`"}]}`), 0o644)
	resign(t, dir, "index.json", 1, time.Now().Add(time.Hour), key)
	_, err := openTrusted(t, "file://"+filepath.Join(dir, "index.json"), anchor, nil)
	var te *trust.Error
	if !errors.As(err, &te) || te.Check != trust.CheckName || !strings.Contains(err.Error(), "outside the channel's directory") {
		t.Fatalf("got %v", err)
	}
}

func TestCheckArtifactSize(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "a.tgz")
	os.WriteFile(art, []byte("0123456789"), 0o644)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	ch := &Channel{http: srv.Client()}
	ctx := context.Background()
	for _, url := range []string{"file://" + art, srv.URL + "/a.tgz"} {
		if checked, err := ch.CheckArtifactSize(ctx, "a.tgz", url, 10); !checked || err != nil {
			t.Errorf("%s, right size: checked %v, %v", url, checked, err)
		}
		checked, err := ch.CheckArtifactSize(ctx, "a.tgz", url, 11)
		wantRefusal(t, err, "a.tgz", trust.CheckLength)
		if !checked || !strings.Contains(err.Error(), "serves 10 bytes, its manifest says 11") {
			t.Errorf("%s: %v", url, err)
		}
	}
	// No answer is no refusal: the fetch checks as it downloads.
	if checked, err := ch.CheckArtifactSize(ctx, "b.tgz", srv.URL+"/b.tgz", 11); checked || err != nil {
		t.Errorf("missing artifact: checked %v, %v", checked, err)
	}
}

func flip(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	os.WriteFile(p, data, 0o644)
}
