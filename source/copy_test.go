package source_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/source"
)

// copyWorld is a published channel served over loopback HTTP, as a
// publisher serves it, and real registries to copy it into.
type copyWorld struct {
	regs     *fixtures.RegistrySet
	repoDir  string // the served channel repository
	rootFile string
	ch       *fixtures.Channel
	up       *fixtures.Upstream
	dst      oci.Ref
}

func newCopyWorld(t *testing.T) *copyWorld {
	t.Helper()
	regs := fixtures.TestRegistrySet(t)
	served, err := fixtures.ServeChannel(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { served.Close() })
	w := &copyWorld{regs: regs, repoDir: served.RepoDir, rootFile: served.RootFile, ch: served.Channel, up: served.Upstream}
	if w.dst, err = oci.ParseRef("oci://" + regs.Basic.Addr + "/operator/stable"); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *copyWorld) copier(t *testing.T, releases ...string) source.ChannelCopy {
	return source.ChannelCopy{Root: w.rootFile, Releases: releases, WorkDir: filepath.Join(t.TempDir(), "work"),
		Registry: oci.Settings{CAFile: w.regs.CAFile, AuthFile: w.regs.AuthFile},
		Say:      func(format string, args ...any) { t.Logf(strings.TrimSuffix(format, "\n"), args...) }}
}

// artifacts are the artifacts of release v and of its patches.
func (w *copyWorld) artifacts(v string) []release.Artifact {
	var out []release.Artifact
	for _, c := range w.ch.Manifests[v].Components {
		out = append(out, c.Artifact)
	}
	if cat := w.ch.Patches[v]; cat != nil {
		for _, p := range cat.Patches {
			for _, pc := range p.Components {
				out = append(out, pc.Artifact)
			}
		}
	}
	return out
}

// published says whether dst has a publication tagged latest.
func (w *copyWorld) published(t *testing.T) bool {
	t.Helper()
	a, err := oci.Settings{CAFile: w.regs.CAFile, AuthFile: w.regs.AuthFile}.ForHost(context.Background(), w.dst.Host)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := oci.Repository(w.dst, a)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = oras.FetchBytes(context.Background(), repo, oci.LatestTag, oras.DefaultFetchBytesOptions)
	return err == nil
}

// readAsARun opens the registry channel as a run does (verified from the
// root) and fetches every artifact of releases with the cache's transfer.
func (w *copyWorld) readAsARun(t *testing.T, releases ...string) {
	t.Helper()
	ctx := context.Background()
	acc, err := oci.Settings{CAFile: w.regs.CAFile, AuthFile: w.regs.AuthFile}.ForHost(ctx, w.dst.Host)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := oci.NewRemote(w.dst, acc)
	if err != nil {
		t.Fatal(err)
	}
	anchor, _ := os.ReadFile(w.rootFile)
	c, err := channel.Open(ctx, channel.Config{URL: w.dst.String(), Anchor: anchor, HTTP: rem.HTTPClient()})
	if err != nil {
		t.Fatalf("opening the copied channel at %s: %v", w.dst, err)
	}
	defer c.Close()
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range ch.Index.Versions() { // every document is there, for any release a node runs
		if _, err := ch.Manifest(ctx, v); err != nil {
			t.Errorf("the manifest of %s in the copy: %v", v, err)
		}
		if _, err := ch.Patches(ctx, v); err != nil {
			t.Errorf("the patch catalog of %s in the copy: %v", v, err)
		}
	}
	hc, err := acc.HTTPClient(w.dst.Host)
	if err != nil {
		t.Fatal(err)
	}
	store := &cache.Store{Dir: t.TempDir(), HTTP: hc}
	for _, v := range releases {
		for _, a := range w.artifacts(v) {
			if _, err := store.Fetch(ctx, w.dst.BlobURL("https", a.SHA256), a.SHA256, a.Size); err != nil {
				t.Errorf("artifact %s of %s from the copy: %v", a.SHA256, v, err)
			}
		}
	}
}

// TestChannelCopyFromHTTPUpstream: a release copied from the publisher's
// HTTP repository into the operator's registry is read there, verified,
// with the upstream gone; a second copy sends nothing and downloads no
// artifact; a copy of the next release adds to the first.
func TestChannelCopyFromHTTPUpstream(t *testing.T) {
	w := newCopyWorld(t)
	ctx := context.Background()
	first, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst)
	if err != nil {
		t.Fatalf("copying 3.4.2 from %s to %s: %v", w.up.URL, w.dst, err)
	}
	if first.ArtifactsThere != 0 || first.Uploaded == 0 {
		t.Errorf("first copy: %+v %+v, want every artifact uploaded", first, first.Pushed)
	}
	for _, a := range w.artifacts("3.4.3") {
		if in342(w, a) {
			continue
		}
		if _, err := w.regs.Basic.BlobPath(a.SHA256); err == nil {
			t.Errorf("artifact %s of 3.4.3 only was copied with --release 3.4.2", a.SHA256)
		}
	}
	downloads := w.up.ArtifactDownloads()

	again, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst)
	if err != nil {
		t.Fatal(err)
	}
	if again.Uploaded != 0 || again.ArtifactsThere != again.Artifacts || again.Manifest != first.Manifest {
		t.Errorf("the same copy again: %+v %+v; want nothing uploaded, every artifact there, the manifest %s", again, again.Pushed, first.Manifest)
	}
	if n := w.up.ArtifactDownloads(); n != downloads {
		t.Errorf("the second copy downloaded %d artifacts the registry held", n-downloads)
	}

	next, err := w.copier(t, "3.4.3").Run(ctx, w.up.URL, w.dst)
	if err != nil {
		t.Fatal(err)
	}
	if next.Kept == 0 {
		t.Errorf("the copy of 3.4.3 kept nothing of the publication of 3.4.2: %+v", next)
	}
	w.up.Close() // the upstream gone
	w.readAsARun(t, "3.4.2", "3.4.3")
}

func in342(w *copyWorld, a release.Artifact) bool {
	for _, b := range w.artifacts("3.4.2") {
		if b.SHA256 == a.SHA256 {
			return true
		}
	}
	return false
}

// TestChannelCopyRefusesWhatDoesNotVerify: tampered metadata or an
// unknown release: refused (a bad-input error), nothing pushed. An
// artifact of other bytes than signed: refused, nothing of it pushed and
// no publication; once the upstream serves it right, the copy again sends
// only what the registry lacks.
func TestChannelCopyRefusesWhatDoesNotVerify(t *testing.T) {
	w := newCopyWorld(t)
	ctx := context.Background()
	repoStored := filepath.Join(w.regs.Basic.Dir, "storage", "docker", "registry", "v2", "repositories", w.dst.Repo)

	restore := badSignature(t, filepath.Join(w.repoDir, "metadata", "timestamp.json"))
	_, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst)
	var ce *channel.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "timestamp") || !strings.Contains(err.Error(), "nothing was pushed") {
		t.Errorf("a tampered timestamp: %v; want a *channel.Error naming the timestamp, saying nothing was pushed", err)
	}
	t.Log(err)
	restore()
	_, err = w.copier(t, "9.9.9").Run(ctx, w.up.URL, w.dst)
	var ue *release.UnknownReleaseError
	if !errors.As(err, &ue) {
		t.Errorf("an unknown release: %v; want a *release.UnknownReleaseError", err)
	}
	if _, err := os.Stat(repoStored); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the registry holds %s after refused copies (%v): something was pushed", repoStored, err)
	}

	// A registry that does not answer: said, with what to check.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := oci.ParseRef("oci://" + ln.Addr().String() + "/operator/stable")
	ln.Close()
	if _, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, gone); err == nil || !strings.Contains(err.Error(), "check that the registry runs") {
		t.Errorf("a copy to a registry that does not answer: %v; want what to check", err)
	}

	// The last artifact copied: a patch's (after the release's own).
	cat := w.ch.Patches["3.4.2"]
	last := cat.Patches[len(cat.Patches)-1].Components[len(cat.Patches[len(cat.Patches)-1].Components)-1].Artifact
	restore = flipByte(t, targetFile(t, w.repoDir, last.SHA256))
	_, err = w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst)
	if !errors.As(err, &ce) || ce.Check != channel.CheckHash || !strings.Contains(err.Error(), "nothing of it was pushed") {
		t.Errorf("an artifact with one byte changed: %v; want a *channel.Error (hash check) saying nothing of it was pushed", err)
	}
	t.Log(err)
	if _, err := w.regs.Basic.BlobPath(last.SHA256); err == nil {
		t.Error("the registry holds the refused artifact's digest")
	}
	if w.published(t) {
		t.Error("a publication was tagged latest although an artifact was refused")
	}
	restore()
	c, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst)
	if err != nil {
		t.Fatalf("the copy again once the upstream serves the signed bytes: %v", err)
	}
	if c.ArtifactsThere == 0 || c.ArtifactsThere == c.Artifacts {
		t.Errorf("the copy again: %d of %d artifacts there already; want those pushed before the refusal, not the refused one", c.ArtifactsThere, c.Artifacts)
	}
	w.readAsARun(t, "3.4.2")

	// Another channel (other keys, another first root) into the same
	// repository: refused before anything is pushed.
	other := t.TempDir()
	r, err := fixtures.Publish(w.ch.Dir, filepath.Join(other, "repo"), filepath.Join(other, "keys"), fixtures.LabExpiry)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := r.RootBytes()
	cp := w.copier(t, "3.4.2")
	cp.Root = filepath.Join(other, "root.json")
	if err := os.WriteFile(cp.Root, root, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = cp.Run(ctx, (&url.URL{Scheme: "file", Path: filepath.Join(other, "repo") + "/"}).String(), w.dst)
	var re *oci.RefError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "another channel") {
		t.Errorf("copying another channel into the repository: %v; want a *oci.RefError saying it holds another channel", err)
	}
	w.readAsARun(t, "3.4.2")
}

// badSignature changes one hex digit of a metadata file's first signature.
func badSignature(t *testing.T, path string) func() {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(orig), `"sig": "`) + len(`"sig": "`)
	if i < len(`"sig": "`) {
		t.Fatalf("%s holds no signature", path)
	}
	bad := append([]byte(nil), orig...)
	if bad[i] = 'a'; orig[i] == 'a' {
		bad[i] = 'b'
	}
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// flipByte changes one byte of a file in place and returns how to undo it.
func flipByte(t *testing.T, path string) func() {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0x01
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// targetFile is the served file of the target with this sha256.
func targetFile(t *testing.T, repoDir, sha string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(filepath.Join(repoDir, "targets"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), sha+".") {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no target %s below %s", sha, repoDir)
	}
	return found
}

// TestChannelVerifyReleasesOfACopy: a registry filled with --release
// 3.4.2 verifies with `channel verify --release 3.4.2`; without it the
// artifacts deliberately not copied fail, named as the verify argument's;
// a release the channel does not offer is refused.
func TestChannelVerifyReleasesOfACopy(t *testing.T) {
	w := newCopyWorld(t)
	ctx := context.Background()
	if _, err := w.copier(t, "3.4.2").Run(ctx, w.up.URL, w.dst); err != nil {
		t.Fatal(err)
	}
	check := func(releases ...string) error {
		return source.ChannelCheck{Root: w.rootFile, Releases: releases,
			Registry: oci.Settings{CAFile: w.regs.CAFile, AuthFile: w.regs.AuthFile},
			Say:      func(string, ...any) {}, Warn: func(string, ...any) {}}.Run(ctx, w.dst.String())
	}
	if err := check("3.4.2"); err != nil {
		t.Errorf("verify --release 3.4.2 of a copy of 3.4.2: %v", err)
	}
	err := check()
	var fe *channel.FetchError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "the channel argument of `sentinel channel verify`") || strings.Contains(err.Error(), "cluster file") {
		t.Errorf("verify of every release of a copy of 3.4.2: %v; want a 3.4.3 artifact missing, naming the argument", err)
	}
	var ue *release.UnknownReleaseError
	if err := check("9.9.9"); !errors.As(err, &ue) {
		t.Errorf("verify --release 9.9.9: %v", err)
	}
}
