package main

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

	"github.com/sentinel-paas/sentinel/fixtures"
)

// writeBomb streams a .tar.gz holding one 2 GiB file of zeros to path: one
// gzip member per MiB of zeros, compressed once and repeated (gzip members
// may be concatenated), about 2 MB in all. It returns its sha256 and size.
func writeBomb(t *testing.T, path string) (string, int64) {
	t.Helper()
	member := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var hb bytes.Buffer
	tw := tar.NewWriter(&hb)
	tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 2 << 30, Typeflag: tar.TypeReg})
	tw.Flush()
	w.Write(member(hb.Bytes()))
	zeros := member(make([]byte, 1<<20))
	for range 2048 {
		w.Write(zeros)
	}
	w.Write(member(make([]byte, 1024)))
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), fi.Size()
}

// Must-show 4: a signed 2 MB artifact holding 2 GiB of zeros is refused
// before it fills the node's disk, naming the artifact and the limit; the
// node stays on its release.
func TestUpgradeRefusesAZeroBomb(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	art := "artifacts/logyard-3.4.2.tar.gz"
	digest, size := writeBomb(t, lab.source(art))
	if size > 3<<20 {
		t.Fatalf("the bomb is %d bytes", size)
	}
	manifest := "releases/3.4.2/manifest.json"
	editJSON(t, lab.source(manifest), func(m map[string]any) {
		for _, c := range m["components"].([]any) {
			if c := c.(map[string]any); c["name"] == "logyard" {
				a := c["artifact"].(map[string]any)
				a["sha256"], a["size"] = digest, size
				delete(a, "unpacked_size")
			}
		}
	})
	// Signed as published, by a channel whose targets say nothing of the
	// unpacked size: the ratio rule is what bounds it.
	pub, err := lab.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.AddTarget(art, mustRead(t, lab.source(art)), nil); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.AddTargets(pub, lab.SourceDir, manifest); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(); err != nil {
		t.Fatal(err)
	}

	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"node core: step 3.4.2/logyard/install failed", "logyard 3.4.2", digest, "unpacks to more than its limit of 1073741824 bytes: 100 times its compressed size", "nothing was installed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := dirBytes(t, filepath.Join(core.Root, "code")); n > 256<<20 {
		t.Errorf("%d bytes under the node's code/ after the refusal", n)
	}
	if strings.Contains(r.stderr, "  ") {
		t.Errorf("a double space in the message:\n%s", r.stderr)
	}
	checkAllOn(t, lab, "3.4.1")
}

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
