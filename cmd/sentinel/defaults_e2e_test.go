package main

// Defaults from the cluster file (issue 15): its cache section is where
// every command reads unless --cache-ip (or --no-cache) says otherwise,
// and `patch mark` works with the upstream stopped.

import (
	"slices"
	"strings"
	"testing"
)

// Must-show 6 (part): no --cache-ip anywhere. Download-only fills the
// cache node the cluster file names, and with the upstream gone preflight
// and the upgrade read from it; --no-cache goes to the upstream instead.
func TestCommandsUseClusterFileCache(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLab(t, 3, "3.4.1")
	lab.startCache(nil)
	if r := lab.mustSucceed("upgrade", "3.4.2", "--download-only"); !strings.Contains(r.stdout, "The cache holds everything for 3.4.2") {
		t.Errorf("download-only without --cache-ip:\n%s", r.stdout)
	}
	tw := lab.cutUpstream()
	lab.mustSucceed("preflight", "3.4.2")
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests though the cluster file names a cache node", n)
	}
	checkAllOn(t, lab, "3.4.2")

	if r := lab.sentinel(nil, "upgrade", "3.4.3", "--yes", "--no-cache"); r.code == 0 || tw.hits.Load() == 0 {
		t.Errorf("--no-cache did not go to the upstream: exit %d, %d requests\n%s", r.code, tw.hits.Load(), r.stderr)
	}
	if r := lab.sentinel(nil, "upgrade", "3.4.3", "--no-cache", "--cache-ip", lab.cacheIP); r.code != 2 || !strings.Contains(r.stderr, "contradict") {
		t.Errorf("--no-cache with --cache-ip: exit %d\n%s", r.code, r.stderr)
	}
}

// Must-show 6 (part): `patch mark` with the upstream stopped and no cache
// node: the nodes' records say where a patch is to forget it, and --node
// says where to record it; without --node it says what to do.
func TestPatchMarkWithUpstreamStopped(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if err := lab.upstream.Close(); err != nil {
		t.Fatal(err)
	}
	r := lab.mustSucceed("patch", "mark", "--not-installed", "aok-endpoint-fix")
	for _, n := range []string{"core", "router-3"} {
		if !strings.Contains(r.stdout, "["+n+"] node.json records patch aok-endpoint-fix as not installed") || slices.Contains(recordOf(t, lab.root(n)).Patches, "aok-endpoint-fix") {
			t.Errorf("mark --not-installed on %s:\n%s", n, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "unchecked against the catalog") {
		t.Errorf("no warning that the catalog was not read:\n%s", r.stderr)
	}
	lab.mustSucceed("patch", "mark", "--installed", "aok-endpoint-fix", "--node", "core")
	if !slices.Contains(recordOf(t, lab.root("core")).Patches, "aok-endpoint-fix") {
		t.Error("mark --installed --node core did not record the patch")
	}
	if r := lab.sentinel(nil, "patch", "mark", "--installed", "aok-endpoint-fix"); r.code != 2 || !strings.Contains(r.stderr, "name them with --node") {
		t.Errorf("mark --installed without --node, catalog unreadable: exit %d\n%s", r.code, r.stderr)
	}
}

// With the cluster file's cache node holding the patches, `patch mark`
// reads the catalog there: the upstream sees nothing, nothing is unchecked.
func TestPatchMarkFromClusterCache(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	lab.startCache(nil)
	lab.mustSucceed("patch", "install", "--download-only")
	tw := lab.cutUpstream()
	r := lab.mustSucceed("patch", "mark", "--installed", "logs-endpoint-fix")
	if strings.Contains(r.stderr, "unchecked") || tw.hits.Load() != 0 || !slices.Contains(recordOf(t, lab.root("core")).Patches, "logs-endpoint-fix") {
		t.Errorf("mark from the cache: %d upstream requests\n%s\n%s", tw.hits.Load(), r.stdout, r.stderr)
	}
}
