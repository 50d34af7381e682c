// Package cache is sentinel's content-addressed artifact store: files are
// named by their sha256 and only ever visible there once verified.
//
// Layout under Store.Dir:
//
//	sha256/<hex>             verified artifacts (fsynced, renamed in, directory fsynced)
//	partial/<hex>.part       bytes of a download in progress (never read back)
//	partial/<hex>.state      its checkpoint: JSON, replaced atomically (see transfer.go)
//	partial/<hex>.state.tmp  space kept for the next checkpoint
//	partial/<hex>.lock       flock held by the process downloading <hex>
//
// A partial download is resumed by the next Fetch of the same digest from
// the same URL; from another URL it starts over.
package cache

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// Store keeps verified artifacts under Dir/sha256/<hex>; downloads in
// progress live under Dir/partial. The zero value of every field but Dir is
// a sane default.
type Store struct {
	Dir  string
	HTTP *http.Client // nil: a shared client honouring http_proxy, https_proxy, no_proxy

	// CheckpointBytes is how many bytes are written between checkpoints
	// (fsync of the partial file, then its state file). 0: 64 MiB. A
	// checkpoint is also taken on every error and cancellation.
	CheckpointBytes int64
	// MaxAttempts is how many attempts in a row may fail without moving the
	// transfer past the furthest offset it had reached before it gives up.
	// An attempt that makes progress resets the count, so a link cut every
	// few megabytes still finishes. 0: 8.
	MaxAttempts int
	// RetryBase and RetryMax shape the backoff between attempts: full
	// jitter, a uniform wait in [0, min(RetryMax, RetryBase*2^n)] after the
	// n-th failure without progress (a Retry-After header, capped at
	// RetryMax, is honoured when longer). 0: 200ms and 10s.
	RetryBase, RetryMax time.Duration
	// StallTimeout: an attempt that receives nothing for this long (waiting
	// for the response or in the middle of the body) is abandoned and
	// retried from where it got to. 0: 30s.
	StallTimeout time.Duration
	// BufferSize is the copy buffer. 0: 1 MiB.
	BufferSize int
	// Progress, if set, is called from the downloading goroutine at most
	// every 250ms while bytes flow, and once at the end of a transfer
	// (Final set). A Fetch that finds the artifact stored transfers
	// nothing and reports nothing.
	Progress func(TransferProgress)
}

// Defaults for the zero values of Store's fields.
const (
	DefaultCheckpointBytes = 64 << 20
	DefaultMaxAttempts     = 8
	DefaultRetryBase       = 200 * time.Millisecond
	DefaultRetryMax        = 10 * time.Second
	DefaultStallTimeout    = 30 * time.Second
	DefaultBufferSize      = 1 << 20
)

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Path is where the artifact with this digest lives once verified.
func (s *Store) Path(digest string) string { return filepath.Join(s.Dir, "sha256", digest) }

// Has reports whether a verified artifact with this digest is stored.
func (s *Store) Has(digest string) bool {
	_, err := os.Stat(s.Path(digest))
	return err == nil
}

// DigestMismatchError: the bytes fetched do not have the expected digest.
type DigestMismatchError struct {
	URL       string
	Want, Got string
	Size      int64
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("artifact %s has sha256 %s, the release says %s: the upstream or a mirror serves a different file; nothing was installed", e.URL, e.Got, e.Want)
}

// SizeMismatchError: the source had more or fewer bytes than the release says.
type SizeMismatchError struct {
	URL       string
	Want, Got int64
}

func (e *SizeMismatchError) Error() string {
	if e.Got > e.Want {
		return fmt.Sprintf("artifact %s is larger than the %d bytes the release says: refusing it", e.URL, e.Want)
	}
	return fmt.Sprintf("artifact %s ended after %d of %d bytes", e.URL, e.Got, e.Want)
}

// TransferStats describes what one FetchStats call did.
type TransferStats struct {
	URL    string `json:"url"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Downloaded is false when the artifact was already stored, or another
	// process stored it while this one waited for the lock.
	Downloaded bool `json:"downloaded"`
	// Shared: this call joined a transfer of the same digest that a
	// concurrent call in this process had started; the numbers are that
	// transfer's.
	Shared bool `json:"shared"`
	// ResumedFrom is the offset restored from a checkpoint left by an
	// earlier, interrupted Fetch (0: none, or not usable).
	ResumedFrom int64 `json:"resumed_from"`
	// BytesReceived counts body bytes read from the source over all
	// attempts: over the network for http(s).
	BytesReceived int64 `json:"bytes_received"`
	// BytesReadFromPartial counts bytes of an existing partial file read
	// back: a resume across processes re-hashes the checkpointed prefix
	// from disk once (the network never sends it again), so that bytes
	// changed on disk since cannot be promoted under the digest.
	BytesReadFromPartial int64 `json:"bytes_read_from_partial"`
	// PrefixChanged: the checkpointed prefix on disk no longer hashed as
	// it did when it was written; it was dropped and fetched again.
	PrefixChanged bool `json:"prefix_changed,omitempty"`
	// Attempts counts requests to the source (opens, for file://).
	Attempts int `json:"attempts"`
	// Retries counts attempts made after a failed one.
	Retries int `json:"retries"`
	// RestartsFromZero counts the times bytes already held were dropped:
	// a server that ignored the range or whose file changed (200 to a
	// ranged request), a bad Content-Range, a 416, a checkpoint from a
	// different URL or that could not be used.
	RestartsFromZero int `json:"restarts_from_zero"`
	// Refetches counts re-fetches from zero after a digest mismatch (at
	// most one).
	Refetches int           `json:"refetches"`
	Duration  time.Duration `json:"duration_ns"`

	// promoted is the file this transfer hashed and renamed into
	// sha256/<hex>: what the daemon may mark verified without hashing it
	// again, if the path still names it.
	promoted os.FileInfo
}

// TransferProgress is what Store.Progress receives.
type TransferProgress struct {
	Digest, URL string
	// Done is how many bytes of the artifact are written and hashed;
	// Total is its size.
	Done, Total int64
	// AttemptBytes were received by the current attempt.
	AttemptBytes int64
	// Attempt is the current attempt, from 1; Retries how many of the
	// attempts so far followed a failure.
	Attempt, Retries int
	// Rate is the current attempt's average, in bytes per second.
	Rate float64
	// Final is set on the last call; Err is then the outcome.
	Final bool
	Err   error
}

// Fetch makes sure the artifact with digest is in the store, downloading it
// from rawURL if needed, and reports whether it downloaded anything. See
// FetchStats.
func (s *Store) Fetch(ctx context.Context, rawURL, digest string, size int64) (bool, error) {
	st, err := s.FetchStats(ctx, rawURL, digest, size)
	return st.Downloaded, err
}

// FetchStats makes sure the artifact with digest is in the store,
// downloading it from rawURL (http, https or file; anything else is an
// *UnsupportedSourceError) if needed, resuming a download an earlier call left behind.
//
// Concurrent calls for the same store directory and digest in this process
// share one transfer (the first caller's source and options are used);
// across processes an flock on Dir/partial/<hex>.lock makes the second
// wait and then find the artifact stored. A caller whose ctx ends stops
// waiting at once; the transfer itself stops, after a checkpoint, when its
// last waiter is gone, and the error then wraps ctx's error.
func (s *Store) FetchStats(ctx context.Context, rawURL, digest string, size int64) (TransferStats, error) {
	stats := TransferStats{URL: rawURL, Digest: digest, Size: size}
	if !digestRE.MatchString(digest) {
		return stats, fmt.Errorf("bad digest %q", digest)
	}
	if size < 0 {
		return stats, fmt.Errorf("bad size %d for artifact %s", size, rawURL)
	}
	if s.Has(digest) {
		return stats, nil
	}
	src, err := s.source(rawURL)
	if err != nil {
		return stats, err
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return stats, err
	}
	return joinFlight(ctx, dir+"\x00"+digest, stats, func(ctx context.Context) (TransferStats, error) {
		return s.fetchLocked(ctx, src, rawURL, digest, size)
	})
}

// flights collapses concurrent fetches of one digest into one store
// directory. It is package-level because callers build a Store per call.
//
// x/sync/singleflight is not used: it cannot tell a caller whether it
// started or joined a call, so it cannot cancel the shared transfer when
// the last interested caller goes away, which is what a Ctrl-C needs.
var flights = struct {
	sync.Mutex
	m map[string]*flight
}{m: map[string]*flight{}}

type flight struct {
	done    chan struct{}
	stats   TransferStats
	err     error
	waiters int
	cancel  context.CancelCauseFunc
}

// testHookJoined, if set, is called when a caller joins a running flight.
var testHookJoined func()

func joinFlight(ctx context.Context, key string, stats TransferStats, run func(context.Context) (TransferStats, error)) (TransferStats, error) {
	flights.Lock()
	f, joined := flights.m[key]
	if !joined {
		// The transfer must outlive the caller that happened to start it
		// while others wait; it keeps ctx's values.
		fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		flights.m[key] = f
		go func() {
			st, err := run(fctx)
			flights.Lock()
			if flights.m[key] == f {
				delete(flights.m, key)
			}
			f.stats, f.err = st, err
			flights.Unlock()
			cancel(nil)
			close(f.done)
		}()
	}
	f.waiters++
	flights.Unlock()
	if joined && testHookJoined != nil {
		testHookJoined()
	}

	select {
	case <-f.done:
		st := f.stats
		st.Shared = joined
		return st, f.err
	case <-ctx.Done():
	}
	flights.Lock()
	f.waiters--
	last := f.waiters == 0
	if last && flights.m[key] == f {
		// A later caller starts afresh (and waits for the flock) rather
		// than join a transfer that is stopping.
		delete(flights.m, key)
	}
	flights.Unlock()
	if !last {
		return stats, fmt.Errorf("waiting for the download of %s: %w", stats.URL, context.Cause(ctx))
	}
	f.cancel(context.Cause(ctx))
	<-f.done // the transfer checkpoints, then returns
	st := f.stats
	st.Shared = joined
	return st, f.err
}
