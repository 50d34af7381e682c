package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/trust"
)

// strangerKey is a key no root lists: an attacker's.
func strangerKey(t testing.TB) *trust.PrivateKey {
	t.Helper()
	k, err := trust.GenerateKey(filepath.Join(t.TempDir(), "stranger.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// editJSON rewrites a channel document through a generic decode, so that a
// test can change one field the way a publisher or an attacker would.
func editJSON(t testing.TB, path string, edit func(doc map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	out, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setArtifact changes one component's artifact entry in a manifest.
func setArtifact(component string, sha256 string, size int64) func(map[string]any) {
	return func(doc map[string]any) {
		for _, c := range doc["components"].([]any) {
			c := c.(map[string]any)
			if c["name"] == component {
				a := c["artifact"].(map[string]any)
				if sha256 != "" {
					a["sha256"] = sha256
				}
				a["size"] = size
			}
		}
	}
}

func flipOneByte(t testing.TB, path string) (undo func()) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), data...)
	data[len(data)/2] ^= 0x01
	os.WriteFile(path, data, 0o644)
	return func() { os.WriteFile(path, orig, 0o644) }
}

func saveFiles(t testing.TB, paths ...string) (restore func()) {
	t.Helper()
	saved := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = data
	}
	return func() {
		for p, data := range saved {
			os.WriteFile(p, data, 0o644)
		}
	}
}

func (l *testLab) nodeDigests() map[string]string {
	out := map[string]string{}
	for _, n := range l.Nodes {
		out[n.Name] = nodeDigest(l.t, n.Root)
	}
	return out
}

func (l *testLab) artifactOf(version, component string) (sha string, size int64) {
	for _, c := range l.manifest(version).Components {
		if c.Name == component {
			return c.Artifact.SHA256, c.Artifact.Size
		}
	}
	l.t.Fatalf("release %s has no %s", version, component)
	return "", 0
}

// Must-show 1: each refusal comes before any download or change, names the
// document and the check, and exits 2. Then, with every tampering undone,
// the same upgrade goes through: the checks refuse only what they should.
func TestSignedMetadataRefusedBeforeAnyDownload(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	up := lab.UpstreamDir
	manifest := filepath.Join(up, "releases", "3.4.2", "manifest.json")
	_, routerSize := lab.artifactOf("3.4.2", "router")

	cases := []struct {
		name   string
		tamper func() (undo func())
		want   string // doc: check check failed
		// metadata refusals come before even a HEAD of an artifact
		noArtifactRequest bool
	}{
		{"a manifest with one byte changed", func() func() { return flipOneByte(t, manifest) },
			"releases/3.4.2/manifest.json: digest check failed", true},
		{"a manifest signed by an unknown key", func() func() {
			restore := saveFiles(t, manifest+".sig")
			lab.sign("", 1, labExpiry, []*trust.PrivateKey{strangerKey(t)}, "releases/3.4.2/manifest.json")
			return restore
		}, "releases/3.4.2/manifest.json: unknown-key check failed: signed only by keys the trusted root does not list", true},
		{"an expired index", func() func() {
			restore := saveFiles(t, filepath.Join(up, "index.json.sig"))
			lab.sign("", 1, time.Now().Add(-time.Hour), nil, "index.json")
			return restore
		}, "index.json: expired check failed", true},
		{"an artifact served with its signed digest but another size", func() func() {
			restore := saveFiles(t, manifest, manifest+".sig")
			editJSON(t, manifest, setArtifact("router", "", routerSize+1))
			lab.resign("releases/3.4.2/manifest.json") // the publisher signed the wrong size
			return restore
		}, "artifacts/router-3.4.2.tar.gz: length check failed", false},
	}
	core := lab.core()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			undo := tc.tamper()
			defer undo()
			before := nodeDigest(t, core.Root)
			requests, downloads := lab.upstream.ArtifactRequests(), lab.upstream.ArtifactDownloads()
			r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
			t.Logf("stderr:\n%s", r.stderr)
			// The first line is the refusal: "sentinel: DOC: CHECK check failed: ..."
			if r.code != 2 || !strings.Contains(r.stderr, "sentinel: "+tc.want) {
				t.Fatalf("exit %d, want 2 and %q:\n%s", r.code, tc.want, r.stderr)
			}
			if nodeDigest(t, core.Root) != before {
				t.Error("the refused upgrade changed the node")
			}
			if n := lab.upstream.ArtifactDownloads() - downloads; n != 0 {
				t.Errorf("%d artifacts downloaded before the refusal", n)
			}
			if n := lab.upstream.ArtifactRequests() - requests; tc.noArtifactRequest && n != 0 {
				t.Errorf("%d artifact requests before a metadata refusal", n)
			}
			// preflight refuses the same way: it reads the same channel.
			if r := lab.sentinel(nil, "preflight", "3.4.2"); r.code != 2 || !strings.Contains(r.stderr, "sentinel: "+tc.want) {
				t.Errorf("preflight: exit %d, want 2 and %q:\n%s", r.code, tc.want, r.stderr)
			}
		})
	}

	// An expired index is accepted with --allow-expired-metadata, said on
	// stderr and in the log.
	restore := saveFiles(t, filepath.Join(up, "index.json.sig"))
	lab.sign("", 1, time.Now().Add(-time.Hour), nil, "index.json")
	r := lab.mustSucceed("upgrade", "3.4.2", "--dry-run", "--allow-expired-metadata")
	if !strings.Contains(r.stderr, "warning: index.json expired") || !strings.Contains(r.stderr, "accepted only because of --allow-expired-metadata") {
		t.Errorf("no warning for the expired index:\n%s", r.stderr)
	}
	logData, _ := os.ReadFile(filepath.Join(core.Root, "logs", "sentinel-cli.log"))
	if !strings.Contains(string(logData), "index.json expired") || !strings.Contains(string(logData), "--allow-expired-metadata: expired channel metadata is accepted") {
		t.Errorf("the log does not record the expired index:\n%s", logData)
	}
	restore()

	// Everything undone, and published again at version 2: the upgrade
	// goes through, and raises the trusted versions to 2 (a dry run, as
	// above, or preflight, verifies but records nothing).
	lab.sign("", 2, labExpiry, nil)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	everyComponentOn(t, core.Root, "3.4.2")

	// A lower version than the one trusted: the channel's version 1 of the
	// index is now a rollback.
	lab.sign("", 1, labExpiry, nil, "index.json")
	before := nodeDigest(t, core.Root)
	requests := lab.upstream.ArtifactRequests()
	r = lab.sentinel(nil, "upgrade", "3.4.3", "--yes")
	if want := "sentinel: index.json: rollback check failed: version 1 is older than the trusted version 2"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("rollback: exit %d, want 2 and %q:\n%s", r.code, want, r.stderr)
	}
	if nodeDigest(t, core.Root) != before || lab.upstream.ArtifactRequests() != requests {
		t.Error("the rollback refusal changed the node or asked for artifacts")
	}
	if !strings.Contains(r.stderr, "use an up-to-date mirror") {
		t.Errorf("the refusal does not say what to do:\n%s", r.stderr)
	}
}

// Without trust.root the run goes on unverified, and says so on stderr
// and in the log, every run.
func TestUnverifiedChannelIsWarnedAbout(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	data := string(mustRead(t, lab.ClusterFile))
	const block = "trust:\n    root: trust-root.json\n"
	if !strings.Contains(data, block) {
		t.Fatalf("the lab's cluster file has no trust block:\n%s", data)
	}
	os.WriteFile(lab.ClusterFile, []byte(strings.Replace(data, block, "", 1)), 0o644)
	// Even a tampered manifest goes through: nothing checks it.
	manifest := filepath.Join(lab.UpstreamDir, "releases", "3.4.2", "manifest.json")
	editJSON(t, manifest, func(doc map[string]any) { doc["components"].([]any)[0].(map[string]any)["hooks"] = map[string]any{} })
	r := lab.mustSucceed("upgrade", "3.4.2", "--dry-run")
	if want := "sentinel: warning: channel metadata is not verified: set trust.root in " + lab.ClusterFile; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	logData := string(mustRead(t, filepath.Join(lab.core().Root, "logs", "sentinel-cli.log")))
	if !strings.Contains(logData, "channel metadata is not verified") {
		t.Errorf("the log lacks the warning:\n%s", logData)
	}
}

// hostileCache serves a cache node's directory as a compromised cache node
// would: whatever bytes lie there, unverified, under the channel and
// artifact paths the real daemon uses, over TLS with the cache node's own
// certificate and key (the attacker holds the node). It counts artifact
// downloads.
func hostileCache(t *testing.T, lab *testLab) (addr string, gets *atomic.Int64) {
	t.Helper()
	cacheDir := lab.Cache.Dir
	cert, err := tls.LoadX509KeyPair(lab.CacheTLSFiles())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	gets = &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/healthz":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(p, "/channel/"):
			http.ServeFile(w, r, filepath.Join(cacheDir, "channel", filepath.FromSlash(strings.TrimPrefix(p, "/channel/"))))
		case strings.HasPrefix(p, "/artifacts/sha256/"):
			if r.Method == http.MethodGet {
				gets.Add(1)
			}
			http.ServeFile(w, r, filepath.Join(cacheDir, "sha256", filepath.Base(p)))
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), gets
}

var manifestRefused = regexp.MustCompile(`sentinel: releases/3\.4\.2/manifest\.json: (length|digest) check failed`)

// Must-show 2: a compromised cache node (its stored artifact replaced, its
// cached manifest edited, even re-signed by its own key, served by the real
// daemon or by whatever the attacker runs) cannot make any node install
// its bytes. The upstream is gone throughout: the cache is all there is.
func TestCompromisedCacheNodeCannotInstall(t *testing.T) {
	lab := newLab(t, 3, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()

	cachedManifest := filepath.Join(lab.Cache.ChannelDirectory(), "releases", "3.4.2", "manifest.json")
	routerSHA, routerSize := lab.artifactOf("3.4.2", "router")
	stored := filepath.Join(lab.Cache.Dir, "sha256", routerSHA)
	// The attacker's artifact: another release's router, a valid archive.
	evil, err := os.ReadFile(filepath.Join(lab.UpstreamDir, "artifacts", "router-3.4.3.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	evilSHA, _ := lab.artifactOf("3.4.3", "router")
	os.WriteFile(filepath.Join(lab.Cache.Dir, "sha256", evilSHA), evil, 0o644)
	hostile, hostileGets := hostileCache(t, lab)
	restore := saveFiles(t, cachedManifest, cachedManifest+".sig", stored)

	cases := []struct {
		name   string
		cache  string // the daemon --cache-ip names
		tamper func()
		want   *regexp.Regexp
	}{
		{"the cached manifest names the attacker's artifact (real daemon)", lab.cacheIP, func() {
			editJSON(t, cachedManifest, setArtifact("router", evilSHA, int64(len(evil))))
		}, manifestRefused},
		{"the same manifest served by the attacker's daemon", hostile, func() {
			editJSON(t, cachedManifest, setArtifact("router", evilSHA, int64(len(evil))))
		}, manifestRefused},
		{"the edited manifest re-signed with the attacker's key", hostile, func() {
			editJSON(t, cachedManifest, setArtifact("router", evilSHA, int64(len(evil))))
			sig, err := trust.Sign("releases/3.4.2/manifest.json", mustRead(t, cachedManifest), 99, labExpiry, strangerKey(t))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(cachedManifest+".sig", sig, 0o644)
		}, regexp.MustCompile(`sentinel: releases/3\.4\.2/manifest\.json: unknown-key check failed`)},
		{"the stored artifact replaced, of another size", hostile, func() {
			os.WriteFile(stored, append(append([]byte(nil), evil...), 0), 0o644)
		}, regexp.MustCompile(`sentinel: artifacts/router-3\.4\.2\.tar\.gz: length check failed: https://127\.0\.0\.1:\d+/artifacts/sha256/` + routerSHA + ` serves \d+ bytes, its manifest says \d+`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer restore()
			tc.tamper()
			before := lab.nodeDigests()
			gets := hostileGets.Load()
			r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", tc.cache, "--yes")
			t.Logf("stderr:\n%s", r.stderr)
			if r.code != 2 || !tc.want.MatchString(r.stderr) {
				t.Fatalf("exit %d, want 2 and %s:\n%s", r.code, tc.want, r.stderr)
			}
			if !strings.Contains(r.stderr, "read from the cache node https://"+tc.cache+": fill it again from the upstream") {
				t.Errorf("the refusal does not say what to do about the cache node:\n%s", r.stderr)
			}
			for name, d := range lab.nodeDigests() {
				if d != before[name] {
					t.Errorf("node %s changed", name)
				}
			}
			if n := hostileGets.Load() - gets; n != 0 {
				t.Errorf("%d artifacts downloaded from the compromised cache before the refusal", n)
			}
		})
	}

	// The stored artifact replaced by bytes of the same size: nothing in the
	// metadata can tell, and each node's fetch refuses it by its signed
	// sha256 before installing. The DEAs, which need no router, may go
	// ahead; no node ever gets the attacker's router.
	sameSize := make([]byte, routerSize)
	copy(sameSize, evil)
	os.WriteFile(stored, sameSize, 0o644)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", hostile, "--yes")
	t.Logf("same-size replacement, stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, routerSHA) {
		t.Fatalf("same-size replacement: exit %d, want 1 naming the sha256:\n%s", r.code, r.stderr)
	}
	routers := 0
	for _, n := range lab.Nodes {
		if _, err := os.Stat(filepath.Join(n.Root, "code", "router", "releases", "3.4.2")); err == nil {
			t.Errorf("node %s installed router 3.4.2 from the compromised cache", n.Name)
		}
		if _, err := os.Stat(filepath.Join(n.Root, "code", "router")); err != nil {
			continue // no router role
		}
		routers++
		if v, err := fixtures.RunningVersion(n.Root, "router"); err != nil || v != "3.4.1" {
			t.Errorf("node %s runs router %q (%v), want 3.4.1", n.Name, v, err)
		}
	}
	if routers == 0 {
		t.Error("no node of the lab has the router role: the check above proved nothing")
	}
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}

// Must-show 3, at the channel: a new root signed by the old keys is
// followed and documents signed by the new key alone are then accepted; a
// new root that the old keys did not sign is refused, naming the rotation.
func TestRootRotationAtTheChannel(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	pub, err := lab.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	oldKeys, _ := filepath.Glob(filepath.Join(pub.Dir, "k*.key"))
	if len(oldKeys) != fixtures.PublisherKeys {
		t.Fatalf("publisher keys: %v", oldKeys)
	}
	newKey := filepath.Join(t.TempDir(), "k3.key")
	lab.mustSucceed("release", "keygen", "--out", newKey)
	k3, err := trust.LoadPrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}

	// Not signed by the old keys: refused, and nothing changes.
	forged, err := trust.NewRoot([]trust.PublicKey{k3.Public()}, 1, 2, labExpiry, k3)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(lab.UpstreamDir, trust.RootName(2)), forged.Bytes(), 0o644)
	lab.sign("", 2, labExpiry, []*trust.PrivateKey{k3})
	before := nodeDigest(t, lab.core().Root)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if want := "2.root.json: rotation check failed: not signed by the trusted root's keys"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("forged rotation: exit %d, want 2 and %q:\n%s", r.code, want, r.stderr)
	}
	if nodeDigest(t, lab.core().Root) != before {
		t.Error("a refused rotation changed the node")
	}

	// Rotated by the publisher with `sentinel release rotate-root`.
	os.Remove(filepath.Join(lab.UpstreamDir, trust.RootName(2)))
	lab.mustSucceed("release", "rotate-root", "--old-key", strings.Join(oldKeys, ","), "--key", newKey, "--threshold", "1", "--expires", "1y", lab.UpstreamDir)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	everyComponentOn(t, lab.core().Root, "3.4.2")
	// The trusted state now holds the new root: the old keys alone no longer pass.
	lab.sign("", 2, labExpiry, pub.Keys, "index.json")
	r = lab.sentinel(nil, "upgrade", "3.4.3", "--yes")
	if want := "index.json: unknown-key check failed"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("old keys after the rotation: exit %d, want 2 and %q:\n%s", r.code, want, r.stderr)
	}
}

// A patch catalog is signed like the manifests: one byte changed in it and
// `patch status` and `patch install` refuse it, naming the document and
// the check, and no node changes.
func TestTamperedPatchCatalogRefused(t *testing.T) {
	lab := newLab(t, 3, "3.4.2")
	catalog := filepath.Join(lab.UpstreamDir, "releases", "3.4.2", "patches.json")
	if _, err := os.Stat(catalog); err != nil {
		t.Fatalf("the fixture channel has no patch catalog for 3.4.2: %v", err)
	}
	undo := flipOneByte(t, catalog)
	before := lab.nodeDigests()
	for _, args := range [][]string{{"patch", "status"}, {"patch", "install", "--yes"}} {
		r := lab.sentinel(nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "releases/3.4.2/patches.json: digest check failed") {
			t.Errorf("sentinel %v with a tampered catalog: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if after := lab.nodeDigests(); !maps.Equal(before, after) {
		t.Error("a refused patch install changed a node")
	}
	undo()
	lab.mustSucceed("patch", "status")
}

// `patch status`, like preflight and --dry-run, verifies the channel but
// raises no trusted version: only a run that changes something does.
func TestPatchStatusRecordsNoTrustedVersion(t *testing.T) {
	lab := newLab(t, 3, "3.4.2")
	versions := filepath.Join(lab.inventory().State(), "trust", "default", "versions.json")
	lab.mustSucceed("patch", "status")
	if _, err := os.Stat(versions); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("patch status wrote %s (%v)", versions, err)
	}
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if _, err := os.Stat(versions); err != nil {
		t.Errorf("patch install recorded no trusted version: %v", err)
	}
}
