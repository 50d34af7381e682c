package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
)

// labAndRegistries is a lab on 3.4.1 and the test registries (skipped
// without docker-registry).
func labAndRegistries(t *testing.T, nodes int) (*testLab, *fixtures.RegistrySet) {
	t.Helper()
	if err := fixtures.CheckRegistry(); err != nil {
		t.Skip(err)
	}
	lab := newLab(t, nodes, "3.4.1")
	regs, err := fixtures.StartRegistrySet(t.TempDir(), "operator", "registry-pass")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(regs.Close)
	return lab, regs
}

// registryLab is a lab whose channel is pushed, with `sentinel channel
// push`, to the registry with bearer tokens (regs.Origin), read through
// its pull-through mirror (regs.Mirror) first and the registry itself
// second, as the cluster file's mirrors; the lab's HTTP upstream is gone.
func registryLab(t *testing.T, nodes int) (*testLab, *fixtures.RegistrySet, *tripwire) {
	t.Helper()
	lab, regs := labAndRegistries(t, nodes)
	origin := "oci://" + regs.Origin.Addr + "/sentinel/stable"
	out := lab.mustSucceed("channel", "push", lab.UpstreamDir, origin, "--registry-auth", regs.AuthFile, "--registry-ca", regs.CAFile)
	if !strings.Contains(out.stdout, "tagged") {
		t.Fatalf("channel push printed:\n%s", out.stdout)
	}
	f, err := os.OpenFile(lab.ClusterFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("mirrors:\n  - oci://" + regs.Mirror.Addr + "/sentinel/stable\n  - " + origin +
		"\nregistry_auth: " + regs.AuthFile + "\nregistry_ca: " + regs.CAFile + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return lab, regs, lab.cutUpstream()
}

// blobOf is the sha256 of a file of the lab's channel repository, the
// digest of its blob in the registry.
func blobOf(t *testing.T, lab *testLab, rel string) string {
	t.Helper()
	sum := sha256.Sum256(mustRead(t, filepath.Join(lab.UpstreamDir, filepath.FromSlash(rel))))
	return hex.EncodeToString(sum[:])
}

// TestUpgradeFromRegistryMirrorsFallBack: five nodes upgrade with the
// channel and every artifact read through the pull-through mirror (the
// upstream gone); with the mirror stopped, the next upgrade falls back to
// the registry itself, listed second, and says so.
func TestUpgradeFromRegistryMirrorsFallBack(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab, regs, upstream := registryLab(t, 5)
	origin := "oci://" + regs.Origin.Addr + "/sentinel/stable"
	v := lab.mustSucceed("channel", "verify", "--root", lab.TrustRoot, origin, "--registry-auth", regs.AuthFile, "--registry-ca", regs.CAFile)
	if !strings.Contains(v.stdout, "ok index.json") || strings.Contains(v.stdout, "REFUSED") {
		t.Errorf("channel verify of the pushed registry channel:\n%s", v.stdout)
	}

	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	checkAllOn(t, lab, "3.4.2")
	for _, c := range lab.manifest("3.4.2").Components {
		if _, err := regs.Mirror.BlobPath(c.Artifact.SHA256); err != nil {
			t.Errorf("the pull-through mirror never served %s %s (%v): the nodes did not read through it", c.Name, c.Version, err)
		}
	}

	if err := regs.Mirror.Stop(); err != nil {
		t.Fatal(err)
	}
	out := lab.mustSucceed("upgrade", "3.4.3", "--yes")
	checkAllOn(t, lab, "3.4.3")
	if !strings.Contains(out.stderr, regs.Mirror.Addr) || !strings.Contains(out.stderr, "did not answer") {
		t.Errorf("the fallback from the stopped mirror %s was not reported:\n%s", regs.Mirror.Addr, out.stderr)
	}
	if n := upstream.hits.Load(); n != 0 {
		t.Errorf("the gone upstream was asked %d times", n)
	}
}

// TestRegistryServingTamperedFilesIsRefused: a registry whose stored
// blobs were edited on disk serves them as they are; a tampered
// timestamp is refused as metadata (exit 2), a tampered artifact at its
// fetch (exit 1), and neither installs anything.
func TestRegistryServingTamperedFilesIsRefused(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab, regs, _ := registryLab(t, 1)
	core := lab.core()
	installed := func() string {
		return treeDigest(t, filepath.Join(core.Root, "code")) + treeDigest(t, filepath.Join(core.Root, "etc"))
	}
	before := installed()
	tamper := func(sha string) func() {
		p, err := regs.Origin.BlobPath(sha)
		if err != nil {
			t.Fatal(err)
		}
		orig := mustRead(t, p)
		bad := append([]byte(nil), orig...)
		bad[len(bad)/2] ^= 0x01
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.WriteFile(p, orig, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := regs.Mirror.Stop(); err != nil { // read the tampered registry directly
		t.Fatal(err)
	}

	restore := tamper(blobOf(t, lab, "metadata/timestamp.json"))
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "timestamp") {
		t.Errorf("a tampered timestamp in the registry: exit %d, want 2 naming the timestamp\n%s", r.code, r.stderr)
	}
	if installed() != before {
		t.Error("something was installed from a registry serving a tampered timestamp")
	}
	restore()

	var router string
	for _, c := range lab.manifest("3.4.2").Components {
		if c.Name == "router" {
			router = c.Artifact.SHA256
		}
	}
	tamper(router)
	origin := "oci://" + regs.Origin.Addr + "/sentinel/stable"
	v := lab.sentinel(nil, "channel", "verify", "--root", lab.TrustRoot, origin, "--registry-auth", regs.AuthFile, "--registry-ca", regs.CAFile)
	if v.code != 2 || !strings.Contains(v.stdout, "REFUSED") || !strings.Contains(v.stdout, router[:12]) {
		t.Errorf("channel verify of a registry serving a tampered artifact: exit %d, want 2 and the artifact REFUSED\n%s%s", v.code, v.stdout, v.stderr)
	}
	r = lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr+r.stdout, router[:12]) {
		t.Errorf("a tampered artifact in the registry: exit %d, want 1 naming its digest\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if installed() != before {
		t.Error("something was installed from a registry serving a tampered artifact")
	}
}

// TestResumeFromRegistry: a run reading a registry, killed after its
// first fetches, resumes and takes what is left from the registry (the
// resumed process opens the channel again to know which one).
func TestResumeFromRegistry(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab, _, _ := registryLab(t, 2)
	lab.crashAt(6, "upgrade", "3.4.2", "--yes", "--no-self-update")
	lab.mustSucceed("upgrade", "--resume", "--yes", "--no-self-update")
	checkAllOn(t, lab, "3.4.2")
}

// TestRegistryBadInput: registry URLs and settings that cannot be used
// are refused with exit 2 before anything is read or changed.
func TestRegistryBadInput(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	before := nodeDigest(t, lab.core().Root)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "3.4.2", "--yes", "--mirror", "ftp://127.0.0.1/x"}, "mirrors[0]"},
		{[]string{"upgrade", "3.4.2", "--yes", "--mirror", "oci://127.0.0.1:5000/Bad"}, "not a repository name"},
		{[]string{"upgrade", "3.4.2", "--yes", "--mirror", "oci://127.0.0.1:99999/x"}, `"99999" is not a port`},
		{[]string{"channel", "copy", "oci://127.0.0.1:99999/y", "oci://127.0.0.1:9/x"}, `"99999" is not a port`},
		{[]string{"channel", "verify", "--root", lab.TrustRoot, "oci://127.0.0.1:99999/y"}, `"99999" is not a port`},
		{[]string{"upgrade", "3.4.2", "--yes", "--mirror", "oci://127.0.0.1:9/x", "--registry-auth", filepath.Join(t.TempDir(), "missing.json")}, "registry auth file"},
		{[]string{"channel", "push", lab.UpstreamDir, "https://127.0.0.1/x"}, "oci://HOST[:PORT]/REPO"},
		{[]string{"upgrade", "3.4.2", "--download-only", "--cache-ip", "127.0.0.1:9", "--mirror", "oci://127.0.0.1:9/x"}, "sentinel channel copy"},
		{[]string{"channel", "push", filepath.Join(t.TempDir(), "none"), "oci://127.0.0.1:9/x"}, "not a channel directory"},
		{[]string{"patch", "install", "--download-only", "--mirror", "oci://127.0.0.1:9/x"}, "--release 3.4.1\nthen run `sentinel patch install`"},
		{[]string{"channel", "copy", "http://127.0.0.1:9/", "oci://127.0.0.1:9/x"}, "needs --root FILE"},
		{[]string{"channel", "copy", "oci://127.0.0.1:9/y", "oci://127.0.0.1:9/x", "--release", "3.4.2"}, "needs --root FILE"},
		{[]string{"channel", "copy", "http://127.0.0.1:9/", "oci://127.0.0.1:9/x", "--trust-root", filepath.Join(t.TempDir(), "none.json")}, "trust anchor"},
		{[]string{"channel", "copy", "http://127.0.0.1:9/", "oci://127.0.0.1:9/Bad", "--root", lab.TrustRoot}, "not a repository name"},
	} {
		r := lab.sentinel(nil, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("sentinel %v: exit %d, want 2 saying %q\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
	if nodeDigest(t, lab.core().Root) != before {
		t.Error("bad registry input changed the node")
	}
}

// copyCommandLab: a one-node lab whose cluster file lists a registry
// (regs.Basic) as its mirror. `upgrade --download-only` is refused there
// (exit 2) with the exact `sentinel channel copy` command, which is then
// run as printed: it fills the registry from the HTTP upstream, verified.
// The upstream is gone when it returns.
func copyCommandLab(t *testing.T) (*testLab, *fixtures.RegistrySet, *tripwire) {
	t.Helper()
	lab, regs := labAndRegistries(t, 1)
	mirror := "oci://" + regs.Basic.Addr + "/operator/stable"
	f, err := os.OpenFile(lab.ClusterFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("mirrors:\n  - " + mirror + "\nregistry_auth: " + regs.AuthFile + "\nregistry_ca: " + regs.CAFile + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	before := nodeDigest(t, lab.core().Root)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--download-only")
	want := strings.Join([]string{"sentinel channel copy", lab.upstream.URL, mirror, "--root", lab.TrustRoot,
		"--release 3.4.2 --registry-auth", regs.AuthFile, "--registry-ca", regs.CAFile}, " ")
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("upgrade --download-only with a registry mirror: exit %d, want 2 and the command\n  %s\n%s", r.code, want, r.stderr)
	}
	if nodeDigest(t, lab.core().Root) != before {
		t.Fatal("the refused download-only run changed the node")
	}
	out := lab.mustSucceed(strings.Fields(want)[1:]...)
	if !strings.Contains(out.stdout, "tagged [v") {
		t.Errorf("channel copy printed:\n%s", out.stdout)
	}
	return lab, regs, lab.cutUpstream()
}

// TestDownloadOnlyToRegistryGivesTheCopyCommand: the command
// copyCommandLab runs fills the registry with 3.4.2's artifacts, and a run
// plans 3.4.2 from the registry with the upstream gone.
// TestUpgradeFromRegistryFilledByCopy (long) upgrades from it.
func TestDownloadOnlyToRegistryGivesTheCopyCommand(t *testing.T) {
	t.Parallel()
	lab, regs, upstream := copyCommandLab(t)
	for _, c := range lab.manifest("3.4.2").Components {
		if _, err := regs.Basic.BlobPath(c.Artifact.SHA256); err != nil {
			t.Errorf("%s %s is not in the registry after the copy: %v", c.Name, c.Version, err)
		}
	}
	out := lab.mustSucceed("upgrade", "3.4.2", "--dry-run")
	if !strings.Contains(out.stdout+out.stderr, "3.4.2") {
		t.Errorf("the dry run from the registry:\n%s%s", out.stdout, out.stderr)
	}
	if n := upstream.hits.Load(); n != 0 {
		t.Errorf("the gone upstream was asked %d times", n)
	}
}

// TestUpgradeFromRegistryFilledByCopy: a one-node upgrade from a registry
// filled by the command download-only printed, the upstream gone (about
// 20 s; TestDownloadOnlyToRegistryGivesTheCopyCommand keeps the copy and
// the plan in make test, source.TestChannelCopyFromHTTPUpstream the
// artifacts read back verified).
func TestUpgradeFromRegistryFilledByCopy(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab, _, upstream := copyCommandLab(t)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	checkAllOn(t, lab, "3.4.2")
	if n := upstream.hits.Load(); n != 0 {
		t.Errorf("the gone upstream was asked %d times", n)
	}
}

// TestRegistryErrorsNameWhatToFix: a misspelt repository, a push without
// credentials and a copy source that does not answer: exit 2 where the
// operator's input is wrong, each saying what to fix and naming the
// argument or flag, not the cluster file; a misspelt --mirror is passed
// over with that said, the run reading the channel.
func TestRegistryErrorsNameWhatToFix(t *testing.T) {
	t.Parallel()
	lab, regs := labAndRegistries(t, 1)
	typo := "oci://" + regs.Basic.Addr + "/lab2"
	reg := []string{"--registry-ca", regs.CAFile, "--registry-auth", regs.AuthFile}
	for _, tc := range []struct {
		args       []string
		code       int
		want, dont string
	}{
		{append([]string{"channel", "verify", "--root", lab.TrustRoot, typo}, reg...), 2, "no publication tagged latest in " + typo + ": check the repository name", "HTTP 502"},
		{[]string{"channel", "push", lab.UpstreamDir, "oci://" + regs.Basic.Addr + "/sentinel/x", "--registry-ca", regs.CAFile}, 2, "asks for credentials (HTTP 401 unauthorized): give them with --registry-auth FILE", "map["},
		{append([]string{"channel", "copy", "http://127.0.0.1:9/", "oci://" + regs.Basic.Addr + "/sentinel/x", "--root", lab.TrustRoot}, reg...), 1, "check the SRC argument of `sentinel channel copy`", "cluster file"},
		{append([]string{"upgrade", "3.4.2", "--dry-run", "--no-cache", "--mirror", typo}, reg...), 0, "the channel mirror " + typo + " (--mirror): cannot read " + typo + "/metadata/", "start that mirror"},
	} {
		r := lab.sentinel(nil, tc.args...)
		namesClusterFile := tc.args[0] == "channel" && strings.Contains(r.stderr, "cluster file")
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, tc.dont) || strings.Count(r.stderr, "pushing ") > 1 || namesClusterFile {
			t.Errorf("sentinel %v: exit %d, want %d saying %q (and not %q)\n%s", tc.args, r.code, tc.code, tc.want, tc.dont, r.stderr)
		}
	}
}
