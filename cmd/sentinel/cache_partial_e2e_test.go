package main

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `sentinel cache fetch` over a partial file left by an interrupted fetch
// and changed on disk since: it never says "fetched and verified" of bytes
// it did not hash, and what it stores hashes to its name. On the commit
// where the issue was filed it promoted the changed bytes and said so.
func TestCacheFetchOfAChangedPartialFile(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{3}).Read(data)
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "a.tgz", time.Unix(0, 0), bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)

	// What an interrupted fetch leaves: the first MiB and its checkpoint;
	// then the partial file is changed on disk.
	dir := t.TempDir()
	partial := filepath.Join(dir, "partial")
	os.MkdirAll(partial, 0o755)
	const prefix = 1 << 20
	h := sha256.New()
	h.Write(data[:prefix])
	hs, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	state, _ := json.Marshal(map[string]any{"version": 1, "url": srv.URL, "digest": digest, "size": len(data),
		"offset": prefix, "sha256_state": base64.StdEncoding.EncodeToString(hs), "validator": `"v1"`})
	changed := bytes.Clone(data[:prefix])
	copy(changed[1000:], "changed on disk")
	if err := os.WriteFile(filepath.Join(partial, digest+".part"), changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, digest+".state"), state, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(sentinelBin, "cache", "fetch", srv.URL, "--dir", dir, "--sha256", digest, "--size", "3145728")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	stored, err := os.ReadFile(filepath.Join(dir, "sha256", digest))
	got := sha256.Sum256(stored)
	if strings.Contains(stdout.String(), "fetched and verified") && (err != nil || hex.EncodeToString(got[:]) != digest) {
		t.Fatalf("said %q of bytes whose sha256 is %x", strings.TrimSpace(stdout.String()), got)
	}
	if runErr != nil || err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("%v, stored %d bytes (%v), the artifact's own: %v\n%s", runErr, len(stored), err, bytes.Equal(stored, data), stderr.String())
	}
}
