package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// bindReadOnly makes dir read-only (a read-only bind mount of itself: root
// ignores permission bits) until the test ends.
func bindReadOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a bind mount")
	}
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", dir, err, out)
	}
}

// A read-only state directory is named, with what to do about it, before
// anything changes. On the commit where the issue was filed the error was
// bare ("read-only file system").
func TestReadOnlyStateDirAdvises(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	state := lab.inventory().State()
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	before := nodeDigest(t, lab.core().Root)
	bindReadOnly(t, state)
	for _, args := range [][]string{{"upgrade", "3.4.2", "--yes"}, {"patch", "install", "--yes"}} {
		r := lab.sentinel(nil, args...)
		t.Logf("sentinel %v: exit %d\n%s", args, r.code, r.stderr)
		if r.code == 0 {
			t.Fatalf("sentinel %v succeeded on a read-only state dir", args)
		}
		for _, want := range []string{state, "read-only", "remount it read-write"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("sentinel %v: stderr lacks %q", args, want)
			}
		}
	}
	if nodeDigest(t, lab.core().Root) != before {
		t.Error("the node changed")
	}
}
