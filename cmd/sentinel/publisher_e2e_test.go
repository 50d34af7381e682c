package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	tufpublish "github.com/sentinel-paas/sentinel/publish"
	"github.com/sentinel-paas/sentinel/release"
)

// releaseDescription writes the release.json a publisher would for the
// fixture components of release v.
func releaseDescription(t *testing.T, dir, v string, from ...string) string {
	t.Helper()
	d := tufpublish.ReleaseDescription{Version: v, Channel: "stable", UpgradeFrom: from}
	for _, c := range fixtures.Components() {
		d.Components = append(d.Components, tufpublish.ComponentDescription{Name: c.Name, Roles: c.Roles, Artifact: c.Name + "-" + v + ".tar.gz",
			Hooks: release.Hooks{Health: release.HealthLimits{Timeout: release.Duration(fixtures.HealthTimeout), Retries: fixtures.HealthRetries, Interval: release.Duration(fixtures.HealthInterval)}}})
	}
	data, _ := json.MarshalIndent(d, "", "  ")
	p := filepath.Join(dir, "release-"+v+".json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Must-show 6: the publisher's workflow from an empty directory to an
// upgraded lab, with the commands of docs/publishing.md: init, two
// releases from archives and descriptions, verify, a timestamp refresh
// and a rotation of the timestamp key, then a node upgrades from it. Keys
// stay outside the served tree, mode 0600, and are never printed.
func TestPublisherWorkflowFromEmptyDirectory(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	work := t.TempDir()
	dir, keys := filepath.Join(work, "channel"), filepath.Join(work, "keys")
	arts := filepath.Join(lab.SourceDir, "artifacts") // the component archives, as built
	var out strings.Builder
	run := func(code int, args ...string) result {
		t.Helper()
		r := lab.sentinel(nil, args...)
		out.WriteString(r.stdout + r.stderr)
		if r.code != code {
			t.Fatalf("%v: exit %d, want %d\n%s\n%s", args, r.code, code, r.stdout, r.stderr)
		}
		return r
	}
	r := run(0, "channel", "init", "--keys", keys, dir)
	if !strings.Contains(r.stdout, "trust anchor for operators") || !strings.Contains(r.stdout, "timestamp keys: ") {
		t.Errorf("init says:\n%s", r.stdout)
	}
	other := filepath.Join(work, "other")
	run(2, "channel", "init", "--keys", filepath.Join(other, "keys"), other) // keys inside the served tree
	run(0, "channel", "add-release", "--keys", keys, "--artifacts", arts, "--description", releaseDescription(t, work, "3.4.1"), dir)
	bad := releaseDescription(t, work, "3.4.2", "3.4.0")
	r = run(2, "channel", "add-release", "--keys", keys, "--artifacts", arts, "--description", bad, dir)
	if !strings.Contains(r.stderr, `release "3.4.0" is not listed in releases`) {
		t.Errorf("an upgrade path from an unknown release: %s", r.stderr)
	}
	run(0, "channel", "add-release", "--keys", keys, "--artifacts", arts, "--description", releaseDescription(t, work, "3.4.2", "3.4.1"), dir)
	anchor := filepath.Join(dir, "metadata", "1.root.json")
	r = run(0, "channel", "verify", "--root", anchor, dir)
	if !strings.Contains(r.stdout, "ok index.json: 2 releases") || !strings.Contains(r.stdout, "router-3.4.2.tar.gz") {
		t.Errorf("verify says:\n%s", r.stdout)
	}
	run(0, "channel", "timestamp", "--keys", keys, dir)
	run(0, "channel", "rotate", "--keys", keys, "--role", "timestamp", dir)

	up, err := fixtures.ServeUpstream(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	lab.TrustRoot = filepath.Join(work, "operator-root.json")
	data, _ := os.ReadFile(anchor)
	os.WriteFile(lab.TrustRoot, data, 0o644)
	if err := lab.SetUpstream(up.URL, 0); err != nil {
		t.Fatal(err)
	}
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	lab.wantUpgraded("3.4.2")

	files, _ := filepath.Glob(filepath.Join(keys, "*.key"))
	if len(files) != 6 { // 2 root, targets, snapshot, 2 timestamp (one retired)
		t.Errorf("keys: %v", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode().Perm())
		}
	}
	if strings.Contains(out.String(), "PRIVATE KEY") {
		t.Error("a command printed a private key")
	}
	if served, _ := filepath.Glob(filepath.Join(dir, "*", "*.key")); len(served) > 0 {
		t.Errorf("keys in the served tree: %v", served)
	}
}

// dirState is every file under dir with its content, to tell whether a
// refused command wrote anything.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %x\n", p, sha256.Sum256(data))
		}
		return nil
	})
	return b.String()
}

// Issue 16 break 7 (its last part), on the channel commands: a validity
// that is negative, zero or absurd would sign metadata every client
// refuses; each is exit 2 before any file is written.
func TestChannelExpiryPastRefused(t *testing.T) {
	work := t.TempDir()
	dir, keys := filepath.Join(work, "channel"), filepath.Join(work, "keys")
	sentinel := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command(sentinelBin, args...).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if ee != nil {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := sentinel("channel", "init", "--keys", keys, dir); code != 0 {
		t.Fatalf("channel init: exit %d\n%s", code, out)
	}
	before := dirState(t, work)
	fresh := filepath.Join(work, "fresh")
	for _, flag := range []string{"--root-expiry", "--targets-expiry", "--snapshot-expiry", "--timestamp-expiry"} {
		for _, v := range []string{"-5m", "0s", "-8760h", "876000h"} {
			for _, cmd := range [][]string{
				{"channel", "init", "--keys", filepath.Join(fresh, "keys"), filepath.Join(fresh, "channel")},
				{"channel", "publish", "--keys", keys, dir},
				{"channel", "timestamp", "--keys", keys, dir},
				{"channel", "rotate", "--keys", keys, "--role", "timestamp", dir},
			} {
				args := append(append([]string(nil), cmd...), flag+"="+v)
				code, out := sentinel(args...)
				if code != 2 || !strings.Contains(out, "validity") {
					t.Errorf("%v: exit %d, want 2 naming the validity\n%s", args, code, out)
				}
			}
		}
	}
	if after := dirState(t, work); after != before {
		t.Errorf("a refused command wrote files:\n%s\n---\n%s", before, after)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a refused init made %s (%v)", fresh, err)
	}
}
