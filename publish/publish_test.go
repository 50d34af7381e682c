package publish

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// archive is a .tar.gz with these hooks (name -> mode) and a payload.
func archive(t *testing.T, hooks map[string]int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, body string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	add("bin/x", 0o755, "#!/bin/sh\n")
	for h, mode := range hooks {
		add("hooks/"+h, mode, "#!/bin/sh\nexit 0\n")
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

var goodHooks = map[string]int64{"stop": 0o755, "start": 0o755, "health": 0o755}

func newTestRepo(t *testing.T) (*Repo, string) {
	t.Helper()
	work := t.TempDir()
	r, err := Init(filepath.Join(work, "channel"), filepath.Join(work, "keys"), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	arts := filepath.Join(work, "artifacts")
	os.MkdirAll(arts, 0o755)
	return r, arts
}

func desc(v string, from ...string) *ReleaseDescription {
	return &ReleaseDescription{Version: v, UpgradeFrom: from, Components: []ComponentDescription{{Name: "router", Roles: []string{"router"}, Artifact: "router-" + v + ".tar.gz"}}}
}

// Keys stay out of the served tree, one file each, 0600.
func TestInitKeepsKeysApart(t *testing.T) {
	work := t.TempDir()
	if _, err := Init(filepath.Join(work, "ch"), filepath.Join(work, "ch", "keys"), InitOptions{}); err == nil || !strings.Contains(err.Error(), "inside the served channel") {
		t.Fatalf("keys inside the served tree: %v", err)
	}
	r, err := Init(filepath.Join(work, "ch2"), filepath.Join(work, "keys"), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(work, "keys", "*.key"))
	if len(files) != 5 {
		t.Errorf("keys %v, want 2 root, targets, snapshot, timestamp", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode().Perm())
		}
	}
	if _, err := Init(r.Dir, filepath.Join(work, "keys2"), InitOptions{}); err == nil {
		t.Error("a second init over a channel was accepted")
	}
}

// A release's archives must carry their hooks, executable; its upgrade
// paths name listed releases; a release is never replaced.
func TestAddReleaseChecks(t *testing.T) {
	r, arts := newTestRepo(t)
	write := func(v string, hooks map[string]int64) {
		os.WriteFile(filepath.Join(arts, "router-"+v+".tar.gz"), archive(t, hooks), 0o644)
	}
	write("1.0.0", map[string]int64{"stop": 0o755, "start": 0o755})
	if err := r.AddRelease(arts, desc("1.0.0")); err == nil || !strings.Contains(err.Error(), "hooks/health is missing") {
		t.Fatalf("a missing hook: %v", err)
	}
	write("1.0.0", map[string]int64{"stop": 0o755, "start": 0o644, "health": 0o755})
	if err := r.AddRelease(arts, desc("1.0.0")); err == nil || !strings.Contains(err.Error(), "hooks/start is not executable") {
		t.Fatalf("a hook not executable: %v", err)
	}
	write("1.0.0", goodHooks)
	if err := r.AddRelease(arts, desc("1.0.0")); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRelease(arts, desc("1.0.0")); err == nil || !strings.Contains(err.Error(), "already in the channel") {
		t.Fatalf("a release replaced: %v", err)
	}
	write("1.1.0", goodHooks)
	if err := r.AddRelease(arts, desc("1.1.0", "0.9.0")); err == nil || !strings.Contains(err.Error(), `"0.9.0" is not listed`) {
		t.Fatalf("an upgrade path from an unknown release: %v", err)
	}
	r2, err := Open(r.Dir, r.Keys) // what the failed add left is not published
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.AddRelease(arts, desc("1.1.0", "1.0.0")); err != nil {
		t.Fatal(err)
	}
	ix, err := r2.Index()
	if err != nil || len(ix.Releases) != 2 || len(ix.UpgradePaths) != 1 {
		t.Fatalf("index %+v %v", ix, err)
	}
	tf := r2.targets.Signed.Targets["artifacts/router-1.1.0.tar.gz"]
	if tf == nil || tf.Custom == nil || !strings.Contains(string(*tf.Custom), `"unpacked_size":`) {
		t.Errorf("the artifact target has no signed unpacked size: %+v", tf)
	}
}

// A machine holding only the online keys refreshes the timestamp but
// cannot sign targets.
func TestOnlineKeysOnly(t *testing.T) {
	r, _ := newTestRepo(t)
	online := filepath.Join(t.TempDir(), "online")
	os.MkdirAll(online, 0o700)
	files, _ := filepath.Glob(filepath.Join(r.Keys, "timestamp-*.key"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(online, filepath.Base(f)), data, 0o600)
	}
	o, err := Open(r.Dir, online)
	if err != nil {
		t.Fatal(err)
	}
	before := o.Versions()["timestamp"]
	if err := o.Timestamp(); err != nil {
		t.Fatal(err)
	}
	if o.Versions()["timestamp"] != before+1 {
		t.Error("the timestamp version did not go up")
	}
	if err := o.Publish(); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("signing targets without its key: %v", err)
	}
}
