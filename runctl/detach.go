package runctl

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Environment of a detached run: the id its parent gave it, and the file
// descriptor on which it says it started.
const (
	RunIDEnv    = "SENTINEL_RUN_ID"
	ReadyFDEnv  = "SENTINEL_READY_FD"
	readyPrefix = "started "
)

// Detach starts args (this executable's arguments for the run, confirmed:
// --yes and no --detach) in a session of its own, its stdin /dev/null and
// its output appended to the run's output file, so that nothing of the
// operator's terminal reaches it. It returns once the run has started (its
// journal exists) and gives the process id; when the process ends before,
// its exit code and the end of its output are in a *DetachError.
func Detach(dir Dir, id string, args []string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding this sentinel's executable to detach the run: %w", err)
	}
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dir.Output(id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	ready, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer ready.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), RunIDEnv+"="+id, ReadyFDEnv+"=3")
	cmd.Stdout, cmd.Stderr = out, out // Stdin nil: /dev/null
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return 0, fmt.Errorf("starting the detached run: %w", err)
	}
	line, _ := bufio.NewReader(ready).ReadString('\n')
	if strings.HasPrefix(line, readyPrefix) {
		pid := cmd.Process.Pid
		_ = cmd.Process.Release()
		return pid, nil
	}
	err = cmd.Wait() // it ended without starting the run
	de := &DetachError{Output: tail(dir.Output(id), 4096)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		de.Code = ee.ExitCode()
	}
	return 0, de
}

// DetachError: the detached process ended before its run started.
type DetachError struct {
	Code   int
	Output string
}

func (e *DetachError) Error() string {
	return fmt.Sprintf("the detached run ended before it started (exit %d); its output:\n%s", e.Code, strings.TrimRight(e.Output, "\n"))
}

// tail is the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return string(buf)
}

// SignalReady tells the parent of a detached run that run id started, when
// this process is one; it does nothing otherwise.
func SignalReady(id string) {
	if os.Getenv(ReadyFDEnv) != "3" {
		return
	}
	// The descriptor stays open across a self-update's re-execution (the
	// new build says it started); anything but a pipe there is not ours.
	var st syscall.Stat_t
	if syscall.Fstat(3, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return
	}
	f := os.NewFile(3, "ready")
	if f == nil {
		return
	}
	_, _ = f.WriteString(readyPrefix + id + "\n")
	_ = f.Close()
	os.Unsetenv(ReadyFDEnv) // once; and not for what this process starts
}

// DetachedArgs are the arguments of the detached process: the same
// command, confirmed (--yes), without --detach.
func DetachedArgs(args []string) []string {
	out := []string{}
	yes := false
	for _, a := range args {
		switch a {
		case "--detach", "--detach=true":
			continue
		case "--yes", "-y", "--skip-confirmation", "--yes=true":
			yes = true
		}
		out = append(out, a)
	}
	if !yes {
		out = append(out, "--yes")
	}
	return out
}
