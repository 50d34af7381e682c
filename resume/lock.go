package resume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
)

// Lock is the run lock: an exclusive flock on a file. The kernel drops it
// when the holder dies, so a crashed run never leaves a stale lock behind.
type Lock struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// LockedError reports that another process holds the run lock.
type LockedError struct {
	Path   string
	Holder string // "pid 123 since 2026-...: sentinel upgrade ...", or "" if unknown
}

func (e *LockedError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "holder unknown"
	}
	return fmt.Sprintf("another sentinel run holds the lock %s (%s): wait for it to finish, or if no such process exists remove nothing; the lock frees itself when the process dies",
		e.Path, holder)
}

// holderFormat starts what the lock file says of its holder.
const holderFormat = "pid %d since "

// HolderPID is the process id a holder (as LockHeld returns it) names, 0
// when it names none.
func HolderPID(holder string) int {
	var pid int
	if _, err := fmt.Sscanf(holder, holderFormat, &pid); err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// maxHolderLen caps how much of a lock file is quoted in a LockedError.
const maxHolderLen = 4096

// AcquireLock takes the run lock at path without blocking, creating parent
// directories as needed, and records this process as the holder. If another
// open file holds it, it returns *LockedError.
func AcquireLock(path string, cmdline string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("acquire lock: %w", err)
	}
	// 0644 so `sentinel status` run by another user can say who holds it.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("acquire lock: %w", err)
	}
	if ok, err := lockPatiently(f); !ok {
		defer f.Close()
		if err == nil {
			return nil, &LockedError{Path: path, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("acquire lock %s: flock: %w", path, err)
	}
	holder := fmt.Sprintf(holderFormat+"%s: %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339), cmdline)
	if err := writeHolder(f, holder); err != nil {
		f.Close() // releases the flock
		return nil, fmt.Errorf("acquire lock %s: record holder: %w", path, err)
	}
	return &Lock{path: path, f: f}, nil
}

// Release drops the lock. The file stays: removing it would let a process
// that already opened the old inode and a process that creates a new one
// both "hold" the lock. Releasing twice is a no-op.
func (l *Lock) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	uerr := durable.Unlock(f)
	// Close releases the flock even if LOCK_UN failed.
	cerr := f.Close()
	if uerr != nil {
		return fmt.Errorf("release lock %s: %w", l.path, uerr)
	}
	if cerr != nil {
		return fmt.Errorf("release lock %s: %w", l.path, cerr)
	}
	return nil
}

func writeHolder(f *os.File, holder string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(holder), 0); err != nil {
		return err
	}
	return f.Sync()
}

// readHolder is best effort: the holder may be rewriting the file right now,
// and the lock error is still right without it.
func readHolder(f *os.File) string {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxHolderLen))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// lockPatiently takes the exclusive lock, trying again for a second when
// it is held: LockHeld (`sentinel status`, perhaps with --watch) holds a
// shared lock for an instant, and a run starting then must not be refused.
// It returns false and no error when the lock stays held.
func lockPatiently(f *os.File) (bool, error) {
	deadline := time.Now().Add(time.Second)
	for {
		ok, err := durable.TryLock(f, true)
		if ok || err != nil || time.Now().After(deadline) {
			return ok, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LockHeld reports whether some process holds the lock at path, and who,
// without taking it for longer than the check and without rewriting the
// holder: `sentinel status` must not get in the way of a run starting.
func LockHeld(path string) (bool, string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	ok, err := durable.TryLock(f, false)
	if err != nil {
		return false, "", err
	}
	if !ok {
		return true, readHolder(f), nil
	}
	return false, "", nil // Close drops the shared lock at once
}
