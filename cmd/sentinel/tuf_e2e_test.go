package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	tufpublish "github.com/sentinel-paas/sentinel/publish"
)

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

// keyOf is the lab publisher's key file of role (the first the root lists).
func (l *testLab) keyOf(role string) *tufpublish.Key {
	l.t.Helper()
	pub, err := l.Publisher()
	if err != nil {
		l.t.Fatal(err)
	}
	keys, err := tufpublish.LoadKeys(l.KeysDir)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, id := range pub.KeyIDs(role) {
		if k, ok := keys[id]; ok {
			return k
		}
	}
	l.t.Fatalf("no %s key in %s", role, l.KeysDir)
	return nil
}

// forgeTimestamp rewrites the lab's served timestamp with edit, signed
// by keys: an attacker's, or leaked ones.
func (l *testLab) forgeTimestamp(edit func(*metadata.TimestampType), keys ...*tufpublish.Key) {
	l.t.Helper()
	p := filepath.Join(l.UpstreamDir, "metadata", "timestamp.json")
	ts, err := metadata.Timestamp().FromFile(p)
	if err != nil {
		l.t.Fatal(err)
	}
	edit(&ts.Signed)
	if err := tufpublish.SignWith(ts, keys...); err != nil {
		l.t.Fatal(err)
	}
	if err := ts.ToFile(p, true); err != nil {
		l.t.Fatal(err)
	}
}

func strangerKey(t testing.TB) *tufpublish.Key {
	t.Helper()
	k, err := tufpublish.NewKey(t.TempDir(), "timestamp")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantRefusedUnchanged runs an upgrade that must be refused with exit 2,
// naming the document and the check, before any artifact is requested
// and with every node unchanged.
func (l *testLab) wantRefusedUnchanged(doc, check string, args ...string) result {
	l.t.Helper()
	before := l.nodeDigests()
	arts := l.upstream.ArtifactRequests()
	if len(args) == 0 {
		args = []string{"upgrade", "3.4.2", "--yes"}
	}
	r := l.sentinel(nil, args...)
	want := "channel document " + doc
	if r.code != 2 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "("+check+" check)") {
		l.t.Fatalf("exit %d, want 2 with %q and the %s check:\n%s", r.code, want, check, r.stderr)
	}
	if n := l.upstream.ArtifactRequests() - arts; n != 0 {
		l.t.Errorf("%d artifact requests before the refusal", n)
	}
	for name, d := range l.nodeDigests() {
		if d != before[name] {
			l.t.Errorf("node %s changed", name)
		}
	}
	return r
}

// trustNow makes the lab's orchestrator trust the channel as served now:
// any run that reads the channel records it (this one stops at the
// unknown release, before any node is touched).
func (l *testLab) trustNow() {
	l.t.Helper()
	if r := l.sentinel(nil, "upgrade", "9.9.9", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "not offered by the channel") {
		l.t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// Must-show 1: mix-and-match. The publisher replaced release 3.4.2's
// manifest; a mirror serves the current timestamp, snapshot and targets
// with the superseded manifest (validly signed when it was current) under
// the current name, or the superseded targets metadata with the current
// snapshot. Both are refused before any artifact is requested, exit 2,
// naming the document and the check, and no node changes.
func TestMixAndMatchRefused(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	name := "releases/3.4.2/manifest.json"
	superseded := mustRead(t, lab.served(name))
	pub, _ := lab.Publisher()
	oldTargets := mustRead(t, filepath.Join(lab.UpstreamDir, "metadata", fmt.Sprintf("%d.targets.json", pub.Versions()["targets"])))
	editJSON(t, lab.source(name), func(doc map[string]any) {
		doc["components"].([]any)[0].(map[string]any)["hooks"].(map[string]any)["start"] = map[string]any{"timeout": "45s"}
	})
	lab.republish(name)
	// Before the client holds the current targets metadata (once it does,
	// it keeps it and reads no other until the snapshot moves on).
	pub, _ = lab.Publisher()
	targetsName := fmt.Sprintf("metadata/%d.targets.json", pub.Versions()["targets"])
	targets := filepath.Join(lab.UpstreamDir, filepath.FromSlash(targetsName))
	restore := saveFiles(t, targets)
	os.WriteFile(targets, oldTargets, 0o644)
	lab.wantRefusedUnchanged(targetsName, "snapshot-mismatch")
	restore()

	current := lab.served(name)
	restore = saveFiles(t, current)
	os.WriteFile(current, superseded, 0o644)
	lab.wantRefusedUnchanged(name, "hash")
	restore()
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
}

// Must-show 2: freeze. A timestamp older than the trusted one is refused
// (rollback); an expired one is refused, unless --allow-expired-metadata,
// which says so, logs it and records it in the run's journal.
func TestFreezeRefusedUnlessAirGappedOverride(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	ts := filepath.Join(lab.UpstreamDir, "metadata", "timestamp.json")
	old := mustRead(t, ts)
	pub, _ := lab.Publisher()
	if err := pub.Timestamp(); err != nil {
		t.Fatal(err)
	}
	lab.trustNow()
	restore := saveFiles(t, ts)
	os.WriteFile(ts, old, 0o644)
	lab.wantRefusedUnchanged("metadata/timestamp.json", "rollback")
	restore()

	pub, _ = lab.Publisher()
	pub.Expiry.Timestamp = time.Hour
	pub.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	if err := pub.Timestamp(); err != nil {
		t.Fatal(err)
	}
	r := lab.wantRefusedUnchanged("metadata/timestamp.json", "expired")
	if !strings.Contains(r.stderr, "--allow-expired-metadata") {
		t.Errorf("the refusal does not name the override:\n%s", r.stderr)
	}
	r = lab.mustSucceed("upgrade", "3.4.2", "--yes", "--allow-expired-metadata")
	want := "metadata/timestamp.json expired"
	if !strings.Contains(r.stderr, want) {
		t.Errorf("the override did not say what it accepted:\n%s", r.stderr)
	}
	if log := string(mustRead(t, filepath.Join(lab.core().Root, "logs", "sentinel-cli.log"))); !strings.Contains(log, want) {
		t.Error("the accepted expired timestamp is not in the log")
	}
	if j := string(mustRead(t, lab.journalPath())); !strings.Contains(j, "expired_metadata") || !strings.Contains(j, want) {
		t.Error("the accepted expired timestamp is not in the run's journal")
	}
	lab.wantUpgraded("3.4.2")
}

// Must-show 4: refusals at the channel, each exit 2 before any artifact
// is requested, nodes unchanged: a timestamp signed by an unknown key; a
// root rotation not signed by the old root's threshold; an artifact
// served with another size than its signed target (caught by asking its
// size, before any download). An artifact of the same size but other
// bytes is caught at fetch, exit 1: TestDigestMismatchCaughtBeforeInstall.
// Rollback: TestFreezeRefusedUnlessAirGappedOverride; endless data and a
// threshold not met: channel.TestEndlessMetadataIsCutOff and
// channel.TestSignatureRefusals, over loopback HTTP.
func TestChannelRefusalsChangeNothing(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	ts := filepath.Join(lab.UpstreamDir, "metadata", "timestamp.json")
	restore := saveFiles(t, ts)
	lab.forgeTimestamp(func(s *metadata.TimestampType) { s.Version++ }, strangerKey(t))
	lab.wantRefusedUnchanged("metadata/timestamp.json", "unknown-key")
	restore()

	root, err := metadata.Root().FromFile(filepath.Join(lab.UpstreamDir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	root.Signed.Version = 2
	root.Signed.AddKey(strangerKey(t).Public(), "targets")
	tufpublish.SignWith(root, lab.keyOf("root")) // one of the two root keys the threshold needs
	rotation := filepath.Join(lab.UpstreamDir, "metadata", "2.root.json")
	root.ToFile(rotation, true)
	lab.wantRefusedUnchanged("metadata/2.root.json", "rotation")
	os.Remove(rotation)

	art := lab.served("artifacts/router-3.4.2.tar.gz")
	restore = saveFiles(t, art)
	os.WriteFile(art, append(mustRead(t, art), 0), 0o644)
	before := lab.nodeDigests()
	downloads := lab.upstream.ArtifactDownloads()
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "router-3.4.2.tar.gz") || !strings.Contains(r.stderr, "(length check)") {
		t.Fatalf("an artifact of another size: exit %d, want 2 naming it and the length check:\n%s", r.code, r.stderr)
	}
	if n := lab.upstream.ArtifactDownloads() - downloads; n != 0 {
		t.Errorf("%d artifacts downloaded before the refusal", n)
	}
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed", name)
		}
	}
	restore()
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
}

// hostileCache serves a cache directory the way an attacker who owns the
// cache node would, over TLS with the node's own certificate and key (it
// holds them), counting the artifacts it hands out.
func hostileCache(t *testing.T, cacheDir, channelDir, certFile, keyFile string) (addr string, gets *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gets = &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/healthz":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(p, "/channel/"):
			http.ServeFile(w, r, filepath.Join(channelDir, filepath.FromSlash(strings.TrimPrefix(p, "/channel/"))))
		case strings.HasPrefix(p, "/artifacts/sha256/"):
			if r.Method == http.MethodGet {
				gets.Add(1)
			}
			http.ServeFile(w, r, filepath.Join(cacheDir, "sha256", filepath.Base(p)))
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.ServeTLS(ln, certFile, keyFile)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), gets
}

// Must-show 5: a compromised cache node (documents edited and re-signed
// with its own key, files dropped, artifacts replaced), served by the
// real daemon or the attacker's, cannot make any node install anything.
// The upstream is gone throughout: the cache is all there is.
func TestCompromisedCacheNodeCannotInstall(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLab(t, 3, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()
	chDir := lab.Cache.ChannelDirectory()
	crt, key := lab.CacheTLSFiles()
	hostile, hostileGets := hostileCache(t, lab.Cache.Dir, chDir, crt, key)
	routerSHA, routerSize := lab.artifactOf("3.4.2", "router")
	stored := filepath.Join(lab.Cache.Dir, "sha256", routerSHA)
	evilSHA, _ := lab.artifactOf("3.4.3", "router")
	evil := mustRead(t, lab.source("artifacts/router-3.4.3.tar.gz"))
	os.WriteFile(filepath.Join(lab.Cache.Dir, "sha256", evilSHA), evil, 0o644)
	manifests, _ := filepath.Glob(filepath.Join(chDir, "targets", "releases", "3.4.2", "*.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("the cache holds %d manifests of 3.4.2 (%v): it does not keep the repository byte for byte", len(manifests), manifests)
	}
	cached := manifests[0]
	ts := filepath.Join(chDir, "metadata", "timestamp.json")
	restore := saveFiles(t, cached, ts, stored)

	cases := []struct {
		name, cache string
		tamper      func()
		doc, check  string
	}{
		{"the cached manifest names the attacker's artifact (real daemon)", lab.cacheIP, func() {
			editJSON(t, cached, setArtifact("router", evilSHA, int64(len(evil))))
		}, "releases/3.4.2/manifest.json", "hash|length"},
		{"the same, by the attacker's daemon", hostile, func() {
			editJSON(t, cached, setArtifact("router", evilSHA, int64(len(evil))))
		}, "releases/3.4.2/manifest.json", "hash|length"},
		{"the timestamp re-signed with the cache node's own key", hostile, func() {
			p, _ := metadata.Timestamp().FromFile(ts)
			p.Signed.Version++
			tufpublish.SignWith(p, strangerKey(t))
			p.ToFile(ts, true)
		}, "metadata/timestamp.json", "unknown-key"},
		{"the stored artifact replaced, of another size", hostile, func() {
			// evil plus a byte can have the signed size by chance (the
			// fixture archives differ by a few bytes): one byte more than
			// the signed size cannot.
			os.WriteFile(stored, bytes.Repeat([]byte{0}, int(routerSize)+1), 0o644)
		}, "router-3.4.2.tar.gz", "length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer restore()
			tc.tamper()
			before := lab.nodeDigests()
			gets := hostileGets.Load()
			r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", tc.cache, "--yes")
			checked := false // an edit that changes the length is caught by it, else by the hash
			for _, c := range strings.Split(tc.check, "|") {
				checked = checked || strings.Contains(r.stderr, "("+c+" check)")
			}
			if r.code != 2 || !strings.Contains(r.stderr, tc.doc) || !checked {
				t.Fatalf("exit %d, want 2 naming %s and the %s check:\n%s", r.code, tc.doc, tc.check, r.stderr)
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
	// Files dropped: the cache can withhold, and says how to fill it.
	os.Remove(cached)
	before := lab.nodeDigests()
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", hostile, "--yes"); r.code != 2 || !strings.Contains(r.stderr, "does not hold release 3.4.2") {
		t.Fatalf("a dropped manifest: exit %d:\n%s", r.code, r.stderr)
	}
	restore()
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed", name)
		}
	}

	// The stored artifact replaced by bytes of the same size: nothing in the
	// metadata can tell, and each node's fetch refuses it by its signed
	// sha256 before installing.
	sameSize := make([]byte, routerSize)
	copy(sameSize, evil)
	os.WriteFile(stored, sameSize, 0o644)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", hostile, "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, routerSHA) {
		t.Fatalf("same-size replacement: exit %d, want 1 naming the sha256:\n%s", r.code, r.stderr)
	}
	for _, n := range lab.Nodes {
		if _, err := os.Stat(filepath.Join(n.Root, "code", "router", "releases", "3.4.2")); err == nil {
			t.Errorf("node %s installed router 3.4.2 from the compromised cache", n.Name)
		}
	}
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}

// An artifact unpacks to at most the size its signed target gives: the
// node refuses one that unpacks to more, and installs nothing of it.
func TestSignedUnpackedSizeBoundsUnpack(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	pub, err := lab.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	name := "artifacts/router-3.4.2.tar.gz"
	var small channel.Custom
	small.Sentinel.UnpackedSize = 100
	if err := pub.AddTarget(name, mustRead(t, lab.source(name)), &small); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "its signed unpacked size, 100 bytes") {
		t.Fatalf("exit %d, want 1 naming the signed limit:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(lab.core().Root, "code", "router", "releases", "3.4.2")); err == nil {
		t.Error("router 3.4.2 was installed beyond its signed unpacked size")
	}
}

// A resumed run acts on the plan verified when it began (the journal
// holds its digests): a timestamp that expired in between, which a new
// reader refuses, does not block it.
func TestResumeAfterTimestampExpired(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "3.4.2/nats/migrate")
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	run.cmd.Wait()
	if code := run.cmd.ProcessState.ExitCode(); code != 75 {
		t.Fatalf("interrupted upgrade: exit %d, want 75", code)
	}
	pub, err := lab.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	pub.Expiry.Timestamp = time.Hour
	pub.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	if err := pub.Timestamp(); err != nil {
		t.Fatal(err)
	}
	if r := lab.sentinel(nil, "channel", "verify", "--metadata-only", "--root", lab.TrustRoot, lab.upstream.URL); r.code != 2 || !strings.Contains(r.stderr+r.stdout, "(expired check)") {
		t.Fatalf("the channel as served now: exit %d, want 2, expired:\n%s%s", r.code, r.stdout, r.stderr)
	}
	lab.mustSucceed("upgrade", "--resume")
	lab.wantUpgraded("3.4.2")
}

// A cluster file still naming the old index.json, or naming no trust
// root, is bad input: exit 2 saying what to write, nothing changed.
func TestChannelSettingsRefused(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	base := lab.upstream.URL
	before := lab.nodeDigests()
	if err := lab.SetUpstream(base+"index.json", 0); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "write the repository's base URL instead (\""+base+"\"") {
		t.Fatalf("a channel naming index.json: exit %d:\n%s", r.code, r.stderr)
	}
	lab.TrustRoot = ""
	if err := lab.SetUpstream(base, 0); err != nil {
		t.Fatal(err)
	}
	r = lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "sets no trust.root") {
		t.Fatalf("no trust.root: exit %d:\n%s", r.code, r.stderr)
	}
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed", name)
		}
	}
}

// A patch catalog is a target like the manifests: one byte changed in it
// and `patch status` and `patch install` refuse it, naming the document
// and the check, and no node changes.
func TestTamperedPatchCatalogRefused(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 3, "3.4.2")
	undo := flipOneByte(t, lab.served("releases/3.4.2/patches.json"))
	before := lab.nodeDigests()
	for _, args := range [][]string{{"patch", "status"}, {"patch", "install", "--yes"}} {
		r := lab.sentinel(nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "channel document releases/3.4.2/patches.json refused (hash check)") {
			t.Errorf("sentinel %v with a tampered catalog: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed", name)
		}
	}
	undo()
	lab.mustSucceed("patch", "status")
}

// `patch status`, like preflight and --dry-run, verifies the channel but
// keeps no trusted metadata: only a run that may change something does.
func TestPatchStatusRecordsNoTrustedMetadata(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 3, "3.4.2")
	state := filepath.Join(lab.inventory().State(), "trust", "default")
	lab.mustSucceed("patch", "status")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("patch status wrote %s (%v)", state, err)
	}
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if _, err := os.Stat(filepath.Join(state, "timestamp.json")); err != nil {
		t.Errorf("patch install kept no trusted timestamp: %v", err)
	}
}

// Must-show 7: a cache daemon that holds the channel's root fetches by
// name, from its own upstream, only what its verified channel lists. A
// prefetch naming a release the channel does not offer, or an artifact
// (by URL and digest) that no listed release uses, is refused; the URL is
// never fetched and its digest never becomes downloadable from the daemon.
// Download-only through it then serves an upgrade with the upstream gone.
func TestDaemonFetchesByNameOnly(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	var attackerHits atomic.Int64
	attacker := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Write([]byte("payload"))
	})
	evilSHA := strings.Repeat("ab", 32)
	token := strings.TrimSpace(string(mustRead(t, lab.Cache.TokenFile)))
	hc, err := cache.Peer{Fingerprint: lab.Cache.TLSFingerprint}.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	client := &cache.Client{BaseURL: "https://" + lab.cacheIP, Token: token, HTTP: hc}
	oldStyle := []byte(`{"artifacts":[{"url":"` + attacker + `evil.tar.gz","sha256":"` + evilSHA + `","size":7}]}`)
	for _, tc := range []struct {
		req  cache.PrefetchRequest
		want string
	}{
		{cache.PrefetchRequest{Releases: []string{"9.9.9"}}, `release "9.9.9" is not offered by the channel`},
		{cache.PrefetchRequest{Releases: []string{attacker + "evil.tar.gz"}}, "is not offered by the channel"},
		{cache.PrefetchRequest{Releases: []string{evilSHA}}, "is not offered by the channel"},
	} {
		if _, err := client.Prefetch(context.Background(), tc.req, func(cache.PrefetchEvent) {}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("prefetch %+v: %v, want a refusal saying %q", tc.req, err, tc.want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+lab.cacheIP+"/prefetch", bytes.NewReader(oldStyle))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an old-style body naming a URL: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the daemon fetched the attacker's URL %d times", n)
	}
	resp, err := hc.Get(cache.ArtifactURL("https://"+lab.cacheIP, evilSHA))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("the attacker's digest is downloadable from the daemon")
	}
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()
	lab.mustSucceed("upgrade", "3.4.2", "--cache-ip", lab.cacheIP, "--yes")
	lab.wantUpgraded("3.4.2")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}

func serveFunc(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// Must-show 3, end to end: the snapshot and timestamp keys leak and sign
// a huge version, which the cluster trusts (it is validly signed); the
// publisher's next real publication is then a rollback. Once the
// publisher rotates those two keys in the root, the cluster accepts the
// real metadata again and upgrades.
func TestFastForwardRecoveryByRotation(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	pub, err := lab.Publisher() // the publisher's own versions, before the attack
	if err != nil {
		t.Fatal(err)
	}
	huge := int64(1) << 40
	meta := filepath.Join(lab.UpstreamDir, "metadata")
	snap, err := metadata.Snapshot().FromFile(filepath.Join(meta, fmt.Sprintf("%d.snapshot.json", pub.Versions()["snapshot"])))
	if err != nil {
		t.Fatal(err)
	}
	snap.Signed.Version = huge
	tufpublish.SignWith(snap, lab.keyOf("snapshot"))
	hugeSnap := filepath.Join(meta, fmt.Sprintf("%d.snapshot.json", huge))
	snap.ToFile(hugeSnap, true)
	lab.forgeTimestamp(func(ts *metadata.TimestampType) {
		ts.Version = huge
		ts.Meta["snapshot.json"] = metadata.MetaFile(huge)
	}, lab.keyOf("timestamp"))
	lab.trustNow()

	os.Remove(hugeSnap)
	if err := pub.Publish(); err != nil {
		t.Fatal(err)
	}
	lab.wantRefusedUnchanged("metadata/timestamp.json", "rollback")
	for _, role := range []string{"snapshot", "timestamp"} {
		if _, err := pub.Rotate(role, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	lab.wantUpgraded("3.4.2")
}
