package durable

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// File locks are flock(2) locks: advisory, held by the open file
// description (a second os.Open of the same file, even in this process,
// contends with the first), and released when it is closed, or when its
// holder dies, so a crash never leaves a stale lock.

// Lock waits until it holds a lock on f: exclusive, or shared.
func Lock(f *os.File, exclusive bool) error {
	return flock(f, lockHow(exclusive))
}

// TryLock takes a lock on f, exclusive or shared, without waiting. When
// another open file holds a conflicting lock, it returns false and no error.
func TryLock(f *os.File, exclusive bool) (bool, error) {
	err := flock(f, lockHow(exclusive)|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// LockContext waits for an exclusive lock on f while ctx allows. On any
// error f is closed. When ctx ends first the error is context.Cause(ctx),
// and the flock call, still waiting, keeps f until it returns, then closes
// it (dropping the lock it may have got).
func LockContext(ctx context.Context, f *os.File) error {
	ok, err := TryLock(f, true)
	if ok {
		return nil
	}
	if err != nil {
		f.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- Lock(f, true) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-done
			f.Close()
		}()
		return context.Cause(ctx)
	}
}

// Unlock drops the lock on f. Closing f drops it too.
func Unlock(f *os.File) error {
	return flock(f, syscall.LOCK_UN)
}

func lockHow(exclusive bool) int {
	if exclusive {
		return syscall.LOCK_EX
	}
	return syscall.LOCK_SH
}

// flock calls flock(2) on f's descriptor, again when a signal interrupts
// it. The descriptor stays valid meanwhile, even if f is closed.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
