package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/trust"
)

// TestReleaseSignVerify publishes the fixture channel as a publisher would
// (keygen, init-root, sign, rotate-root) and verifies it as a node would,
// over file and HTTP, through every refusal an operator may meet: each step
// runs the real binary and checks its exit code and what it says.
func TestReleaseSignVerify(t *testing.T) {
	work := t.TempDir()
	ch, err := fixtures.Generate(filepath.Join(work, "channel"), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up, err := fixtures.ServeUpstream(ch.Dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	// The harness's runner, without a cluster: release commands need none.
	run := (&testLab{Lab: &fixtures.Lab{}, t: t}).sentinel

	at := func(name string) string { return filepath.Join(work, name) }
	k1, k2, k3 := at("k1.key"), at("k2.key"), at("k3.key")
	anchor, state := at("anchor-root.json"), at("state")
	m342 := filepath.Join(ch.Dir, "releases", "3.4.2", "manifest.json")
	router342 := ch.ArtifactPath("router", "3.4.2")

	// Every verified line: the root, the index, each manifest, each artifact.
	okLines := 2
	for _, m := range ch.Manifests {
		okLines += 1 + len(m.Components)
	}
	verify := []string{"release", "verify", "--root", anchor, ch.Dir}
	verifyState := []string{"release", "verify", "--root", anchor, "--state-dir", state, "--metadata-only", ch.Dir}

	steps := []struct {
		name        string
		prepare     func(t *testing.T)
		args        []string
		code        int
		stdout      []string
		stderr      string
		okLines     int // when set, exactly this many "ok " lines
		undoPrepare func(t *testing.T)
	}{
		{name: "keygen k1", args: []string{"release", "keygen", "--out", k1}, stdout: []string{" " + k1 + "\n"}},
		{name: "keygen k2", args: []string{"release", "keygen", "--out", k2}},
		{name: "keygen k3", args: []string{"release", "keygen", "--out", k3}},
		{name: "keygen never overwrites", args: []string{"release", "keygen", "--out", k1}, code: 2, stderr: "never overwritten"},
		{name: "init-root, two of two", args: []string{"release", "init-root", "--key", k1 + "," + k2, "--threshold", "2", "--expires", "1y", ch.Dir},
			stdout: []string{"root.json version 1, threshold 2 of 2 keys"}},
		{name: "sign the index, every manifest and patch catalog", prepare: copyFile(filepath.Join(ch.Dir, "root.json"), anchor),
			args:   []string{"release", "sign", "--key", k1 + "," + k2, "--version", "1", "--expires", "30d", ch.Dir},
			stdout: []string{"signed index.json version 1", "signed releases/3.4.1/manifest.json", "signed releases/3.4.3/manifest.json", "signed releases/3.4.2/patches.json"}},
		{name: "verify the directory", args: verify, okLines: okLines,
			stdout: []string{"ok index.json version 1", "ok releases/3.4.2/manifest.json version 1", "ok artifacts/router-3.4.2.tar.gz"}},
		{name: "verify over HTTP", args: []string{"release", "verify", "--root", anchor, up.URL}, okLines: okLines},
		{name: "verify with state, at version 1", args: verifyState},
		{name: "a flipped byte in an artifact", prepare: flipByte(router342), undoPrepare: flipByte(router342),
			args: verify, code: 2, stdout: []string{"REFUSED artifacts/router-3.4.2.tar.gz: digest check failed"}, stderr: "1 refusal(s)"},
		{name: "a flipped byte in a manifest", prepare: flipByte(m342), undoPrepare: flipByte(m342),
			args: verify, code: 2, stdout: []string{"REFUSED releases/3.4.2/manifest.json: digest check failed", "ok releases/3.4.3/manifest.json"}},
		{name: "a missing signature", prepare: moveFile(m342+".sig", at("saved.sig")), undoPrepare: moveFile(at("saved.sig"), m342+".sig"),
			args: verify, code: 2, stderr: "releases/3.4.2/manifest.json: signature check failed: releases/3.4.2/manifest.json.sig is missing"},
		{name: "keep version 1's signatures", prepare: copyFile(m342+".sig", at("v1.sig")),
			args: []string{"release", "sign", "--key", k1, "--version", "2", ch.Dir}},
		{name: "signed by one key of two", args: verify, code: 2, stderr: "index.json: threshold check failed: signed by 1 distinct trusted key(s), the root requires 2"},
		{name: "sign version 2", args: []string{"release", "sign", "--key", k1 + "," + k2, "--version", "2", ch.Dir}},
		{name: "verify with state, at version 2", args: verifyState, stdout: []string{"ok releases/3.4.2/manifest.json version 2"}},
		{name: "version 1 again is a rollback", prepare: copyFile(at("v1.sig"), m342+".sig"),
			args: verifyState, code: 2, stderr: "releases/3.4.2/manifest.json: rollback check failed: version 1 is older than the trusted version 2"},
		{name: "without state nothing remembers version 2", args: verify},
		{name: "sign already expired", args: []string{"release", "sign", "--key", k1 + "," + k2, "--version", "3", "--expires", "2026-01-01T00:00:00Z", ch.Dir},
			stderr: "in the past"},
		{name: "expired", args: verifyState, code: 2, stderr: "index.json: expired check failed: expired 2026-01-01T00:00:00Z; the channel's metadata is stale; ask the publisher to re-sign, or pass --allow-expired-metadata"},
		{name: "expired but allowed, and said", args: append([]string{"release", "verify", "--allow-expired-metadata"}, verifyState[2:]...),
			stdout: []string{"ok index.json version 3"}, stderr: "warning: index.json expired 2026-01-01T00:00:00Z; accepted only because of --allow-expired-metadata"},
		{name: "rotation signed by too few old keys", args: []string{"release", "rotate-root", "--old-key", k1, "--key", k3, ch.Dir},
			code: 2, stderr: "2.root.json: rotation check failed: not signed by the trusted root's keys"},
		{name: "rotation to k3", args: []string{"release", "rotate-root", "--old-key", k1 + "," + k2, "--key", k3, "--threshold", "1", ch.Dir},
			stdout: []string{"root.json version 2, threshold 1 of 1 keys"}},
		{name: "sign with the new key", args: []string{"release", "sign", "--key", k3, "--version", "4", ch.Dir}},
		{name: "nodes on the old anchor follow the rotation", args: verifyState, stdout: []string{"ok root.json version 2 (trusted: version 1)", "ok index.json version 4"}},
		{name: "the new root is now the trusted one", args: verifyState, stdout: []string{"ok root.json version 2 (trusted: version 2)"}},
		{name: "sign with the retired keys", args: []string{"release", "sign", "--key", k1 + "," + k2, "--version", "5", ch.Dir}},
		{name: "retired keys are unknown", args: verifyState, code: 2, stderr: "index.json: unknown-key check failed"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.prepare != nil {
				s.prepare(t)
			}
			r := run(nil, s.args...)
			if s.undoPrepare != nil {
				s.undoPrepare(t)
			}
			if r.code != s.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, s.code, r.stdout, r.stderr)
			}
			for _, want := range s.stdout {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, s.stderr) {
				t.Errorf("stderr lacks %q:\n%s", s.stderr, r.stderr)
			}
			if s.okLines > 0 {
				if n := strings.Count(r.stdout, "\nok ") + 1; n != s.okLines || !strings.HasPrefix(r.stdout, "ok ") {
					t.Errorf("%d ok lines, want %d:\n%s", n, s.okLines, r.stdout)
				}
			}
		})
	}

	// The keys are their owner's alone, and the first root lists k1 and k2
	// by the ids of their public keys.
	for _, f := range []string{k1, k2, k3} {
		k, err := trust.LoadPrivateKey(f)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(f)
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, info.Mode().Perm())
		}
		root, _ := os.ReadFile(anchor)
		if f != k3 && !strings.Contains(string(root), k.ID) {
			t.Errorf("the first root does not list %s (%s)", f, k.ID)
		}
	}
}

func copyFile(from, to string) func(t *testing.T) {
	return func(t *testing.T) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func moveFile(from, to string) func(t *testing.T) {
	return func(t *testing.T) {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
}

// flipByte flips one bit in the middle of a file; twice restores it.
func flipByte(path string) func(t *testing.T) {
	return func(t *testing.T) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x20
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
