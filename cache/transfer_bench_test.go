package cache

import (
	"context"
	"net/http"
	"os"
	"sync/atomic"
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

// BenchmarkResumeRehash: what a resume across processes costs on disk, the
// prefix re-read and hashed once before the transfer goes on: a 256 MiB
// checkpointed prefix of a 257 MiB artifact, the last MiB received.
// Skipped with -short.
func BenchmarkResumeRehash(b *testing.B) {
	if testing.Short() {
		b.Skip("256 MiB per iteration: skipped with -short")
	}
	data := testData(257*mib, 257)
	digest := sha256Hex(data)
	size := int64(len(data))
	// The first request of each iteration stops the fetch at 256 MiB.
	var stop atomic.Pointer[context.CancelFunc]
	o := newOrigin(b, func(w http.ResponseWriter, r *http.Request, n int) {
		if c := stop.Swap(nil); c != nil {
			w = &cutWriter{ResponseWriter: &thresholdWriter{ResponseWriter: w, at: 256*mib - 1, fire: *c}, left: 256 * mib}
		}
		serve(w, r, data, `"bench"`)
	})
	b.SetBytes(256 * mib)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := &Store{Dir: b.TempDir()}
		ctx, cancel := context.WithCancel(context.Background())
		stop.Store(&cancel)
		if _, err := s.FetchStats(ctx, o.URL, digest, size); err == nil {
			b.Fatal("the stopped fetch succeeded")
		}
		b.StartTimer()
		st, err := s.FetchStats(context.Background(), o.URL, digest, size)
		if err != nil || st.ResumedFrom < 128*mib || st.BytesReadFromPartial != st.ResumedFrom {
			b.Fatalf("%+v %v", st, err)
		}
	}
}
