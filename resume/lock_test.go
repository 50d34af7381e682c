package resume

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// helperHoldLock takes the lock, tells the parent, and holds it until killed
// (or until stdin closes).
func helperHoldLock() {
	l, err := AcquireLock(os.Getenv(helperPathEnv), "sentinel upgrade --helper")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	l.Release()
	os.Exit(0)
}

func TestLockContention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "nested", "run.lock")
	const cmdline = "sentinel upgrade --to 1.2.3"
	first, err := AcquireLock(path, cmdline)
	if err != nil {
		t.Fatal(err)
	}

	// flock is per open file description, so a second open in this process contends.
	_, err = AcquireLock(path, "sentinel upgrade --resume")
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second AcquireLock: got %v, want *LockedError", err)
	}
	wantHolder := fmt.Sprintf("pid %d since ", os.Getpid())
	if le.Path != path || !strings.HasPrefix(le.Holder, wantHolder) || !strings.HasSuffix(le.Holder, ": "+cmdline) {
		t.Fatalf("LockedError %+v, want path %s and holder %q...%q", le, path, wantHolder, cmdline)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, le.Holder) {
		t.Fatalf("error %q does not name the lock and holder", msg)
	}

	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	second, err := AcquireLock(path, "sentinel upgrade --resume")
	if err != nil {
		t.Fatalf("AcquireLock after Release: %v", err)
	}
	defer second.Release()
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "--resume") || strings.Contains(string(b), cmdline) {
		t.Fatalf("lock file not rewritten by new holder: %q", b)
	}
}

func TestLockedErrorUnknownHolder(t *testing.T) {
	err := &LockedError{Path: "/run/x.lock"}
	if msg := err.Error(); !strings.Contains(msg, "/run/x.lock") || !strings.Contains(msg, "holder unknown") {
		t.Fatalf("Error() = %q", msg)
	}
}

// TestLockFreedWhenHolderKilled checks that a SIGKILLed run leaves no stale lock.
func TestLockFreedWhenHolderKilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.lock")
	cmd := helperCmd(t, "hold-lock", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v (stderr: %s)", line, err, stderr.String())
	}

	_, err = AcquireLock(path, "sentinel upgrade")
	var le *LockedError
	if !errors.As(err, &le) || !strings.HasPrefix(le.Holder, fmt.Sprintf("pid %d ", cmd.Process.Pid)) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("AcquireLock while helper holds it: got %v, want *LockedError naming pid %d", err, cmd.Process.Pid)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	requireSIGKILL(t, cmd.Wait(), stderr.String())

	l, err := AcquireLock(path, "sentinel upgrade --resume")
	if err != nil {
		t.Fatalf("AcquireLock after holder was killed: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}
