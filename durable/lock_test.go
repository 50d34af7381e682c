package durable

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// open returns n descriptions of one file: flock locks each apart.
func open(t *testing.T, n int) []*os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lock")
	var fs []*os.File
	for range n {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fs = append(fs, f)
	}
	return fs
}

func TestTryLock(t *testing.T) {
	tests := []struct {
		name          string
		first, second bool // exclusive?
		secondGets    bool
	}{
		{"exclusive excludes exclusive", true, true, false},
		{"exclusive excludes shared", true, false, false},
		{"shared excludes exclusive", false, true, false},
		{"shared admits shared", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := open(t, 2)
			if ok, err := TryLock(fs[0], tt.first); !ok || err != nil {
				t.Fatalf("first: %v, %v", ok, err)
			}
			if ok, err := TryLock(fs[1], tt.second); ok != tt.secondGets || err != nil {
				t.Fatalf("second: %v, %v; want %v", ok, err, tt.secondGets)
			}
		})
	}
}

func TestUnlockAndCloseRelease(t *testing.T) {
	for _, release := range []struct {
		name string
		do   func(*os.File) error
	}{{"unlock", Unlock}, {"close", (*os.File).Close}} {
		t.Run(release.name, func(t *testing.T) {
			fs := open(t, 2)
			if err := Lock(fs[0], true); err != nil {
				t.Fatal(err)
			}
			if ok, _ := TryLock(fs[1], true); ok {
				t.Fatal("two exclusive locks")
			}
			if err := release.do(fs[0]); err != nil {
				t.Fatal(err)
			}
			if ok, err := TryLock(fs[1], true); !ok || err != nil {
				t.Errorf("after %s: %v, %v", release.name, ok, err)
			}
		})
	}
}

// Lock waits for the holder: it returns once the holder unlocks.
func TestLockWaits(t *testing.T) {
	fs := open(t, 2)
	if err := Lock(fs[0], true); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- Lock(fs[1], true) }()
	// Whether or not the goroutine is blocked yet, it can only get the
	// lock after this unlock.
	if err := Unlock(fs[0]); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if ok, _ := TryLock(fs[0], true); ok {
		t.Error("the waiter does not hold the lock")
	}
}

func TestLockContext(t *testing.T) {
	t.Run("free", func(t *testing.T) {
		fs := open(t, 2)
		if err := LockContext(t.Context(), fs[0]); err != nil {
			t.Fatal(err)
		}
		if ok, _ := TryLock(fs[1], false); ok {
			t.Error("not exclusive")
		}
	})
	t.Run("free, ctx already done", func(t *testing.T) {
		fs := open(t, 1)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := LockContext(ctx, fs[0]); err != nil {
			t.Fatalf("a free lock is taken whatever ctx says: %v", err)
		}
	})
	t.Run("held, then cancelled", func(t *testing.T) {
		fs := open(t, 3)
		if err := Lock(fs[0], true); err != nil {
			t.Fatal(err)
		}
		cause := errors.New("operator gave up")
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(cause)
		if err := LockContext(ctx, fs[1]); !errors.Is(err, cause) {
			t.Fatalf("error %v, want the cause %v", err, cause)
		}
		// The abandoned waiter must not end up holding the lock: once the
		// holder closes, a third description gets it.
		fs[0].Close()
		if err := LockContext(t.Context(), fs[2]); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("held, then released", func(t *testing.T) {
		fs := open(t, 2)
		if err := Lock(fs[0], true); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() { got <- LockContext(t.Context(), fs[1]) }()
		fs[0].Close()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	})
}
