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
	"time"
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

// runHook runs dir/hooks/<name> if the release ships it. It reports false
// when there is no such hook.
func runHook(ctx context.Context, dir, name string, env hookEnv, timeout time.Duration) (bool, error) {
	path := filepath.Join(dir, "hooks", name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command(path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"SENTINEL_ROOT="+env.Root,
		"SENTINEL_NODE="+env.Node,
		"SENTINEL_COMPONENT="+env.Component,
		"SENTINEL_VERSION="+env.Version,
		"SENTINEL_FROM_VERSION="+env.FromVersion,
	)
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A hook that leaves a child holding our pipes must not hang us.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return true, &HookError{Component: env.Component, Version: env.Version, Hook: name, Reason: err.Error()}
	}
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	err := cmd.Wait()
	if err == nil {
		return true, nil
	}
	reason := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason = fmt.Sprintf("timed out after %s (raise hooks.%s.timeout in the manifest if the component is slow)", timeout, name)
	} else if ctx.Err() != nil {
		reason = "interrupted"
	}
	return true, &HookError{Component: env.Component, Version: env.Version, Hook: name, Reason: reason, Output: strings.TrimSpace(out.String())}
}

type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > hookOutputTail {
		t.b = t.b[len(t.b)-hookOutputTail:]
	}
	return len(p), nil
}
func (t *tail) String() string { return string(t.b) }
