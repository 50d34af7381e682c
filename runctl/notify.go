package runctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
)

// maxNotifyOutput is how much of a failed notify command's output is kept.
const maxNotifyOutput = 2048

// notify runs the cluster file's notify command with the run's end in its
// environment, bounded in time. What became of it is returned ("" when
// there is none, "ok", or why it failed) and a failure is warned about:
// it never changes the run's result.
func (r *Recorder) notify(ctx context.Context, e Entry) string {
	n := r.Notify
	if n == nil || len(n.Command) == 0 {
		return ""
	}
	timeout := n.Timeout
	if timeout == 0 {
		timeout = cluster.DefaultNotifyTimeout
	}
	// Not the run's context: a run stopped by Ctrl-C still says so.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.Command[0], n.Command[1:]...)
	cmd.Env = append(os.Environ(), r.notifyEnv(e)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, killed whole at the deadline; and output
	// pipes held by a child it left behind do not keep us waiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return "ok"
	}
	why := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = fmt.Sprintf("did not finish within %s (raise notify.timeout in the cluster file)", timeout)
	}
	if o := strings.TrimSpace(out.String()); o != "" {
		if len(o) > maxNotifyOutput {
			o = o[len(o)-maxNotifyOutput:]
		}
		why += ": " + o
	}
	msg := fmt.Sprintf("the notify command %q of the cluster file %s; the run's result (%s) stands", n.Command, why, e.Result)
	if r.Warn != nil {
		r.Warn("%s", msg)
	}
	return "failed: " + why
}

// notifyEnv is what the notify command is told, in SENTINEL_* variables.
func (r *Recorder) notifyEnv(e Entry) []string {
	who, host, from := Who()
	return []string{
		"SENTINEL_RUN_ID=" + e.ID,
		"SENTINEL_RESULT=" + e.Result,
		"SENTINEL_EXIT_CODE=" + strconv.Itoa(*e.ExitCode),
		"SENTINEL_ERROR=" + e.Error,
		"SENTINEL_FAILED_NODES=" + strings.Join(e.FailedNodes, ","),
		"SENTINEL_EXCLUDED_NODES=" + strings.Join(e.ExcludedNodes, ","),
		"SENTINEL_COMMAND=" + strings.Join(r.Command, " "),
		"SENTINEL_CLUSTER_NAME=" + r.Cluster,
		"SENTINEL_STARTED=" + r.started.Format(time.RFC3339),
		"SENTINEL_USER=" + who,
		"SENTINEL_HOST=" + host,
		"SENTINEL_FROM=" + from,
	}
}
