package cache

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

type fetchResult struct {
	st  TransferStats
	err error
}

// TestTransferConcurrentFetchesShareOneTransfer: 8 concurrent fetches of
// one digest, each through its own Store value (as the node agent builds
// one per call), make one request. The origin holds its answer until the
// other 7 callers have joined the transfer.
func TestTransferConcurrentFetchesShareOneTransfer(t *testing.T) {
	data := testData(8*mib, 8)
	digest := sha256Hex(data)
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		<-release
		serve(w, r, data, `"sf"`)
	})
	joined := make(chan struct{}, 8)
	testHookJoined = func() { joined <- struct{}{} }
	t.Cleanup(func() { testHookJoined = nil })

	dir := t.TempDir()
	results := make(chan fetchResult, 8)
	for range 8 {
		go func() {
			st, err := testStore(dir).FetchStats(context.Background(), o.URL, digest, int64(len(data)))
			results <- fetchResult{st, err}
		}()
	}
	for range 7 {
		<-joined
	}
	close(release)
	starters := 0
	for range 8 {
		r := <-results
		if r.err != nil {
			t.Fatalf("fetch: %v", r.err)
		}
		if !r.st.Shared {
			starters++
		}
		if !r.st.Downloaded || r.st.Attempts != 1 {
			t.Errorf("%+v", r.st)
		}
	}
	if starters != 1 {
		t.Errorf("%d callers started a transfer, want 1", starters)
	}
	if n := len(o.requests()); n != 1 {
		t.Errorf("origin saw %d requests for 8 concurrent fetches", n)
	}
	verifyStored(t, &Store{Dir: dir}, digest)
}

// TestTransferSharedCancel: a caller that gives up does not stop the
// transfer others wait for; the last one does, after a checkpoint.
func TestTransferSharedCancel(t *testing.T) {
	data := testData(4*mib, 9)
	digest := sha256Hex(data)
	size := int64(len(data))
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		<-release
		serve(w, r, data, `"x"`)
	})
	joined := make(chan struct{}, 2)
	testHookJoined = func() { joined <- struct{}{} }
	t.Cleanup(func() { testHookJoined = nil })
	dir := t.TempDir()

	ctxA, cancelA := context.WithCancel(context.Background())
	a, b := make(chan fetchResult, 1), make(chan fetchResult, 1)
	go func() {
		st, err := testStore(dir).FetchStats(ctxA, o.URL, digest, size)
		a <- fetchResult{st, err}
	}()
	// B joins A's transfer (or starts it, whichever is first: the hook
	// fires for the second either way).
	go func() {
		st, err := testStore(dir).FetchStats(context.Background(), o.URL, digest, size)
		b <- fetchResult{st, err}
	}()
	<-joined
	cancelA()
	ra := <-a // returns while the origin still holds the answer
	if !errors.Is(ra.err, context.Canceled) {
		t.Errorf("cancelled caller got %v", ra.err)
	}
	close(release)
	rb := <-b
	if rb.err != nil {
		t.Fatalf("the caller that kept waiting got %v", rb.err)
	}
	verifyStored(t, &Store{Dir: dir}, digest)
	if n := len(o.requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

// TestTransferWaitsForAnotherProcess: the flock on partial/<hex>.lock,
// held here as another process would, makes a fetch wait; when the holder
// has stored the artifact and lets go, the fetch finds it and downloads
// nothing. A fetch waiting for the lock stops when its context ends.
func TestTransferWaitsForAnotherProcess(t *testing.T) {
	data := []byte("stored by another process\n")
	digest := sha256Hex(data)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, "") })
	dir := t.TempDir()
	s := testStore(dir)
	if err := os.MkdirAll(filepath.Join(dir, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(dir, "partial", digest+".lock")
	t.Cleanup(func() { testHookLockWait = nil })

	t.Run("cancelled while waiting", func(t *testing.T) {
		unlock, err := lockFile(context.Background(), lockPath)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		ctx, cancel := context.WithCancel(context.Background())
		testHookLockWait = cancel
		_, err = s.FetchStats(ctx, o.URL, digest, int64(len(data)))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})

	t.Run("finds the artifact stored", func(t *testing.T) {
		unlock, err := lockFile(context.Background(), lockPath)
		if err != nil {
			t.Fatal(err)
		}
		waiting := make(chan struct{})
		var once sync.Once
		testHookLockWait = func() { once.Do(func() { close(waiting) }) }
		done := make(chan fetchResult, 1)
		go func() {
			st, err := s.FetchStats(context.Background(), o.URL, digest, int64(len(data)))
			done <- fetchResult{st, err}
		}()
		<-waiting
		if err := os.MkdirAll(filepath.Dir(s.Path(digest)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.Path(digest), data, 0o644); err != nil {
			t.Fatal(err)
		}
		unlock()
		r := <-done
		if r.err != nil || r.st.Downloaded || r.st.Attempts != 0 {
			t.Errorf("%+v, %v: want nothing downloaded", r.st, r.err)
		}
	})
	if n := len(o.requests()); n != 0 {
		t.Errorf("origin saw %d requests", n)
	}
}
