package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// daemonPut stores data as a verified artifact (as Fetch leaves it) and
// returns its digest.
func daemonPut(t *testing.T, st *Store, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Dir(st.Path(d)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path(d), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// daemonFlip inverts one byte of a stored file in place.
func daemonFlip(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func daemonDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestListAndRemove(t *testing.T) {
	st := &Store{Dir: filepath.Join(t.TempDir(), "cache")}
	if es, err := st.List(); err != nil || len(es) != 0 {
		t.Fatalf("List of a store never written: %v, %v", es, err)
	}
	var digests []string
	for _, s := range []string{"one", "two two", "three three three"} {
		digests = append(digests, daemonPut(t, st, []byte(s)))
	}
	// Things that are not entries.
	for _, p := range []string{
		filepath.Join(st.Dir, "partial", digests[0][:10]+"0000.part"),
		filepath.Join(st.Dir, "quarantine", digests[1]+".123"),
		filepath.Join(st.Dir, "sha256", "not-a-digest"),
		filepath.Join(st.Dir, "sha256", strings.ToUpper(daemonDigest([]byte("x")))),
	} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(st.Path(digests[0]), st.Path(daemonDigest([]byte("link")))); err != nil {
		t.Fatal(err)
	}
	es, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("List: %d entries, want 3: %+v", len(es), es)
	}
	for i, e := range es {
		if i > 0 && es[i-1].Digest >= e.Digest {
			t.Errorf("List not sorted by digest: %+v", es)
		}
		fi, err := os.Stat(st.Path(e.Digest))
		if err != nil || fi.Size() != e.Size || !fi.ModTime().Equal(e.ModTime) {
			t.Errorf("entry %+v does not describe its file (%v)", e, err)
		}
	}

	if err := st.Remove(digests[1]); err != nil {
		t.Fatal(err)
	}
	if st.Has(digests[1]) {
		t.Error("Has after Remove")
	}
	if es, _ := st.List(); len(es) != 2 {
		t.Errorf("List after Remove: %+v", es)
	}
	if err := st.Remove(digests[1]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v, want ErrNotExist", err)
	}
	for _, bad := range []string{"", "../sha256/" + digests[0], strings.ToUpper(digests[0]), digests[0] + "0"} {
		if err := st.Remove(bad); err == nil {
			t.Errorf("Remove(%q) accepted", bad)
		}
	}
	if !st.Has(digests[0]) || !st.Has(digests[2]) {
		t.Error("Remove took other entries")
	}
}

func TestVerifyQuarantinesFlippedByte(t *testing.T) {
	ctx := t.Context()
	upDir := t.TempDir()
	good := daemonRand(1<<20+17, 1)
	other := daemonRand(4096, 2)
	up := daemonUpstream(t, upDir, map[string][]byte{"artifacts/a.bin": good, "artifacts/b.bin": other})
	st := &Store{Dir: t.TempDir()}
	da, db := daemonDigest(good), daemonDigest(other)
	for name, d := range map[string]string{"a.bin": da, "b.bin": db} {
		size := int64(len(good))
		if d == db {
			size = int64(len(other))
		}
		if _, err := st.Fetch(ctx, up.URL+"/artifacts/"+name, d, size); err != nil {
			t.Fatal(err)
		}
	}

	// A clean store verifies clean.
	rep, err := st.Verify(ctx, nil)
	if err != nil || rep.Checked != 2 || len(rep.Bad) != 0 {
		t.Fatalf("clean store: %+v, %v", rep, err)
	}

	daemonFlip(t, st.Path(da), 4242)
	flipped, err := os.ReadFile(st.Path(da))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	rep, err = st.Verify(ctx, func(d string, ok bool) { seen[d] = ok })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 2 || len(rep.Bad) != 1 {
		t.Fatalf("report %+v, want 2 checked and 1 bad", rep)
	}
	bad := rep.Bad[0]
	if bad.Digest != da || bad.Got != daemonDigest(flipped) || bad.Size != int64(len(good)) {
		t.Errorf("bad entry %+v: want digest %s, got %s, size %d", bad, da, daemonDigest(flipped), len(good))
	}
	if ok, present := seen[da]; !present || ok {
		t.Errorf("progress for the flipped artifact: %v %v", ok, present)
	}
	if ok := seen[db]; !ok {
		t.Error("progress did not report the good artifact as ok")
	}
	if filepath.Dir(bad.QuarantinedAs) != filepath.Join(st.Dir, "quarantine") || !strings.HasPrefix(filepath.Base(bad.QuarantinedAs), da+".") {
		t.Errorf("quarantined as %q", bad.QuarantinedAs)
	}
	if q, err := os.ReadFile(bad.QuarantinedAs); err != nil || !bytes.Equal(q, flipped) {
		t.Errorf("quarantined file: %v", err)
	}
	if st.Has(da) {
		t.Fatal("the flipped artifact is still in the store")
	}
	if es, _ := st.List(); len(es) != 1 || es[0].Digest != db {
		t.Errorf("List after quarantine: %+v", es)
	}

	// The daemon, air-gapped: the quarantined artifact is a miss.
	srv := daemonStart(t, ServerConfig{Store: st})
	if code, _ := srv.get(t, "/artifacts/sha256/"+da); code != 404 {
		t.Errorf("quarantined artifact: HTTP %d, want 404", code)
	}
	if code, body := srv.get(t, "/artifacts/sha256/"+db); code != 200 || !bytes.Equal(body, other) {
		t.Errorf("good artifact: HTTP %d", code)
	}

	// Fetch restores it.
	downloaded, err := st.Fetch(ctx, up.URL+"/artifacts/a.bin", da, int64(len(good)))
	if err != nil || !downloaded {
		t.Fatalf("Fetch after quarantine: %v, %v", downloaded, err)
	}
	if b, _ := os.ReadFile(st.Path(da)); !bytes.Equal(b, good) {
		t.Fatal("Fetch did not restore the right bytes")
	}

	// Again, and this time a daemon pulling through from the upstream
	// restores it on the next GET.
	daemonFlip(t, st.Path(da), 0)
	if rep, err := st.Verify(ctx, nil); err != nil || len(rep.Bad) != 1 || rep.Bad[0].Digest != da {
		t.Fatalf("second verify: %+v, %v", rep, err)
	}
	chDir := t.TempDir()
	daemonWriteFile(t, filepath.Join(chDir, "releases", "1.0.0", "manifest.json"), daemonManifest(
		testArtifact{URL: "../../artifacts/a.bin", SHA256: da, Size: int64(len(good))},
		testArtifact{URL: "../../artifacts/b.bin", SHA256: db, Size: int64(len(other))}))
	pull := daemonStart(t, ServerConfig{Store: st, ChannelDir: chDir, Upstream: up.URL})
	before := up.hits("/artifacts/a.bin")
	code, body := pull.get(t, "/artifacts/sha256/"+da)
	if code != 200 || !bytes.Equal(body, good) {
		t.Fatalf("pull-through after quarantine: HTTP %d, %d bytes", code, len(body))
	}
	if n := up.hits("/artifacts/a.bin") - before; n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	if b, _ := os.ReadFile(st.Path(da)); !bytes.Equal(b, good) {
		t.Error("pull-through did not restore the store")
	}
	if q, _ := os.ReadDir(filepath.Join(st.Dir, "quarantine")); len(q) != 2 {
		t.Errorf("quarantine holds %d files, want 2", len(q))
	}
}

func TestVerifyCancelled(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	daemonPut(t, st, []byte("a"))
	daemonPut(t, st, []byte("b"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rep, err := st.Verify(ctx, nil)
	if !errors.Is(err, context.Canceled) || rep.Checked != 0 {
		t.Errorf("cancelled verify: %+v, %v", rep, err)
	}
}

// A corrupt file is caught by the daemon on its first request, without a
// Verify run: hashed once however many ask at the same time, quarantined,
// answered 404.
func TestServerQuarantinesCorruptOnFirstRequest(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	data := daemonRand(2<<20, 3)
	d := daemonPut(t, st, data)
	daemonFlip(t, st.Path(d), 1000)
	good := daemonRand(2<<20, 4)
	dg := daemonPut(t, st, good)
	srv := daemonStart(t, ServerConfig{Store: st})

	codes := daemonParallel(t, 32, func(i int) int {
		p := d
		if i%2 == 1 {
			p = dg
		}
		code, body := srv.get(t, "/artifacts/sha256/"+p)
		if code == 200 && !bytes.Equal(body, good) {
			t.Errorf("request %d: wrong bytes", i)
		}
		return code
	})
	for i, c := range codes {
		want := 404
		if i%2 == 1 {
			want = 200
		}
		if c != want {
			t.Errorf("request %d: HTTP %d, want %d", i, c, want)
		}
	}
	if n := srv.s.m.quarantined.Load(); n != 1 {
		t.Errorf("quarantined %d, want 1", n)
	}
	if n := srv.s.hashes.Load(); n != 2 {
		t.Errorf("hashed %d times, want 2 (once per artifact)", n)
	}
	if st.Has(d) {
		t.Error("corrupt artifact still in the store")
	}
	q, _ := os.ReadDir(filepath.Join(st.Dir, "quarantine"))
	if len(q) != 1 || !strings.HasPrefix(q[0].Name(), d+".") {
		t.Errorf("quarantine: %v", q)
	}
}
