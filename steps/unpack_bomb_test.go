package steps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeZeroBomb streams a .tar.gz holding files of zeros, files*perFile
// bytes in all, to w. Each MiB of zeros is one gzip member (gzip streams
// may be concatenated), compressed once and repeated, so 2 GiB cost ~2 MB
// and no 2 GiB buffer.
func writeZeroBomb(t testing.TB, w io.Writer, files int, perFile int64) {
	t.Helper()
	member := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}
	const mib = 1 << 20
	zeros := member(make([]byte, mib))
	for i := range files {
		var hb bytes.Buffer
		tw := tar.NewWriter(&hb)
		if err := tw.WriteHeader(&tar.Header{Name: "zeros/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Mode: 0o644, Size: perFile, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Flush() // the header only: the body follows as gzip members
		w.Write(member(hb.Bytes()))
		for range perFile / mib {
			w.Write(zeros)
		}
	}
	w.Write(member(make([]byte, 1024))) // end-of-archive blocks
}

// cacheArtifact puts the bytes in the agent's node cache under their
// digest, as a fetch would have.
func cacheArtifact(t *testing.T, a *Agent, fill func(io.Writer)) (string, int64) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "artifact")
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fill(io.MultiWriter(f, h))
	f.Close()
	digest := hex.EncodeToString(h.Sum(nil))
	dst := filepath.Join(a.Layout.CacheDir(), "sha256", digest)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dst)
	return digest, fi.Size()
}

// dirBytes is what a directory tree holds in regular files.
func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// A 2 GiB zero bomb in a ~2 MB artifact is refused before it fills the
// disk, by the ratio rule (the channel gives no unpacked size), with an
// error naming the node, the artifact and the limit. On the commit where
// the issue was filed it unpacked in full.
func TestUnpackZeroBombRefused(t *testing.T) {
	a := &Agent{Node: "dea-1", Layout: Layout{Root: t.TempDir()}}
	digest, size := cacheArtifact(t, a, func(w io.Writer) { writeZeroBomb(t, w, 1, 2<<30) })
	if size > 3<<20 {
		t.Fatalf("the bomb is %d bytes compressed", size)
	}
	req := Request{Component: "logyard", Version: "3.4.2"}
	req.Artifact.SHA256, req.Artifact.Size = digest, size
	_, err := a.install(t.Context(), req)
	if err == nil {
		t.Fatal("the bomb was unpacked")
	}
	for _, want := range []string{"node dea-1", "logyard 3.4.2", digest, "1073741824 bytes: 100 times its compressed size", "nothing was installed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if n := dirBytes(t, a.Layout.ReleasesDir("logyard")); n != 0 {
		t.Errorf("%d bytes left on disk after the refusal", n)
	}
}
