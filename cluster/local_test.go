package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sentinel-paas/sentinel/cluster"
)

// fakeAgent is a stand-in for `sentinel node session`: it answers each
// request line with its pid and its build's tag; op "hang" starts a
// child in its process group, writes both pids into the FIFO "hanging"
// and waits for the child; op "die" exits without an answer. With a file
// "linger" it does not end with its stdin.
const fakeAgent = `#!/bin/sh
[ "$1 $2" = "node session" ] || { echo "called as $*" >&2; exit 2; }
while IFS= read -r line; do
	case $line in
	*'"op":"hang"'*) sleep 3600 & echo $$ $! >"$FAKE_AGENT_DIR/hanging"; wait ;;
	*'"op":"die"'*) echo "died on purpose" >&2; exit 3 ;;
	esac
	printf '{"kind":"log","message":"working"}\n{"kind":"result","result":{"pid":%s,"tag":"@TAG@"}}\n' $$
done
[ -e "$FAKE_AGENT_DIR/linger" ] && sleep 3600
`

type fakeAnswer struct {
	PID int    `json:"pid"`
	Tag string `json:"tag"`
}

// installFakeAgent writes the fake agent with a tag at path, replacing
// what is there by a rename, as a self-update does.
func installFakeAgent(t *testing.T, path, tag string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(fakeAgent, "@TAG@", tag)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func call(t *testing.T, tr cluster.Transport, ctx context.Context, op string) (fakeAnswer, error) {
	t.Helper()
	var got fakeAnswer
	var logs []string
	err := tr.Call(ctx, op, map[string]string{"component": "nats"}, &got, func(e cluster.Event) { logs = append(logs, e.Message) })
	if err == nil && (len(logs) != 1 || logs[0] != "working") {
		t.Errorf("%s: log events %q, want the agent's one line", op, logs)
	}
	return got, err
}

// fakeAgentTransport installs the fake agent (tag v1) in a directory of
// its own and returns a local transport that runs it, the directory and
// the binary's path.
func fakeAgentTransport(t *testing.T) (tr cluster.Transport, dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv("FAKE_AGENT_DIR", dir)
	bin = filepath.Join(dir, "sentinel")
	installFakeAgent(t, bin, "v1")
	tr, err := cluster.Dial(cluster.Node{Name: "core", Root: dir, Transport: cluster.TransportLocal}, bin)
	if err != nil {
		t.Fatal(err)
	}
	return tr, dir, bin
}

// waitForExit says whether the process exits (becomes a zombie, or is
// reaped) within limit, told by its pidfd.
func waitForExit(t *testing.T, pid int, limit time.Duration) bool {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(limit)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, max(0, int(time.Until(deadline).Milliseconds())))
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			t.Fatal(err)
		default:
			return n > 0
		}
	}
}

// The local transport keeps one agent per node across calls, and starts
// another when the one it had died, was cancelled, or its binary was
// replaced or removed: each call still runs the binary found at the path.
func TestLocalTransportKeepsItsAgentBetweenCalls(t *testing.T) {
	tr, dir, bin := fakeAgentTransport(t)
	t.Cleanup(func() { tr.(*cluster.Local).Close() })
	ctx := context.Background()

	first, err := call(t, tr, ctx, "facts")
	if err != nil || first.Tag != "v1" {
		t.Fatalf("first call: %+v %v", first, err)
	}
	again, err := call(t, tr, ctx, "install")
	if err != nil || again.PID != first.PID {
		t.Fatalf("second call answered by pid %d (%v), want the same agent, pid %d", again.PID, err, first.PID)
	}

	// The binary replaced (a self-update's rename): the next call runs the
	// new one, and the old agent is let go.
	installFakeAgent(t, bin, "v2")
	upd, err := call(t, tr, ctx, "facts")
	if err != nil || upd.Tag != "v2" || upd.PID == first.PID {
		t.Fatalf("after the binary was replaced: %+v %v, want a new agent of v2", upd, err)
	}
	if !waitForExit(t, first.PID, 10*time.Second) {
		t.Errorf("the agent of the replaced binary, pid %d, still runs 10 s later", first.PID)
	}

	// The agent killed while idle: the next call starts another.
	if err := syscall.Kill(upd.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitForExit(t, upd.PID, 10*time.Second) {
		t.Fatalf("the killed agent %d still runs after 10 s", upd.PID)
	}
	after, err := call(t, tr, ctx, "facts")
	if err != nil || after.PID == upd.PID {
		t.Fatalf("after the idle agent was killed: %+v %v, want a new agent", after, err)
	}

	// An agent that dies without an answer: unreachable, with its stderr.
	_, err = call(t, tr, ctx, "die")
	var ue *cluster.UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "died on purpose") {
		t.Fatalf("agent died mid-call: %v, want UnreachableError with its stderr", err)
	}

	// A cancelled call kills the agent's process group, child included.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	fifo := filepath.Join(dir, "hanging")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := call(t, tr, cctx, "hang"); done <- err }()
	pidsRead := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // until the agent is at its hang
		pidsRead <- b
	}()
	var pids []byte
	select {
	case pids = <-pidsRead:
	case err := <-done:
		t.Fatalf("the hanging call ended before it hung: %v", err)
	}
	var hanging, child int
	if _, err := fmt.Sscan(string(pids), &hanging, &child); err != nil {
		t.Fatalf("reading the hanging agent's pids: %q %v", pids, err)
	}
	cancel()
	if err := <-done; !errors.As(err, &ue) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want UnreachableError for the cancel", err)
	}
	for _, pid := range []int{hanging, child} {
		if !waitForExit(t, pid, 10*time.Second) {
			t.Errorf("pid %d still runs 10 s after the cancel", pid)
		}
	}
	next, err := call(t, tr, ctx, "facts")
	if err != nil || next.PID == hanging {
		t.Fatalf("after a cancel: %+v %v, want a new agent", next, err)
	}

	// The binary removed: the call cannot start an agent, and says so.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, tr, ctx, "facts"); !errors.As(err, &ue) || !strings.Contains(err.Error(), bin) {
		t.Fatalf("binary removed: %v, want UnreachableError naming %s", err, bin)
	}
}

// Closing the transport ends its agent before Close returns, so no agent
// outlives the run (or the status refresh) that started it, and a call
// made after Close leaves no agent behind either.
func TestLocalTransportCloseEndsItsAgent(t *testing.T) {
	tr, _, _ := fakeAgentTransport(t)
	ctx := context.Background()
	first, err := call(t, tr, ctx, "facts")
	if err != nil {
		t.Fatal(err)
	}
	cluster.CloseAll(map[string]cluster.Transport{"core": tr})
	if !waitForExit(t, first.PID, 0) {
		t.Fatalf("agent %d still runs once the transport is closed", first.PID)
	}
	late, err := call(t, tr, ctx, "facts")
	if err != nil || late.PID == first.PID {
		t.Fatalf("call after Close: %+v %v, want a new agent", late, err)
	}
	if !waitForExit(t, late.PID, 10*time.Second) {
		t.Errorf("the agent of a call made after Close, pid %d, still runs 10 s later", late.PID)
	}
}

// An agent that does not end with its stdin is killed, with what it
// runs, once Close has waited for it long enough.
func TestLocalTransportCloseKillsAnAgentThatLingers(t *testing.T) {
	tr, dir, _ := fakeAgentTransport(t)
	if err := os.WriteFile(filepath.Join(dir, "linger"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := call(t, tr, context.Background(), "facts")
	if err != nil {
		t.Fatal(err)
	}
	tr.(*cluster.Local).Close()
	if !waitForExit(t, first.PID, 0) {
		t.Fatalf("agent %d still runs once Close returned", first.PID)
	}
}
