package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// download-only fills the cache node while the cluster runs and changes no
// node; then, with the upstream gone, the upgrade runs from the cache alone.
func TestDownloadOnlyThenUpgradeWithoutUpstream(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 3, "3.4.1")
	lab.startCache(nil)
	before := map[string]string{}
	for _, n := range lab.Nodes {
		before[n.Name] = nodeDigest(t, n.Root)
	}

	out := lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if !strings.Contains(out.stdout, "The cache holds everything for 3.4.2") {
		t.Errorf("download-only output:\n%s", out.stdout)
	}
	for _, n := range lab.Nodes {
		if nodeDigest(t, n.Root) != before[n.Name] {
			t.Errorf("download-only changed node %s", n.Name)
		}
	}
	ls := lab.mustSucceed("cache", "ls", "--dir", lab.Cache.Dir).stdout
	if !strings.Contains(ls, "3.4.2 router") || !strings.Contains(ls, "3.4.2 dea_ng") {
		t.Errorf("cache ls does not show the release's artifacts:\n%s", ls)
	}
	// Idempotent: a second fill fetches nothing.
	again := lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if !strings.Contains(again.stdout, "0 fetched now") {
		t.Errorf("second download-only fetched again:\n%s", again.stdout)
	}

	tw := lab.cutUpstream()
	cacheHost := strings.Split(lab.cacheIP, ":")[0] // the port comes from the cluster file
	lab.mustSucceed("upgrade", "3.4.2", "--cache-ip", cacheHost, "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests during the upgrade from the cache", n)
	}
	for _, n := range lab.Nodes {
		for _, c := range fixtures.Components() {
			v, _ := fixtures.RunningVersion(n.Root, c.Name)
			if _, err := os.Stat(n.Root + "/code/" + c.Name); err == nil && v != "3.4.2" {
				t.Errorf("node %s: %s runs %q, want 3.4.2", n.Name, c.Name, v)
			}
		}
	}
}

// --skip-download refuses before any change when a node lacks an artifact,
// and runs from the node caches alone when they hold everything.
func TestSkipDownload(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	before := nodeDigest(t, core.Root)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--skip-download", "--yes")
	if r.code != 3 || !strings.Contains(r.stderr, "node core lacks 13 artifact(s)") {
		t.Fatalf("skip-download with empty caches: exit %d\n%s", r.code, r.stderr)
	}
	if nodeDigest(t, core.Root) != before {
		t.Error("a refused --skip-download changed the node")
	}
	// A failed run leaves the fetched artifacts in the node cache.
	fixtures.InjectFault(core.Root, "sentinel", "health", "fail", "3.4.2")
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes"); r.code != 1 {
		t.Fatalf("upgrade with a failing health: exit %d", r.code)
	}
	fixtures.ClearFaults(core.Root)
	// A damaged file in the node cache is caught before any change too.
	var router string
	for _, c := range lab.manifest("3.4.2").Components {
		if c.Name == "router" {
			router = c.Artifact.SHA256
		}
	}
	cached := filepath.Join(core.Root, "cache", "sha256", router)
	good, _ := os.ReadFile(cached)
	bad := append([]byte(nil), good...)
	bad[10] ^= 0xff
	os.WriteFile(cached, bad, 0o644)
	before = nodeDigest(t, core.Root)
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--skip-download", "--yes"); r.code != 3 || !strings.Contains(r.stderr, "1 damaged artifact(s) in its cache: router 3.4.2") {
		t.Fatalf("skip-download with a damaged cache file: exit %d\n%s", r.code, r.stderr)
	}
	if nodeDigest(t, core.Root) != before {
		t.Error("a refused --skip-download changed the node")
	}
	os.WriteFile(cached, good, 0o644)
	downloads := lab.upstream.ArtifactRequests()
	lab.mustSucceed("upgrade", "3.4.2", "--skip-download", "--yes")
	everyComponentOn(t, core.Root, "3.4.2")
	if n := lab.upstream.ArtifactRequests() - downloads; n != 0 {
		t.Errorf("--skip-download downloaded %d artifacts", n)
	}
}

// Asking the cache for what it does not hold says how to fill it.
func TestCacheMissingReleaseSaysHowToFill(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--cache-ip", lab.cacheIP, "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "does not hold any channel documents") || !strings.Contains(r.stderr, "--download-only") {
		t.Errorf("empty cache: exit %d\n%s", r.code, r.stderr)
	}
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	r = lab.sentinel(nil, "upgrade", "3.4.3", "--cache-ip", lab.cacheIP, "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "does not hold release 3.4.3") || !strings.Contains(r.stderr, "sentinel upgrade 3.4.3 --download-only") {
		t.Errorf("release not in the cache: exit %d\n%s", r.code, r.stderr)
	}
}

// A byte flipped in the cache node's store: `sentinel cache verify` reports
// and quarantines it (exit 1), the daemon no longer serves it, and filling
// the cache again restores it.
func TestCacheVerifyQuarantines(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	var router string
	for _, c := range lab.manifest("3.4.2").Components {
		if c.Name == "router" {
			router = c.Artifact.SHA256
		}
	}
	stored := filepath.Join(lab.Cache.Dir, "sha256", router)
	data, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 0x01
	if err := os.WriteFile(stored, data, 0o644); err != nil {
		t.Fatal(err)
	}

	r := lab.sentinel(nil, "cache", "verify", "--dir", lab.Cache.Dir)
	if r.code != 1 || !strings.Contains(r.stdout, "BAD "+router) || !strings.Contains(r.stdout, "1 bad") {
		t.Fatalf("cache verify: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(stored); !os.IsNotExist(err) {
		t.Errorf("the damaged artifact is still in place: %v", err)
	}
	pinned, err := cache.Peer{Fingerprint: lab.Cache.TLSFingerprint}.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	// The daemon has an upstream (prefetch needs one), so it pulls the
	// artifact through again: it serves the real bytes or nothing, never
	// the damaged ones.
	resp, err := pinned.Get("https://" + lab.cacheIP + "/artifacts/sha256/" + router)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(body)
	pulled := resp.StatusCode == http.StatusOK
	if pulled && hex.EncodeToString(sum[:]) != router {
		t.Errorf("the daemon serves the damaged bytes of a quarantined artifact")
	} else if !pulled && resp.StatusCode != http.StatusNotFound {
		t.Errorf("the daemon answers %d for a quarantined artifact", resp.StatusCode)
	}
	out := lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if want := map[bool]string{true: "0 fetched now", false: "1 fetched now"}[pulled]; !strings.Contains(out.stdout, want) {
		t.Errorf("refill after the quarantine (pulled through: %v) does not say %q:\n%s", pulled, want, out.stdout)
	}
	lab.mustSucceed("cache", "verify", "--dir", lab.Cache.Dir)
}

// The daemon's configuration file names the cache_dir, as in the product;
// a flag given on the command line wins over it.
func TestCacheConfigFile(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	conf := filepath.Join(t.TempDir(), "config.yml")
	os.WriteFile(conf, []byte("cache_dir: "+lab.Cache.Dir+"\nlisten: 127.0.0.1:0\n"), 0o644)
	// The 13 artifacts of 3.4.2 and the 4 of its patches, each named.
	if out := lab.mustSucceed("cache", "ls", "--config", conf).stdout; !strings.Contains(out, "17 artifacts") ||
		!strings.Contains(out, "3.4.2 patch aok-endpoint-fix router") || strings.Contains(out, "no release in the cache's channel") {
		t.Errorf("cache ls --config:\n%s", out)
	}
	if out := lab.mustSucceed("cache", "ls", "--config", conf, "--dir", t.TempDir()).stdout; !strings.Contains(out, "0 artifacts") {
		t.Errorf("--dir did not win over the file:\n%s", out)
	}
	os.WriteFile(conf, []byte("cache_dir: /x\ncolour: red\n"), 0o644)
	if r := lab.sentinel(nil, "cache", "ls", "--config", conf); r.code != 2 || !strings.Contains(r.stderr, "colour") {
		t.Errorf("unknown setting: exit %d %s", r.code, r.stderr)
	}
}

// A run begun against the upstream can finish from the cache node once the
// upstream is gone: --resume --cache-ip changes where the artifacts left
// to fetch come from.
func TestResumeSwitchesToCache(t *testing.T) {
	longScenario(t)
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)

	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	// --no-cache: the cluster file names the cache node now, which would
	// otherwise be the run's source from the start.
	lab.crashAt(9, "upgrade", "3.4.2", "--yes", "--no-cache") // four artifacts fetched from the upstream
	tw := lab.cutUpstream()
	if r := lab.sentinel(nil, "upgrade", "--resume"); r.code == 0 {
		t.Fatal("resume without upstream and without --cache-ip succeeded")
	}
	before := tw.hits.Load()
	r := lab.sentinel(nil, "upgrade", "--resume", "--cache-ip", lab.cacheIP)
	if r.code != 0 || !strings.Contains(r.stderr, "artifacts from https://"+lab.cacheIP) {
		t.Fatalf("resume --cache-ip: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got := nodeState(t, lab.core().Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after switching to the cache:\n got %v\nwant %v", got, want)
	}
	if n := tw.hits.Load() - before; n != 0 {
		t.Errorf("the upstream saw %d requests during the resume from the cache", n)
	}
}

// A run begun from the cache node can finish from the upstream once the
// cache node is gone: a resume that would go on from the dead cache node
// says what to give, and --resume --no-cache takes what is left to fetch
// from the upstream.
func TestResumeLeavesADeadCacheNode(t *testing.T) {
	longScenario(t)
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)

	lab := killedReadingCacheNode(t, 9) // four artifacts from it
	r := lab.sentinel(nil, "upgrade", "--resume")
	if r.code == 0 || !strings.Contains(r.stderr, lab.cacheIP) || !strings.Contains(r.stderr, "--no-cache") {
		t.Fatalf("resume with its cache node gone: exit %d, want an error naming %s and --no-cache\n%s\n%s", r.code, lab.cacheIP, r.stdout, r.stderr)
	}
	r = lab.sentinel(nil, "upgrade", "--resume", "--no-cache")
	if r.code != 0 || strings.Contains(r.stderr, lab.cacheIP) {
		t.Fatalf("resume --no-cache: exit %d, want 0 and no word of the cache node %s\n%s\n%s", r.code, lab.cacheIP, r.stdout, r.stderr)
	}
	if got := nodeState(t, lab.core().Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after finishing from the upstream:\n got %v\nwant %v", got, want)
	}

	// Killed once every fetch is done, with the cache node and the
	// upstream both gone: nothing is left to fetch, so --no-cache reads no
	// source and the resume finishes from the node caches.
	started := stepStarts(t, ref.journalPath())
	again := killedReadingCacheNode(t, firstStartAfterFetches(t, started))
	tw := again.cutUpstream()
	if r := again.sentinel(nil, "upgrade", "--resume", "--no-cache"); r.code != 0 || tw.hits.Load() != 0 {
		t.Fatalf("resume --no-cache with every fetch done: exit %d, %d requests to the upstream\n%s\n%s", r.code, tw.hits.Load(), r.stdout, r.stderr)
	}
	if got := nodeState(t, again.core().Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after finishing from the node caches:\n got %v\nwant %v", got, want)
	}

	// Every fetch done, but a component found put back behind the run's
	// back, its artifact gone: the recheck resets its fetch, which
	// --no-cache takes from the upstream too.
	first := ref.manifest("3.4.2").Components[0].Name
	health := slices.Index(started, "3.4.2/"+first+"/health")
	if health < 0 {
		t.Fatalf("the reference run started no 3.4.2/%s/health: %q", first, started)
	}
	reset := killedReadingCacheNode(t, health+1)
	link := filepath.Join(reset.core().Root, "code", first, "current")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/3.4.1", link); err != nil {
		t.Fatal(err)
	}
	// As a node restored from a snapshot would, it lost the artifact too.
	sha, _ := reset.artifactOf("3.4.2", first)
	if err := os.Remove((&cache.Store{Dir: steps.Layout{Root: reset.core().Root}.CacheDir()}).Path(sha)); err != nil {
		t.Fatal(err)
	}
	if r := reset.sentinel(nil, "upgrade", "--resume", "--no-cache"); r.code != 0 || !strings.Contains(r.stderr, "3.4.2/"+first+"/fetch run again") {
		t.Fatalf("resume --no-cache redoing %s's fetch: exit %d\n%s\n%s", first, r.code, r.stdout, r.stderr)
	}
	if got := nodeState(t, reset.core().Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after redoing %s from the upstream:\n got %v\nwant %v", first, got, want)
	}

	// Fetches left, the cache node and the upstream gone: the kept
	// metadata can be read but holds no artifact, so the resume says what
	// to bring back instead of fetching from the dead cache node.
	gone := killedReadingCacheNode(t, 9)
	gone.cutUpstream()
	if r := gone.sentinel(nil, "upgrade", "--resume", "--no-cache"); r.code == 0 || !strings.Contains(r.stderr, "bring the cache node back") {
		t.Errorf("resume --no-cache with fetches left and no source: exit %d, want an error saying to bring the cache node back\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// killedReadingCacheNode is a one-node lab whose upgrade to 3.4.2, read
// from the cluster file's cache node (filled beforehand), was SIGKILLed
// after journal record k, and whose cache node is then gone.
func killedReadingCacheNode(t *testing.T, k int) *testLab {
	t.Helper()
	lab := newLab(t, 1, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	lab.crashAt(k, "upgrade", "3.4.2", "--yes")
	lab.stopCache()
	return lab
}

// stepStarts are the steps a journal's records start, by record (record
// k is [k-1]; "" for a record that starts none).
func stepStarts(t *testing.T, journal string) []string {
	t.Helper()
	rep, err := resume.Read(journal)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rep.Records))
	for i, rec := range rep.Records {
		var ref struct{ Step string }
		if rec.Type == "step-start" && json.Unmarshal(rec.Data, &ref) == nil {
			out[i] = ref.Step
		}
	}
	return out
}

// firstStartAfterFetches is the record that starts the first step after
// the run's last fetch: a crash after it leaves every fetch done.
func firstStartAfterFetches(t *testing.T, started []string) int {
	t.Helper()
	k, fetched := 0, false
	for i, step := range started {
		switch {
		case strings.HasSuffix(step, "/fetch"):
			k, fetched = 0, true
		case step != "" && fetched && k == 0:
			k = i + 1
		}
	}
	if k == 0 {
		t.Fatalf("no step starts after the last fetch: %q", started)
	}
	return k
}
