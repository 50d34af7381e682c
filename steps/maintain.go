package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/release"
)

// Rolling node maintenance (`sentinel maintain`): an operator's action run
// as root on the node, then a reboot, and the orchestrator waiting for the
// node to come back.
//
// How a reboot is told apart from a node that did not go away: the reboot
// op writes <root>/var/run/sentinel-rebooting (var/run is a tmpfs, emptied
// at boot; the lab's reboot empties the node root's var/run) and
// <root>/var/sentinel/reboot-requested (kept across the reboot). The node is
// back once its agent answers and the first file is gone. A reboot op tried
// again after a crash finds the second file without the first: the node has
// rebooted already, and it does not reboot again.

// Maintenance operations.
const (
	OpAction    = "action"     // run the operator's action, as root, with the run's proxy
	OpReboot    = "reboot"     // reboot the node: always, or if it asks for it
	OpBootState = "boot-state" // whether a reboot asked for is still to happen
)

// Reboot policies.
const (
	RebootAlways     = "always"
	RebootIfRequired = "if-required"
	RebootNever      = "never"
)

// DefaultRebootCommand reboots a systemd machine, or another with shutdown.
const DefaultRebootCommand = "systemctl reboot || shutdown -r now"

// DefaultActionTimeout bounds an action whose cluster-file entry gives none.
const DefaultActionTimeout = 30 * time.Minute

// ActionRequest is the action to run (OpAction).
type ActionRequest struct {
	Name    string           `json:"name"`
	Command string           `json:"command"`
	Timeout release.Duration `json:"timeout,omitempty"`
}

// RebootRequest says whether and how to reboot (OpReboot, OpBootState).
type RebootRequest struct {
	Policy  string `json:"policy"`
	Command string `json:"command,omitempty"`
	// Timeout is how long the orchestrator waits for the node to come back.
	Timeout release.Duration `json:"timeout,omitempty"`
	// Self: the node the orchestrator runs on; its reboot ends the run's
	// process, and the operator resumes it.
	Self bool `json:"self,omitempty"`
}

// RebootRequired is the file a node's packages leave when they want a
// reboot (Debian's update-notifier), under the node root.
func (l Layout) RebootRequired() string {
	return filepath.Join(l.Root, "var", "run", "reboot-required")
}

// Rebooting is there from a reboot's request until the node boots again.
func (l Layout) Rebooting() string { return filepath.Join(l.Root, "var", "run", "sentinel-rebooting") }

// RebootRequested survives the reboot: a reboot op tried again knows it
// was asked for before.
func (l Layout) RebootRequested() string {
	return filepath.Join(l.Root, "var", "sentinel", "reboot-requested")
}

// ActionLog keeps every run of an action's output on the node.
func (l Layout) ActionLog(name string) string {
	return filepath.Join(l.LogDir(), "action-"+name+".log")
}

// action runs the operator's command with sh, as the agent's user (root),
// its output appended to the node's action log and, on failure, reported.
func (a *Agent) action(ctx context.Context, req Request) (Result, error) {
	ar := req.Action
	if ar == nil || ar.Command == "" {
		return Result{}, errors.New("no action to run (the orchestrator sent none)")
	}
	if err := os.MkdirAll(a.Layout.LogDir(), 0o755); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(a.Layout.TmpDir(), 0o755); err != nil {
		return Result{}, err
	}
	log, err := os.OpenFile(a.Layout.ActionLog(ar.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Result{}, err
	}
	defer log.Close()
	fmt.Fprintf(log, "== %s action %s\n", time.Now().UTC().Format(time.RFC3339), ar.Name)
	out, err := os.CreateTemp(a.Layout.TmpDir(), "action-output-*")
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	timeout := ar.Timeout.Or(DefaultActionTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command("/bin/sh", "-c", ar.Command)
	cmd.Dir = a.Layout.Root
	cmd.Env = append(os.Environ(), "SENTINEL_ROOT="+a.Layout.Root, "SENTINEL_NODE="+a.Node, "SENTINEL_ACTION="+ar.Name)
	cmd.Env = append(cmd.Env, proxyEnv(req.Proxy)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return Result{}, &HookError{Component: ar.Name, Version: actionFrom, Hook: "action", Reason: err.Error()}
	}
	stop := context.AfterFunc(cctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	stop()
	tail := readTail(out)
	fmt.Fprintf(log, "%s\n", tail)
	if err == nil {
		return Result{Changed: true, Note: "action " + ar.Name + " done"}, nil
	}
	reason := err.Error()
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		reason = fmt.Sprintf("timed out after %s (raise the action's timeout in the cluster file if it is slow)", timeout)
	}
	fmt.Fprintf(log, "== failed: %s\n", reason)
	return Result{}, &HookError{Component: ar.Name, Version: actionFrom, Hook: "action", Reason: reason, Output: tail}
}

// actionFrom words where an action comes from in its HookError: "action
// hook of os-security-updates (the cluster file's action) failed: ...".
const actionFrom = "(the cluster file's action)"

// proxyEnv is the operator's proxy as the environment variables apt, curl
// and wget read (lower and upper case: tools differ).
func proxyEnv(p *release.ProxySettings) []string {
	if p == nil {
		return nil
	}
	var env []string
	for _, kv := range [][2]string{{"http_proxy", p.HTTP}, {"https_proxy", p.HTTPS}, {"all_proxy", p.All}, {"no_proxy", p.No}} {
		if kv[1] == "" {
			continue
		}
		env = append(env, kv[0]+"="+kv[1], upper(kv[0])+"="+kv[1])
	}
	return env
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// reboot starts the node's reboot when the policy says so. The command is
// started in its own session and not waited for: the machine going down
// ends this agent.
func (a *Agent) reboot(_ context.Context, req Request) (Result, error) {
	rr := req.Reboot
	if rr == nil {
		return Result{}, errors.New("no reboot policy (the orchestrator sent none)")
	}
	_, volatileErr := os.Stat(a.Layout.Rebooting())
	if _, err := os.Stat(a.Layout.RebootRequested()); req.Retry && err == nil && errors.Is(volatileErr, fs.ErrNotExist) {
		return Result{Note: "rebooted already"}, nil
	}
	switch rr.Policy {
	case RebootNever:
		return Result{Note: "no reboot (--reboot never)"}, nil
	case RebootIfRequired:
		if _, err := os.Stat(a.Layout.RebootRequired()); errors.Is(err, fs.ErrNotExist) {
			return Result{Note: "no reboot required (" + a.Layout.RebootRequired() + " absent)"}, nil
		}
	case RebootAlways:
	default:
		return Result{}, fmt.Errorf("unknown reboot policy %q (always, if-required or never)", rr.Policy)
	}
	stamp := []byte(time.Now().UTC().Format(time.RFC3339) + "\n")
	if err := durable.WriteFile(a.Layout.RebootRequested(), stamp, 0o644); err != nil {
		return Result{}, err
	}
	if err := durable.WriteFile(a.Layout.Rebooting(), stamp, 0o644); err != nil {
		return Result{}, err
	}
	command := rr.Command
	if command == "" {
		command = DefaultRebootCommand
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "SENTINEL_ROOT="+a.Layout.Root, "SENTINEL_NODE="+a.Node, "SENTINEL_AGENT_PID="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(a.Layout.Rebooting())
		return Result{}, fmt.Errorf("cannot run the reboot command %q: %w", command, err)
	}
	a.logf("reboot started: %s", command)
	go func() { _ = cmd.Wait() }()
	return Result{Changed: true, Note: "rebooting (" + command + ")"}, nil
}

// bootState answers whether the reboot asked for is still to happen.
func (a *Agent) bootState(_ context.Context, _ Request) (Result, error) {
	_, err := os.Stat(a.Layout.Rebooting())
	return Result{Rebooting: err == nil}, nil
}
