package main

// The release build: the binary `make build` produces, made by the
// Makefile itself (`make build BIN=...`), so that its flags live in one
// place. What the issue "Installable on real machines" asks of it: static,
// the same bytes from two builds of one commit, running in a root that
// holds nothing but itself and /proc, and no crash injection.

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/selfupdate"
	"github.com/sentinel-paas/sentinel/steps"
)

// releaseTestVersion is stamped into the release builds of these tests,
// so that builds from a git checkout and from a copy without .git agree.
const releaseTestVersion = "0.0.0-releasetest"

var releaseBin struct {
	once sync.Once
	path string
	err  error
}

// releaseBuild returns sentinel as `make build` makes it, built once per
// test binary.
func releaseBuild(t *testing.T) string {
	t.Helper()
	releaseBin.once.Do(func() {
		dir := filepath.Join(filepath.Dir(sentinelBin), "release")
		releaseBin.err = makeBuild(repoRoot(t), dir, nil)
		releaseBin.path = filepath.Join(dir, "sentinel")
	})
	if releaseBin.err != nil {
		t.Fatal(releaseBin.err)
	}
	return releaseBin.path
}

// makeBuild runs `make build` in src with its binaries going to bin, with
// extra environment variables.
func makeBuild(src, bin string, env []string) error {
	if _, err := exec.LookPath("make"); err != nil {
		return fmt.Errorf("make build: %w", err)
	}
	cmd := exec.Command("make", "-C", src, "build", "BIN="+bin, "VERSION="+releaseTestVersion)
	// Not the variables of a make this test may run under (make test):
	// its command-line variables would reach this make too.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make build in %s: %v\n%s", src, err, out)
	}
	return nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatalf("no Makefile at the repository's root: %v", err)
	}
	return root
}

// TestReleaseBuildStatic: no program interpreter and no dynamic section
// (what `file` calls "statically linked"), no symbol table and no DWARF
// (stripped), built without cgo, with -trimpath (which keeps -ldflags out
// of the build info), without tags, by the toolchain the tests run on, and
// stamped.
func TestReleaseBuildStatic(t *testing.T) {
	bin := releaseBuild(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked", p.Type)
		}
	}
	for _, name := range []string{".interp", ".dynamic", ".symtab"} {
		if f.Section(name) != nil {
			t.Errorf("section %s present: want a static, stripped binary", name)
		}
	}
	for _, sec := range f.Sections {
		if strings.HasPrefix(sec.Name, ".debug") || strings.HasPrefix(sec.Name, ".zdebug") {
			t.Errorf("section %s present: want no DWARF (-w)", sec.Name)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("imports %v", libs)
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if info.GoVersion != runtime.Version() {
		t.Errorf("built by %s, want %s (the Makefile's GOTOOLCHAIN)", info.GoVersion, runtime.Version())
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for key, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[key] != want {
			t.Errorf("build setting %s = %q, want %q", key, settings[key], want)
		}
	}
	if tags := settings["-tags"]; tags != "" {
		t.Errorf("built with -tags %q: the release build has no tags", tags)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sentinel "+releaseTestVersion+" ") {
		t.Errorf("version: %v: %s; want the version stamped", err, out)
	}
}

// TestReleaseBuildReproducible: a second build, from a copy of the tree at
// another path into another directory, gives the same bytes. The compile
// cache is shared, so this checks the link and -trimpath;
// TestReleaseBuildReproducibleFromScratch also compiles everything again.
func TestReleaseBuildReproducible(t *testing.T) {
	checkReproducible(t, nil)
}

// TestReleaseBuildReproducibleFromScratch is TestReleaseBuildReproducible
// with an empty build cache: every package compiled again (about a
// minute on two cores). Long scenario: make test-e2e.
func TestReleaseBuildReproducibleFromScratch(t *testing.T) {
	longScenario(t)
	checkReproducible(t, []string{"GOCACHE=" + t.TempDir()})
}

func checkReproducible(t *testing.T, env []string) {
	first := releaseBuild(t)
	copyDir := filepath.Join(t.TempDir(), "elsewhere", "sentinel")
	copyTree(t, repoRoot(t), copyDir)
	bin := t.TempDir()
	if err := makeBuild(copyDir, bin, env); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sentinel", "sentinel-lab"} {
		a, b := fileSHA256(t, filepath.Join(filepath.Dir(first), name)), fileSHA256(t, filepath.Join(bin, name))
		if a != b {
			t.Errorf("%s: sha256 %s from %s, %s from %s: the release build is not reproducible", name, a, repoRoot(t), b, copyDir)
		}
	}
}

// copyTree copies the files git would build from (tracked, and untracked
// ones not ignored, as they are in the working tree) from src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("listing the tree's files needs git: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		from := filepath.Join(src, name)
		fi, err := os.Lstat(from)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestReleaseBuildRunsInEmptyChroot: `sentinel version --check` in a root
// holding nothing but the binary and a mounted /proc (its self-check reads
// its own executable through /proc/self/exe): no libc, no loader, no
// /etc. The mount is made in a mount namespace of its own, so it goes
// away with the process.
func TestReleaseBuildRunsInEmptyChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot and mounting /proc need root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	bin := releaseBuild(t)
	root := t.TempDir()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sentinel"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "--fork", "sh", "-c",
		`mount -t proc proc "$1/proc" && exec chroot "$1" /sentinel version --check`, "sh", root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("in a chroot holding only the binary and /proc: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "sentinel "+releaseTestVersion) || !strings.Contains(out.String(), "self-check: ok") {
		t.Errorf("got %q, want the version and self-check: ok", out.String())
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("the root holds %d entries, want only sentinel and proc", len(entries))
	}
}

// TestReleaseBuildIgnoresCrashInjection: the crash-injection variables,
// which the test builds obey (-tags crashtest), do nothing to the binary
// `make build` produces: an upgrade with SENTINEL_CRASH_AFTER_RECORD=1 runs
// to the end, and a self-update with SENTINEL_CRASH_AT=self-update-renamed
// finishes. The test build, with the same variable, is killed (the
// control: the variable is right).
func TestReleaseBuildIgnoresCrashInjection(t *testing.T) {
	bin := installed(t, releaseBuild(t))
	lab := newLab(t, 1, "3.4.1")
	crashFirst := []string{fmt.Sprintf("%s=1", resume.CrashAfterRecordEnv)}

	// The test builds' clock seam too: an hour of skew would fail preflight.
	r := lab.run(bin, append(crashFirst, steps.ClockSkewEnv+"=1h"), "upgrade", "3.4.2", "--yes")
	if r.code != 0 {
		t.Fatalf("release build with %s and %s=1h: exit %d (signal %v), want a run to the end\n%s", crashFirst[0], steps.ClockSkewEnv, r.code, r.signal, r.stderr)
	}
	lab.wantUpgraded("3.4.2")

	if r := lab.run(sentinelBin, crashFirst, "upgrade", "3.4.3", "--yes"); r.signal != syscall.SIGKILL {
		t.Fatalf("test build with %s: exit %d (signal %v), want SIGKILL", crashFirst[0], r.code, r.signal)
	}

	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: numberedBuild(t, "0.2.0"), Version: "0.2.0"})
	r = lab.run(bin, []string{selfupdate.CrashAtEnv + "=" + selfupdate.CrashRenamed}, "upgrade", "--update-self")
	if r.code != 0 {
		t.Fatalf("release build's self-update with %s=%s: exit %d (signal %v), want it done\n%s", selfupdate.CrashAtEnv, selfupdate.CrashRenamed, r.code, r.signal, r.stderr)
	}
	if v := lab.mustRun(bin, nil, "version").stdout; !strings.HasPrefix(v, "sentinel 0.2.0 ") {
		t.Errorf("after the self-update the installed sentinel says %q", v)
	}
}
