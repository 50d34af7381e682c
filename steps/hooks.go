package steps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
)

// HookError is a hook that failed, timed out or could not run.
type HookError struct {
	Component string
	Version   string
	Hook      string
	Reason    string // "exit status 1", "timed out after 20s"
	Output    string // tail of stdout and stderr
}

func (e *HookError) Error() string {
	return fmt.Sprintf("%s hook of %s %s failed: %s", e.Hook, e.Component, e.Version, e.Reason)
}

const hookOutputTail = 4 << 10

// hookEnv is what every hook learns about where it runs.
type hookEnv struct {
	Root, Node, Component, Version, FromVersion string
}

// hookRunEnv marks every process a hook run starts, so that the leftovers of
// a hook whose agent was killed can be found and stopped (see reapHookLeftovers).
const hookRunEnv = "SENTINEL_HOOK_RUN"

// runHook runs dir/hooks/<name> if the release ships it. It reports false
// when there is no such hook.
func (a *Agent) runHook(ctx context.Context, dir, name string, env hookEnv, timeout time.Duration) (bool, error) {
	return a.runHookTo(ctx, dir, name, env, timeout, nil, true)
}

// runHookTo is runHook with the hook's standard output going to stdout
// (its errors still to the output kept for reports), when stdout is set.
// track records the run in the hook marker, for the next locked agent to
// clean up after; read-only hooks run outside the agent lock and must not.
func (a *Agent) runHookTo(ctx context.Context, dir, name string, env hookEnv, timeout time.Duration, stdout *os.File, track bool) (bool, error) {
	path := filepath.Join(dir, "hooks", name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(reason, output string) error {
		return &HookError{Component: env.Component, Version: env.Version, Hook: name, Reason: reason, Output: output}
	}
	// Output goes to a file, not a pipe: a start hook that leaves a daemon
	// behind must not keep us waiting for the daemon's end of a pipe.
	out, err := os.CreateTemp(a.Layout.TmpDir(), "hook-output-*")
	if err != nil {
		return true, fail("cannot create its output file: "+err.Error(), "")
	}
	defer os.Remove(out.Name())
	defer out.Close()

	runID := make([]byte, 8)
	_, _ = rand.Read(runID)
	mark := hookRunEnv + "=" + hex.EncodeToString(runID)
	newCmd := func() *exec.Cmd {
		cmd := exec.Command(path)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"SENTINEL_ROOT="+env.Root,
			"SENTINEL_NODE="+env.Node,
			"SENTINEL_COMPONENT="+env.Component,
			"SENTINEL_VERSION="+env.Version,
			"SENTINEL_FROM_VERSION="+env.FromVersion,
			mark,
		)
		cmd.Stdout, cmd.Stderr = out, out
		if stdout != nil {
			cmd.Stdout = stdout
		}
		// Own process group, so a timeout kills the hook and its children;
		// the hook dies with the agent (Pdeathsig is per thread: nothing
		// here locks an OS thread, so the spawning thread lives as long as
		// the agent).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	cmd := newCmd()
	untrack := func() {}
	if track {
		if err := durable.WriteFile(a.Layout.HookMarker(), []byte(mark+"\n"+path+"\n"), 0o644); err != nil {
			return true, fail("cannot record the running hook: "+err.Error(), "")
		}
		untrack = func() { os.Remove(a.Layout.HookMarker()) }
	}
	// A hook unpacked a moment ago may still be open for writing in a
	// child that another goroutine of this process is forking (the fd is
	// inherited until that child execs): exec then fails with "text file
	// busy" for an instant. Try again briefly.
	for attempt := 1; ; attempt++ {
		err = cmd.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 10 {
			break
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
		cmd = newCmd()
	}
	if err != nil {
		untrack()
		return true, fail(err.Error(), "")
	}
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	stop()
	untrack()
	if err == nil {
		return true, nil
	}
	reason := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason = fmt.Sprintf("timed out after %s (raise hooks.%s.timeout in the manifest if the component is slow)", timeout, name)
	} else if ctx.Err() != nil {
		reason = "interrupted"
	}
	return true, fail(reason, readTail(out))
}

func readTail(f *os.File) string {
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - hookOutputTail
	if off < 0 {
		off = 0
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return strings.TrimSpace(string(b))
}

// reapHookLeftovers stops what remains of a hook whose agent died (the
// orchestrator was killed, or cancelled the step): its children could
// otherwise race the hook that the resumed run starts again. Only processes
// carrying that hook run's unique marker are killed.
func (a *Agent) reapHookLeftovers() {
	data, err := os.ReadFile(a.Layout.HookMarker())
	if err != nil {
		return
	}
	mark, hook, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	if !strings.HasPrefix(mark, hookRunEnv+"=") {
		os.Remove(a.Layout.HookMarker())
		return
	}
	procs, _ := os.ReadDir("/proc")
	killed := 0
	for _, p := range procs {
		pid := 0
		if _, err := fmt.Sscanf(p.Name(), "%d", &pid); err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(environ, []byte{0}) {
			if string(kv) == mark {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
				break
			}
		}
	}
	if killed > 0 {
		a.logf("stopped %d process(es) left by the interrupted hook %s", killed, hook)
	}
	os.Remove(a.Layout.HookMarker())
}
