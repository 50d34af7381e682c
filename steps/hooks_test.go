package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeHook(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks", name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func testAgent(t *testing.T) *Agent {
	root := t.TempDir()
	a := &Agent{Node: "n1", Layout: Layout{Root: root}}
	if err := os.MkdirAll(a.Layout.TmpDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return a
}

// A start hook that leaves a daemon running (the usual way to write one)
// succeeds as soon as the hook itself exits, though the daemon keeps its
// output open.
func TestStartHookMayLeaveDaemon(t *testing.T) {
	a := testAgent(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "daemon.pid")
	writeHook(t, dir, "start", fmt.Sprintf("sleep 300 & echo $! > %s\necho started\n", pidFile))
	ran, err := a.runHook(context.Background(), dir, "start", hookEnv{Component: "c", Version: "1"}, 3*time.Second)
	if !ran || err != nil {
		t.Fatalf("runHook = %v, %v; want success", ran, err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(data), &pid)
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := os.Stat(a.Layout.HookMarker()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hook marker left after the hook ended: %v", err)
	}
}

// A failing hook reports its exit status and the tail of its output; a
// hanging one is killed at its timeout.
func TestHookFailureAndTimeout(t *testing.T) {
	a := testAgent(t)
	dir := t.TempDir()
	writeHook(t, dir, "health", "echo checking\necho 'db not reachable' >&2\nexit 3\n")
	_, err := a.runHook(context.Background(), dir, "health", hookEnv{Component: "c", Version: "1"}, 3*time.Second)
	var he *HookError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "exit status 3") || !strings.Contains(he.Output, "db not reachable") {
		t.Fatalf("err = %#v", err)
	}
	writeHook(t, dir, "stop", "sleep 300\n")
	_, err = a.runHook(context.Background(), dir, "stop", hookEnv{Component: "c", Version: "1"}, 200*time.Millisecond)
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "timed out after 200ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if ran, err := a.runHook(context.Background(), dir, "migrate", hookEnv{}, time.Second); ran || err != nil {
		t.Errorf("missing hook: ran=%v err=%v", ran, err)
	}
}

// What a killed agent's hook left running is stopped by the next agent,
// and only that: processes are matched by the hook run's unique marker.
func TestReapHookLeftovers(t *testing.T) {
	a := testAgent(t)
	mark := hookRunEnv + "=test" + fmt.Sprint(time.Now().UnixNano())
	leftover := exec.Command("sleep", "300")
	leftover.Env = append(os.Environ(), mark)
	bystander := exec.Command("sleep", "300")
	bystander.Env = append(os.Environ(), hookRunEnv+"=someone-else")
	for _, c := range []*exec.Cmd{leftover, bystander} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer bystander.Process.Kill()
	if err := os.WriteFile(a.Layout.HookMarker(), []byte(mark+"\n/x/hooks/migrate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.reapHookLeftovers()
	err := leftover.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("leftover hook process: %v, want killed", err)
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("an unrelated process was killed: %v", err)
	}
	if _, err := os.Stat(a.Layout.HookMarker()); !errors.Is(err, os.ErrNotExist) {
		t.Error("marker not removed")
	}
}

// A migration that completed is not run again, even if the orchestrator
// lost track of it (a crash between the hook and the journal record).
func TestMigrateRunsOnce(t *testing.T) {
	a := testAgent(t)
	rel := a.Layout.ReleaseDir("db", "2")
	count := filepath.Join(t.TempDir(), "runs")
	writeHook(t, rel, "migrate", "echo run >> "+count+"\n")
	req := Request{Component: "db", Version: "2", FromVersion: "1"}
	for i := 0; i < 3; i++ {
		if _, err := a.migrate(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(count)
	if runs := strings.Count(string(data), "run"); runs != 1 {
		t.Errorf("the migrate hook ran %d times, want once", runs)
	}
	// A failed migration is not marked: it runs again.
	writeHook(t, a.Layout.ReleaseDir("db", "3"), "migrate", "exit 1\n")
	if _, err := a.migrate(context.Background(), Request{Component: "db", Version: "3"}); err == nil {
		t.Fatal("a failing migrate hook succeeded")
	}
	if _, err := os.Stat(a.Layout.Migrated("db", "3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed migration was marked done: %v", err)
	}
}
