package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
)

// maintenanceCommandTimeout bounds each maintenance command.
const maintenanceCommandTimeout = 2 * time.Minute

// shellMaintenance runs the cluster file's maintenance: commands on the
// machine sentinel runs on, with /bin/sh, each logged with its output.
type shellMaintenance struct {
	cfg *cluster.MaintenanceConfig
	log *zap.Logger
}

func (m shellMaintenance) Switch(ctx context.Context, on bool) error {
	cmds := m.cfg.Off
	if on {
		cmds = m.cfg.On
	}
	for _, c := range cmds {
		if _, err := m.run(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// IsOn: every status command exits 0 when the mode is on; one exiting 1
// says it is off; anything else is an error.
func (m shellMaintenance) IsOn(ctx context.Context) (bool, error) {
	for _, c := range m.cfg.Status {
		code, err := m.run(ctx, c)
		switch {
		case code == 1:
			return false, nil
		case err != nil:
			return false, err
		}
	}
	return true, nil
}

// run runs one command and returns its exit code.
func (m shellMaintenance) run(ctx context.Context, command string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, maintenanceCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	m.log.Info("maintenance command", zap.String("command", command), zap.Error(err), zap.String("output", out.String()))
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case ctx.Err() != nil:
		return -1, fmt.Errorf("%q did not finish within %s", command, maintenanceCommandTimeout)
	case errors.As(err, &ee):
		return ee.ExitCode(), fmt.Errorf("%q exited %d: %s", command, ee.ExitCode(), strings.TrimSpace(out.String()))
	}
	return -1, fmt.Errorf("%q: %w", command, err)
}
