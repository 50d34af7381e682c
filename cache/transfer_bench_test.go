package cache

import (
	"context"
	"net/http"
	"os"
	"testing"
)

// BenchmarkFetchLoopback: a 256 MiB artifact served from memory on
// 127.0.0.1, fetched, hashed while streaming, made durable (fsync of the
// file and of both directories) and verified, per iteration. Skipped with
// -short.
func BenchmarkFetchLoopback(b *testing.B) {
	if testing.Short() {
		b.Skip("256 MiB per iteration: skipped with -short")
	}
	data := testData(256*mib, 256)
	digest := sha256Hex(data)
	size := int64(len(data))
	o := newOrigin(b, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"bench"`) })
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := &Store{Dir: dir}
		st, err := s.FetchStats(context.Background(), o.URL, digest, size)
		if err != nil {
			b.Fatal(err)
		}
		if !st.Downloaded || st.Attempts != 1 {
			b.Fatalf("%+v", st)
		}
		b.StopTimer()
		if err := os.Remove(s.Path(digest)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
