// Package selfupdate replaces the running sentinel executable with a
// newer build the channel offers, safely: the build is fetched into a
// content-addressed store and verified by its signed sha256 and size,
// written next to the executable and fsynced, made to pass its own
// health check (`sentinel version --check`) before and after it takes the
// executable's name, and the previous executable is kept beside it as
// <name>.old. A build that fails its check is never left in place.
//
// The steps of Replace, and what a crash after each leaves:
//
//	write  <dir>/.<name>.new, fsync          the old executable untouched
//	check  .<name>.new version --check       (a failure: .new removed)
//	link   <name> -> <name>.old, fsync dir   both names hold the old build
//	rename .<name>.new -> <name>, fsync dir  <name> is the new build, <name>.old the old one
//	check  <name> version --check            (a failure: <name>.old renamed back)
//
// The caller then re-executes <name> with the same arguments (Exec).
//
// Versions: only numbered builds compare (release.ParseBuildVersion). A
// numbered build is replaced by a strictly newer one, never by an older
// one; a development build ("dev", a git hash) is replaced only when the
// operator asks for it explicitly.
package selfupdate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/crashhook"
	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/release"
)

const (
	// UpdatedFromEnv is set, in the environment of the process a self-update
	// re-executes, to the version it replaced: that process does not
	// update itself again, and records which build continues the run.
	UpdatedFromEnv = "SENTINEL_SELF_UPDATED_FROM"
	// CrashAtEnv is a test hook: set to CrashRenamed, the process SIGKILLs
	// itself right after the new build took the executable's name (and
	// the directory was fsynced), before its check and the re-execution.
	// Obeyed only in builds with -tags crashtest (see package crashhook).
	CrashAtEnv   = "SENTINEL_CRASH_AT"
	CrashRenamed = "self-update-renamed"
	// CheckTimeout bounds a build's health check.
	CheckTimeout = 30 * time.Second
)

// Decision says whether to update, to which build, and why (or why not).
type Decision struct {
	Update bool
	Build  release.SentinelBuild
	Reason string
}

// Decide compares the running build with the newest build builds offers
// for goos/goarch. explicit is the operator's --update-self: it lets a
// development build be replaced. A numbered build is never replaced by an
// older or equal one, explicit or not.
func Decide(running string, builds *release.SentinelBuilds, goos, goarch string, explicit bool) Decision {
	if builds == nil {
		return Decision{Reason: "the channel publishes no sentinel builds (" + release.SentinelBuildsPath + ")"}
	}
	b, ok := builds.Newest(goos, goarch)
	if !ok {
		return Decision{Reason: fmt.Sprintf("the channel offers no sentinel build for %s/%s", goos, goarch)}
	}
	newest, _ := release.ParseBuildVersion(b.Version)
	cur, numbered := release.ParseBuildVersion(running)
	switch {
	case !numbered && !explicit:
		return Decision{Build: b, Reason: fmt.Sprintf("sentinel %s is a development build: it is not replaced automatically (the channel offers %s; `sentinel upgrade --update-self` installs it)", running, b.Version)}
	case !numbered:
		return Decision{Update: true, Build: b, Reason: fmt.Sprintf("replacing the development build %s with %s, as asked", running, b.Version)}
	case newest.Compare(cur) > 0:
		return Decision{Update: true, Build: b, Reason: fmt.Sprintf("the channel offers sentinel %s, newer than %s", b.Version, running)}
	case newest.Compare(cur) == 0:
		return Decision{Build: b, Reason: fmt.Sprintf("sentinel %s is the newest build the channel offers", running)}
	default:
		return Decision{Build: b, Reason: fmt.Sprintf("sentinel %s is newer than the channel's newest build %s: it is kept (no downgrade)", running, b.Version)}
	}
}

// CheckAutomatically reports whether a run should look for a newer build
// without being asked: only numbered builds do, so a development build
// never reads the channel for it (and never replaces itself).
func CheckAutomatically(running string) bool {
	_, ok := release.ParseBuildVersion(running)
	return ok
}

// Updater replaces one executable.
type Updater struct {
	// Path is the executable to replace, symlinks resolved (see Executable).
	Path string
	// StoreDir keeps fetched builds by digest (a cache.Store).
	StoreDir string
	// HTTP fetches the build; nil honours http_proxy and friends.
	HTTP *http.Client
}

// Executable is the running executable's path with symlinks resolved: the
// file a self-update replaces.
func Executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find the running sentinel executable: %w", err)
	}
	if strings.HasSuffix(exe, " (deleted)") {
		return "", fmt.Errorf("the running sentinel executable %s was deleted: put a sentinel binary back (docs/operator.md: Recovering a run whose binary went missing)", strings.TrimSuffix(exe, " (deleted)"))
	}
	p, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("resolving the running sentinel executable %s: %w", exe, err)
	}
	return p, nil
}

// OldPath is where Replace keeps the replaced executable.
func (u *Updater) OldPath() string { return u.Path + ".old" }

func (u *Updater) newPath() string {
	return filepath.Join(filepath.Dir(u.Path), "."+filepath.Base(u.Path)+".new")
}

// Fetch makes sure the build is in the store, downloading it from url (the
// build's own URL, or the cache daemon's by digest), verified against the
// signed sha256 and size. It returns the stored file.
func (u *Updater) Fetch(ctx context.Context, url string, b release.SentinelBuild) (string, error) {
	st := &cache.Store{Dir: u.StoreDir, HTTP: u.HTTP}
	if _, err := st.Fetch(ctx, url, b.Artifact.SHA256, b.Artifact.Size); err != nil {
		return "", fmt.Errorf("fetching sentinel %s (%s/%s) from %s: %w", b.Version, b.OS, b.Arch, url, err)
	}
	return st.Path(b.Artifact.SHA256), nil
}

// CheckError is a build that failed its health check.
type CheckError struct {
	Version    string // the build's signed version
	Path       string // where it was checked
	Output     string
	Err        error
	RolledBack bool // it had taken the executable's name, and the old build was put back
}

func (e *CheckError) Error() string {
	msg := fmt.Sprintf("sentinel %s failed its health check (`%s version --check`): %v", e.Version, e.Path, e.Err)
	if out := strings.TrimSpace(e.Output); out != "" {
		msg += ": " + truncate(out, 400)
	}
	if e.RolledBack {
		msg += "; the previous build was put back in its place"
	} else {
		msg += "; the running build was not replaced"
	}
	return msg
}
func (e *CheckError) Unwrap() error { return e.Err }

// Check runs `path version --check` and requires exit 0 and the first
// line to name version: a build that says it is another version than the
// one signed is refused like a broken one.
func Check(ctx context.Context, path, version string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "version", "--check")
	cmd.Env = withoutEnv(os.Environ(), UpdatedFromEnv, CrashAtEnv)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", CheckTimeout)
		}
		return out.String(), err
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	if f := strings.Fields(first); len(f) < 2 || f[0] != "sentinel" || f[1] != version {
		return out.String(), fmt.Errorf("it says %q, but the channel signed it as sentinel %s", first, version)
	}
	return out.String(), nil
}

// Replace puts the stored build (from, as Fetch returned it) in the
// executable's place, keeping the old one as OldPath. See the package
// comment for the steps. On a *CheckError the old build is in place.
func (u *Updater) Replace(ctx context.Context, from string, b release.SentinelBuild) error {
	dir := filepath.Dir(u.Path)
	fi, err := os.Stat(u.Path)
	if err != nil {
		return fmt.Errorf("the sentinel executable to replace: %w", err)
	}
	newPath := u.newPath()
	if err := copyVerified(from, newPath, fi.Mode().Perm()|0o500, b.Artifact); err != nil {
		os.Remove(newPath)
		return fmt.Errorf("writing sentinel %s next to %s: %w (the executable's directory must be writable by this user; or pass --no-self-update)", b.Version, u.Path, err)
	}
	if out, err := Check(ctx, newPath, b.Version); err != nil {
		os.Remove(newPath)
		return &CheckError{Version: b.Version, Path: newPath, Output: out, Err: err}
	}
	old := u.OldPath()
	if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(newPath)
		return fmt.Errorf("removing the build kept from an earlier self-update, %s: %w", old, err)
	}
	if err := os.Link(u.Path, old); err != nil {
		// A file system without hard links: keep a copy instead.
		if err := durable.CopyFileOverwrite(u.Path, old, fi.Mode().Perm()); err != nil {
			os.Remove(newPath)
			return fmt.Errorf("keeping the running build as %s: %w", old, err)
		}
	}
	if err := durable.SyncDir(dir); err != nil {
		os.Remove(newPath)
		return fmt.Errorf("fsync of %s: %w", dir, err)
	}
	if err := os.Rename(newPath, u.Path); err != nil {
		os.Remove(newPath)
		return fmt.Errorf("putting sentinel %s in place of %s: %w", b.Version, u.Path, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return u.rollback(b, fmt.Errorf("fsync of %s after the rename: %w", dir, err), "")
	}
	if crashhook.Enabled && os.Getenv(CrashAtEnv) == CrashRenamed {
		crashhook.Kill()
	}
	if out, err := Check(ctx, u.Path, b.Version); err != nil {
		return u.rollback(b, err, out)
	}
	return nil
}

// rollback puts the kept build back under the executable's name.
func (u *Updater) rollback(b release.SentinelBuild, cause error, out string) error {
	if err := os.Rename(u.OldPath(), u.Path); err != nil {
		return fmt.Errorf("sentinel %s failed after taking the place of %s (%v), and putting the previous build back failed too: %w; copy %s to %s by hand", b.Version, u.Path, cause, err, u.OldPath(), u.Path)
	}
	if err := durable.SyncDir(filepath.Dir(u.Path)); err != nil {
		return fmt.Errorf("fsync of %s after putting the previous build back: %w", filepath.Dir(u.Path), err)
	}
	return &CheckError{Version: b.Version, Path: u.Path, Output: out, Err: cause, RolledBack: true}
}

// Exec replaces this process with path, same arguments, and env: the run
// goes on in the new build. It returns only on failure.
func Exec(path string, argv, env []string) error {
	err := syscall.Exec(path, argv, env)
	return fmt.Errorf("re-executing %s: %w", path, err)
}

// Environ is env for the re-executed process: the marker of the version
// that was replaced, and no crash hook (it fired or was not asked for).
func Environ(env []string, from string) []string {
	return append(withoutEnv(env, UpdatedFromEnv, CrashAtEnv), UpdatedFromEnv+"="+from)
}

func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// copyVerified copies src to dst (created, mode), hashing as it goes, and
// refuses bytes that are not the signed artifact's: the stored file could
// have been damaged since it was verified. dst is fsynced.
func copyVerified(src, dst string, mode os.FileMode, a release.Artifact) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil && (n != a.Size || hex.EncodeToString(h.Sum(nil)) != a.SHA256) {
		err = fmt.Errorf("the stored build %s is %d bytes with sha256 %x, not the signed %d bytes with sha256 %s: remove it and try again", src, n, h.Sum(nil), a.Size, a.SHA256)
	}
	if err == nil {
		err = out.Chmod(mode) // umask may have narrowed it
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
