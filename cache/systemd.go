package cache

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sentinel-paas/sentinel/durable"
)

// DefaultDropInPath is where `sentinel cache dropin` writes the unit's
// writable paths.
const DefaultDropInPath = "/etc/systemd/system/sentinel-d.service.d/50-paths.conf"

// SystemdDropIn is a drop-in for sentinel-d.service that lets the daemon
// write the directories its configuration names: the unit runs under
// ProtectSystem=strict, where everything else is read-only, so the
// writable paths must follow cache_dir when it moves to another disk.
func SystemdDropIn(c Config, configPath string) (string, error) {
	paths := []string{c.CacheDir}
	if !within(c.ChannelDir, c.CacheDir) {
		paths = append(paths, c.ChannelDir)
	}
	if c.LogFile != "" {
		paths = append(paths, filepath.Dir(c.LogFile))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by `sentinel cache dropin --config %s`: the directories the\n", configPath)
	b.WriteString("# cache daemon writes (ProtectSystem=strict makes the rest read-only).\n")
	b.WriteString("# After changing cache_dir, channel_dir or log_file, run that command\n")
	b.WriteString("# again, then `systemctl daemon-reload` and restart sentinel-d.\n")
	b.WriteString("[Service]\n")
	for _, p := range paths {
		if strings.ContainsAny(p, "\"\\\n\r%") {
			return "", &ConfigError{File: configPath, Msg: fmt.Sprintf("%q: a path with quotes, backslashes, %% or line breaks cannot be given to systemd's ReadWritePaths", p)}
		}
		fmt.Fprintf(&b, "ReadWritePaths=\"%s\"\n", p)
	}
	return b.String(), nil
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// InstallDropIn creates cache_dir if missing (given to owner and owner's
// group when owner is not ""), and writes SystemdDropIn to out.
func InstallDropIn(c Config, configPath, out, owner string) error {
	text, err := SystemdDropIn(c, configPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.CacheDir, 0o750); err != nil {
		return fmt.Errorf("creating cache_dir: %w", err)
	}
	if owner != "" {
		u, err := user.Lookup(owner)
		if err != nil {
			return &ConfigError{Msg: fmt.Sprintf("the owner %s: %v", owner, err)}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.CacheDir, uid, gid); err != nil {
			return fmt.Errorf("giving %s to %s: %w", c.CacheDir, owner, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(out, []byte(text), 0o644)
}
