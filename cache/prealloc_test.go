package cache

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// A transfer reserves the artifact's blocks before its first byte, so
// that transfers written side by side do not interleave theirs (staged
// without it, artifacts lay in four times the extents of a copy, and the
// window read them with more system time); the file's size stays the
// bytes received, which a resume reads.
func TestFetchReservesTheArtifactsBlocks(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Fallocate(int(probe.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
	probe.Close()
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("TMPDIR (%s) has no fallocate, where a transfer writes without reserving: %v", dir, err)
	}
	data := testData(8*mib, 34)
	digest := sha256Hex(data)
	part := filepath.Join(dir, "partial", digest+".part")
	var size, reserved atomic.Int64
	size.Store(-1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		serve(&thresholdWriter{ResponseWriter: w, at: mib, fire: func() {
			var st unix.Stat_t
			if unix.Stat(part, &st) == nil {
				size.Store(st.Size)
				reserved.Store(st.Blocks * 512)
			}
		}}, r, data, `"d"`)
	})
	s := testStore(dir)
	if _, err := s.Fetch(context.Background(), o.URL, digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if size.Load() < 0 {
		t.Fatal("no .part to look at a megabyte into the transfer")
	}
	if reserved.Load() < int64(len(data)) {
		t.Errorf("a megabyte into the transfer the .part held %d bytes of blocks, want the artifact's %d reserved", reserved.Load(), len(data))
	}
	if size.Load() >= int64(len(data)) {
		t.Errorf("a megabyte into the transfer the .part's size was %d, want the bytes received so far", size.Load())
	}
	verifyStored(t, s, digest)
}
