package main

import (
	"github.com/sentinel-paas/sentinel/lifecycle"

	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// The five-node lab: core (primary,controller,router), dea-1, dea-2,
// router-3, services-4 (mysql,redis,filesystem).
var labNodes = []string{"core", "dea-1", "dea-2", "router-3", "services-4"}

func newPatchLab(t *testing.T) *testLab {
	t.Helper()
	lab := newLab(t, 5, fixtures.PatchedRelease)
	if len(lab.Nodes) != len(labNodes) {
		t.Fatalf("lab has %d nodes", len(lab.Nodes))
	}
	return lab
}

func (l *testLab) root(node string) string {
	l.t.Helper()
	n, ok := l.Node(node)
	if !ok {
		l.t.Fatalf("no node %s", node)
	}
	return n.Root
}

// patchStatus runs `sentinel patch status --all --output json`.
func (l *testLab) patchStatus() *patches.Status {
	l.t.Helper()
	r := l.mustSucceed("patch", "status", "--all", "--output", "json")
	var st patches.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		l.t.Fatalf("patch status --output json: %v\n%s", err, r.stdout)
	}
	return &st
}

// where returns, per patch, the nodes it is installed on and to be installed on.
func where(st *patches.Status) map[string][2][]string {
	out := map[string][2][]string{}
	for _, p := range st.Patches {
		out[p.Name] = [2][]string{p.InstalledOn, p.ToBeInstalledOn}
	}
	return out
}

// level is where a component's current link points and what it runs.
func level(t *testing.T, root, c string) (current, running string) {
	t.Helper()
	link, err := os.Readlink(filepath.Join(root, "code", c, "current"))
	if err != nil {
		t.Fatal(err)
	}
	running, err = fixtures.RunningVersion(root, c)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(link, "releases/"), running
}

func wantLevel(t *testing.T, root, c, current, running string) {
	t.Helper()
	if cur, run := level(t, root, c); cur != current || run != running {
		t.Errorf("%s: %s: current %s, running %s; want current %s, running %s", root, c, cur, run, current, running)
	}
}

func recordOf(t *testing.T, root string) *steps.Record {
	t.Helper()
	rec, err := steps.ReadRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func digests(t *testing.T, lab *testLab) map[string]string {
	out := map[string]string{}
	for _, n := range labNodes {
		out[n] = nodeDigest(t, lab.root(n))
	}
	return out
}

// changedNodes lists the nodes whose digest differs from before.
func changedNodes(t *testing.T, lab *testLab, before map[string]string) []string {
	var out []string
	for _, n := range labNodes {
		if nodeDigest(t, lab.root(n)) != before[n] {
			out = append(out, n)
		}
	}
	return out
}

func eventCount(t *testing.T, root string) int {
	ev, err := fixtures.Events(root)
	if err != nil {
		t.Fatal(err)
	}
	return len(ev)
}

// eventsSince lists the fixture events of a node after the first n.
func eventsSince(t *testing.T, root string, n int) []string {
	ev, err := fixtures.Events(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ev[n:] {
		out = append(out, e.String())
	}
	return out
}

// Must-show 1: status lists the fixture patches with the nodes of their
// roles; installing aok-endpoint-fix changes the router and controller
// nodes only, restarts only the patched components there, and status then
// shows them under "installed on". Installing it again is a no-op.
func TestPatchStatusAndInstall(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	r := lab.mustSucceed("patch", "status")
	for _, want := range []string{
		"3 updates are available for 3.4.2.",
		"    aok-endpoint-fix: Correct aok endpoint redirecting to custom uri\n        patch id:           1\n",
		"        roles affected:     router, controller\n        installed on:       none\n        to be installed on: core, router-3\n",
		"    logs-endpoint-fix: Allow custom logs endpoint\n",
		"        roles affected:     controller\n        installed on:       none\n        to be installed on: core\n",
		"to be installed on: dea-1, dea-2\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("patch status lacks %q:\n%s", want, r.stdout)
		}
	}
	if got, want := where(lab.patchStatus()), map[string][2][]string{
		"aok-endpoint-fix":        {{}, {"core", "router-3"}},
		"logs-endpoint-fix":       {{}, {"core"}},
		"dea-staging-timeout-fix": {{}, {"dea-1", "dea-2"}},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("status: got %v, want %v", got, want)
	}

	before := digests(t, lab)
	coreEvents, routerEvents := eventCount(t, lab.root("core")), eventCount(t, lab.root("router-3"))
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if got := changedNodes(t, lab, before); !slices.Equal(got, []string{"core", "router-3"}) {
		t.Errorf("nodes changed: %v, want core and router-3 only", got)
	}
	wantLevel(t, lab.root("core"), "aok", "3.4.2-p1", "3.4.2-p1")
	wantLevel(t, lab.root("core"), "router", "3.4.2-p1", "3.4.2-p1")
	wantLevel(t, lab.root("core"), "cloud_controller_ng", "3.4.2", "3.4.2")
	wantLevel(t, lab.root("router-3"), "router", "3.4.2-p1", "3.4.2-p1")
	// Only the patched components restarted, each once.
	if got, want := eventsSince(t, lab.root("core"), coreEvents), []string{"stop aok 3.4.2", "start aok 3.4.2-p1", "stop router 3.4.2", "start router 3.4.2-p1"}; !slices.Equal(got, want) {
		t.Errorf("core events: %v, want %v", got, want)
	}
	if got, want := eventsSince(t, lab.root("router-3"), routerEvents), []string{"stop router 3.4.2", "start router 3.4.2-p1"}; !slices.Equal(got, want) {
		t.Errorf("router-3 events: %v, want %v", got, want)
	}
	for _, n := range []string{"core", "router-3"} {
		rec := recordOf(t, lab.root(n))
		if !slices.Equal(rec.Patches, []string{"aok-endpoint-fix"}) || rec.Components["router"] != "3.4.2-p1" || rec.Release != "3.4.2" {
			t.Errorf("%s node.json: %+v", n, rec)
		}
	}
	if got := where(lab.patchStatus())["aok-endpoint-fix"]; !reflect.DeepEqual(got, [2][]string{{"core", "router-3"}, {}}) {
		t.Errorf("after install, aok-endpoint-fix: installed on %v, to be installed on %v", got[0], got[1])
	}
	r = lab.mustSucceed("patch", "status")
	if !strings.Contains(r.stdout, "2 updates are available for 3.4.2.") || strings.Contains(r.stdout, "aok-endpoint-fix") {
		t.Errorf("status without --all lists installed patches or miscounts:\n%s", r.stdout)
	}
	if r := lab.mustSucceed("patch", "status", "--all"); !strings.Contains(r.stdout, "installed on:       core, router-3\n        to be installed on: none\n") {
		t.Errorf("status --all:\n%s", r.stdout)
	}

	// Again: a no-op that says so.
	before = digests(t, lab)
	r = lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if !strings.Contains(r.stdout, "aok-endpoint-fix already installed on every node it concerns (router-3, core)") {
		t.Errorf("second install:\n%s", r.stdout)
	}
	if got := changedNodes(t, lab, before); len(got) != 0 {
		t.Errorf("a second install changed %v", got)
	}
}

// Must-show 2: --node patches the named node only, --local the node it runs
// on only, and --no-restart switches the files in while the running
// process stays on the old version until it is restarted.
func TestPatchNodeLocalNoRestart(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	before := digests(t, lab)
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--node", "router-3", "--yes")
	if got := changedNodes(t, lab, before); !slices.Equal(got, []string{"router-3"}) {
		t.Errorf("--node router-3 changed %v", got)
	}
	wantLevel(t, lab.root("router-3"), "router", "3.4.2-p1", "3.4.2-p1")
	wantLevel(t, lab.root("core"), "router", "3.4.2", "3.4.2")
	if got := where(lab.patchStatus())["aok-endpoint-fix"]; !reflect.DeepEqual(got, [2][]string{{"router-3"}, {"core"}}) {
		t.Errorf("aok-endpoint-fix: %v", got)
	}

	// --local on dea-2 (as if run there), without restart.
	before = digests(t, lab)
	deaRoot := lab.root("dea-2")
	n := eventCount(t, deaRoot)
	r := lab.sentinel([]string{"SENTINEL_NODE=dea-2"}, "patch", "install", "--local", "--no-restart", "--yes")
	if r.code != 0 {
		t.Fatalf("--local: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "Nothing was restarted (--no-restart)") {
		t.Errorf("--no-restart output:\n%s", r.stdout)
	}
	if got := changedNodes(t, lab, before); !slices.Equal(got, []string{"dea-2"}) {
		t.Errorf("--local on dea-2 changed %v", got)
	}
	wantLevel(t, deaRoot, "dea_ng", "3.4.2-p1", "3.4.2") // new files, old process
	if got := eventsSince(t, deaRoot, n); len(got) != 0 {
		t.Errorf("--no-restart stopped or started something: %v", got)
	}
	if rec := recordOf(t, deaRoot); !slices.Equal(rec.Patches, []string{"dea-staging-timeout-fix"}) || rec.Components["dea_ng"] != "3.4.2-p1" {
		t.Errorf("dea-2 node.json: %+v", rec)
	}
	// The next restart of the component runs the patched version.
	restart := exec.Command(sentinelBin, "node", "restart", "--root", deaRoot, "--node", "dea-2")
	restart.Stdin = strings.NewReader(`{"restart":[{"component":"dea_ng","version":"3.4.2-p1","hooks":{}}]}`)
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restarting dea_ng: %v\n%s", err, out)
	}
	wantLevel(t, deaRoot, "dea_ng", "3.4.2-p1", "3.4.2-p1")
	if got, want := eventsSince(t, deaRoot, n), []string{"stop dea_ng 3.4.2", "start dea_ng 3.4.2-p1"}; !slices.Equal(got, want) {
		t.Errorf("restart events: %v, want %v", got, want)
	}

	// --local where the node cannot be told is refused, and --local with
	// --node contradicts itself.
	if r := lab.sentinel([]string{"SENTINEL_NODE=nowhere"}, "patch", "install", "--local", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "nowhere") {
		t.Errorf("unknown $SENTINEL_NODE: exit %d %s", r.code, r.stderr)
	}
	if r := lab.sentinel(nil, "patch", "install", "--local", "--node", "core", "--yes"); r.code != 2 {
		t.Errorf("--local --node: exit %d %s", r.code, r.stderr)
	}
}

// Must-show 3: a patch whose health check fails on a node is rolled back
// there; the nodes patched before keep it; exit 1 naming node and step.
func TestPatchHealthFailureRollsBack(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	core := lab.root("core")
	if err := fixtures.InjectFault(core, "router", "health", fixtures.FaultFail, "3.4.2-p1"); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "patch", "install", "aok-endpoint-fix", "--yes")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"node core", "aok-endpoint-fix/router/health", "injected health failure for router 3.4.2-p1", "rolled back", "sentinel patch install"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	// router-3 went first (routers before the core) and keeps the patch.
	wantLevel(t, lab.root("router-3"), "router", "3.4.2-p1", "3.4.2-p1")
	if rec := recordOf(t, lab.root("router-3")); !slices.Equal(rec.Patches, []string{"aok-endpoint-fix"}) {
		t.Errorf("router-3 lost its patch: %+v", rec)
	}
	// The core is back on 3.4.2, both components of the patch, running.
	wantLevel(t, core, "aok", "3.4.2", "3.4.2")
	wantLevel(t, core, "router", "3.4.2", "3.4.2")
	if rec := recordOf(t, core); len(rec.Patches) != 0 || rec.Components["aok"] != "3.4.2" || rec.Components["router"] != "3.4.2" {
		t.Errorf("core node.json after the rollback: %+v", rec)
	}
	if got := where(lab.patchStatus())["aok-endpoint-fix"]; !reflect.DeepEqual(got, [2][]string{{"router-3"}, {"core"}}) {
		t.Errorf("aok-endpoint-fix: %v", got)
	}
	st := lab.sentinel(nil, "status")
	if st.code != 1 {
		t.Errorf("status of a failed run: exit %d, want 1", st.code)
	}
	for _, want := range []string{"patch install of aok-endpoint-fix on 3.4.2, FAILED", "aok-endpoint-fix/router/health", "injected health failure"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("sentinel status lacks %q:\n%s", want, st.stdout)
		}
	}
	// Fixed: installing again finishes the job.
	fixtures.ClearFaults(core)
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	wantLevel(t, core, "router", "3.4.2-p1", "3.4.2-p1")
}

// consistent checks, on every node, that node.json records a patch exactly
// where its files are in place (only the first direction when partial: a
// run cut between switch and record leaves files not yet recorded).
func consistent(t *testing.T, lab *testLab, partial bool) {
	t.Helper()
	st := lab.patchStatus()
	for _, p := range st.Patches {
		for _, pr := range p.Problems {
			if partial && strings.Contains(pr.Problem, "does not record it") {
				continue
			}
			t.Errorf("patch %s on %s: %s", p.Name, pr.Node, pr.Problem)
		}
	}
}

// Must-show 4: SIGKILL after a journal record of `patch install` (every
// third), then --resume: the cluster ends as after an uninterrupted run, and
// no node records a patch whose files are not in place, or the reverse.
//
// Every third record, not every one: the upgrade's crash sweep takes every
// one, through the same executor. Those every-third records are split in
// two, each taken once: this test takes every ninth, from the first, and
// the last (-short: every thirtieth and the last), in `make test`;
// TestPatchCrashAnywhereResumesEveryThird takes the others, in `make
// test-e2e`. CI runs both: together they are the sweep as before the split.
func TestPatchCrashAnywhereResumes(t *testing.T) {
	t.Parallel()
	patchCrashAnywhere(t, func(k, total int) bool {
		if testing.Short() {
			return k%30 == 1 || k == total
		}
		return patchCrashSampled(k, total)
	})
}

// The rest of the patch crash sweep: the every-third records that
// TestPatchCrashAnywhereResumes does not take.
func TestPatchCrashAnywhereResumesEveryThird(t *testing.T) {
	longScenario(t)
	t.Parallel()
	patchCrashAnywhere(t, func(k, total int) bool { return k%3 == 1 && !patchCrashSampled(k, total) })
}

// patchCrashSampled: record k of total is in the sample of the patch crash
// sweep that `make test` takes.
func patchCrashSampled(k, total int) bool { return k%9 == 1 || k == total }

// patchCrashAnywhere runs the crash-anywhere check of `patch install` for
// each record k of a full run that take(k, total) selects.
func patchCrashAnywhere(t *testing.T, take func(k, total int) bool) {
	ref := newPatchLab(t)
	ref.mustSucceed("patch", "install", "--yes")
	want := map[string]map[string]string{}
	for _, n := range labNodes {
		want[n] = nodeState(t, ref.root(n))
	}
	rep, err := resume.Read(ref.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	total := len(rep.Records)
	if total < 50 {
		t.Fatalf("a full patch run wrote only %d journal records", total)
	}
	for k := 1; k <= total; k++ {
		if !take(k, total) {
			continue
		}
		t.Run(fmt.Sprintf("record-%03d", k), func(t *testing.T) {
			t.Parallel()
			lab := newPatchLab(t)
			lab.crashAt(k, "patch", "install", "--yes")
			consistent(t, lab, true)
			args := []string{"patch", "install", "--resume"}
			if k == 1 {
				args = []string{"patch", "install", "--yes"} // no run began
			}
			if r := lab.sentinel(nil, args...); r.code != 0 {
				t.Fatalf("resume after crash at record %d: exit %d\n%s\n%s", k, r.code, r.stdout, r.stderr)
			}
			for _, n := range labNodes {
				if got := nodeState(t, lab.root(n)); !reflect.DeepEqual(got, want[n]) {
					t.Errorf("node %s after crash at record %d and resume differs from an uninterrupted run:\n got %v\nwant %v", n, k, got, want[n])
				}
			}
			consistent(t, lab, false)
			if r := lab.sentinel(nil, "patch", "install", "--resume"); r.code != 0 || !strings.Contains(r.stdout, "Nothing to resume") {
				t.Errorf("second resume: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// A patch run is resumed by `patch install --resume`, and an upgrade left
// unfinished is not taken for one.
func TestPatchResumeRefusesAnUpgrade(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.crashAt(30, "upgrade", "3.4.2", "--yes")
	r := lab.sentinel(nil, "patch", "install", "--resume")
	if r.code != 2 || !strings.Contains(r.stderr, "sentinel upgrade --resume") {
		t.Errorf("patch install --resume on an upgrade: exit %d %s", r.code, r.stderr)
	}
	if r := lab.sentinel(nil, "patch", "install", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "did not finish") {
		t.Errorf("patch install beside an unfinished upgrade: exit %d %s", r.code, r.stderr)
	}
}

// Must-show 5: revert returns exactly the patch's components to the
// release's versions and forgets the patch; mark changes node.json's list
// of patches and nothing else.
func TestPatchRevertAndMark(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "logs-endpoint-fix", "--yes")
	core := lab.root("core")
	wantLevel(t, core, "cloud_controller_ng", "3.4.2-p1", "3.4.2-p1")

	before := digests(t, lab)
	n := eventCount(t, core)
	lab.mustSucceed("patch", "revert", "aok-endpoint-fix", "--yes")
	if got := changedNodes(t, lab, before); !slices.Equal(got, []string{"core", "router-3"}) {
		t.Errorf("revert changed %v", got)
	}
	wantLevel(t, core, "aok", "3.4.2", "3.4.2")
	wantLevel(t, core, "router", "3.4.2", "3.4.2")
	wantLevel(t, lab.root("router-3"), "router", "3.4.2", "3.4.2")
	wantLevel(t, core, "cloud_controller_ng", "3.4.2-p1", "3.4.2-p1") // the other patch stays
	if got, want := eventsSince(t, core, n), []string{"stop router 3.4.2-p1", "start router 3.4.2", "stop aok 3.4.2-p1", "start aok 3.4.2"}; !slices.Equal(got, want) {
		t.Errorf("core events of the revert: %v, want %v", got, want)
	}
	rec := recordOf(t, core)
	if !slices.Equal(rec.Patches, []string{"logs-endpoint-fix"}) || rec.Components["aok"] != "3.4.2" || rec.Components["cloud_controller_ng"] != "3.4.2-p1" {
		t.Errorf("core node.json after revert: %+v", rec)
	}
	if got := where(lab.patchStatus())["aok-endpoint-fix"]; !reflect.DeepEqual(got, [2][]string{{}, {"core", "router-3"}}) {
		t.Errorf("aok-endpoint-fix after revert: %v", got)
	}
	consistent(t, lab, false)

	// mark: only node.json's list of patches changes.
	code := treeDigest(t, filepath.Join(core, "code"))
	running := treeDigest(t, filepath.Join(core, "var", "run"))
	comps := recordOf(t, core).Components
	r := lab.mustSucceed("patch", "mark", "--not-installed", "logs-endpoint-fix", "--node", "core")
	if !strings.Contains(r.stdout, "[core] node.json records patch logs-endpoint-fix as not installed") {
		t.Errorf("mark output: %s", r.stdout)
	}
	rec = recordOf(t, core)
	if len(rec.Patches) != 0 || !reflect.DeepEqual(rec.Components, comps) {
		t.Errorf("mark --not-installed: node.json %+v", rec)
	}
	if treeDigest(t, filepath.Join(core, "code")) != code || treeDigest(t, filepath.Join(core, "var", "run")) != running {
		t.Error("mark changed files or processes")
	}
	// Status now says the files and the record disagree, and what to run.
	st := lab.patchStatus()
	for _, p := range st.Patches {
		if p.Name == "logs-endpoint-fix" && (len(p.Problems) != 1 || p.Problems[0].Node != "core" || !strings.Contains(p.Problems[0].Problem, "patch mark --installed logs-endpoint-fix")) {
			t.Errorf("status problems: %+v", p.Problems)
		}
	}
	lab.mustSucceed("patch", "mark", "--installed", "logs-endpoint-fix")
	if rec := recordOf(t, core); !slices.Equal(rec.Patches, []string{"logs-endpoint-fix"}) {
		t.Errorf("mark --installed: %+v", rec)
	}
	consistent(t, lab, false)
	if r := lab.sentinel(nil, "patch", "mark", "logs-endpoint-fix"); r.code != 2 {
		t.Errorf("mark without --installed/--not-installed: exit %d", r.code)
	}
	if r := lab.sentinel(nil, "patch", "mark", "--installed", "logs-endpoint-fix", "--node", "dea-1"); r.code != 2 || !strings.Contains(r.stderr, "affects roles controller") {
		t.Errorf("mark on a node of other roles: exit %d %s", r.code, r.stderr)
	}
}

// Must-show 6: a catalog with an unknown role, a missing artifact or an
// artifact whose sha256 does not match is refused, naming the patch and
// the field, and nothing is installed.
func TestPatchBadCatalogRefused(t *testing.T) {
	t.Parallel()
	routerArtifact := func(lab *testLab) string {
		return lab.served("artifacts/router-3.4.2-p1.tar.gz")
	}
	cases := []struct {
		name     string
		damage   func(t *testing.T, lab *testLab)
		code     int
		wantErrs []string
	}{
		{"unknown role", func(t *testing.T, lab *testLab) {
			p := lab.source(filepath.ToSlash(fixtures.PatchCatalogPath("3.4.2")))
			data, _ := os.ReadFile(p)
			data = []byte(strings.Replace(string(data), `"controller"`, `"kontroller"`, 1))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// The publisher's own mistake: signed as it is.
			lab.republish(filepath.ToSlash(fixtures.PatchCatalogPath("3.4.2")))
		}, 2, []string{"patches.json", `patches[0] (patch aok-endpoint-fix).roles[1]: unknown role "kontroller"`}},
		{"missing artifact", func(t *testing.T, lab *testLab) {
			if err := os.Remove(routerArtifact(lab)); err != nil {
				t.Fatal(err)
			}
		}, 1, []string{"patch aok-endpoint-fix, patches[0].components[1] (router 3.4.2-p1).artifact", "404", "nothing was installed"}},
		{"digest mismatch", func(t *testing.T, lab *testLab) {
			p := routerArtifact(lab)
			data, _ := os.ReadFile(p)
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 1, []string{"patch aok-endpoint-fix, patches[0].components[1] (router 3.4.2-p1).artifact", "sha256", "nothing was installed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			lab := newPatchLab(t)
			c.damage(t, lab)
			before := map[string]string{}
			for _, n := range labNodes {
				before[n] = treeDigest(t, filepath.Join(lab.root(n), "code")) + treeDigest(t, filepath.Join(lab.root(n), "etc")) + treeDigest(t, filepath.Join(lab.root(n), "var", "run"))
			}
			r := lab.sentinel(nil, "patch", "install", "--yes")
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, want := range c.wantErrs {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("error lacks %q:\n%s", want, r.stderr)
				}
			}
			for _, n := range labNodes {
				if after := treeDigest(t, filepath.Join(lab.root(n), "code")) + treeDigest(t, filepath.Join(lab.root(n), "etc")) + treeDigest(t, filepath.Join(lab.root(n), "var", "run")); after != before[n] {
					t.Errorf("node %s changed although the catalog was refused", n)
				}
			}
			if p, _ := os.ReadDir(filepath.Join(lab.inventory().State(), "journal")); len(p) != 0 {
				t.Errorf("a run was started: %v", p)
			}
		})
	}
}

// An upgrade to the next release supersedes the patches: node.json forgets
// them and status shows the new release's (none in the fixtures).
func TestPatchesSupersededByUpgrade(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newPatchLab(t)
	lab.mustSucceed("patch", "install", "--yes")
	lab.mustSucceed("upgrade", "3.4.3", "--yes")
	for _, n := range labNodes {
		rec := recordOf(t, lab.root(n))
		if rec.Release != "3.4.3" || len(rec.Patches) != 0 {
			t.Errorf("%s node.json after the upgrade: %+v", n, rec)
		}
		for c, v := range rec.Components {
			if v != "3.4.3" {
				t.Errorf("%s: %s recorded at %s", n, c, v)
			}
		}
	}
	if r := lab.mustSucceed("patch", "status"); !strings.Contains(r.stdout, "No updates are available for 3.4.3.") {
		t.Errorf("status after the upgrade:\n%s", r.stdout)
	}
	if st := lab.patchStatus(); st.Release != "3.4.3" || len(st.Patches) != 0 {
		t.Errorf("status JSON after the upgrade: %+v", st)
	}
}

// A patch that restarts dea_ng retires each DEA first and unretires it
// after, one DEA at a time.
func TestPatchDEARetiredOneAtATime(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	lab.mustSucceed("patch", "install", "dea-staging-timeout-fix", "--yes")
	r := lab.mustSucceed("status", "--output", "json")
	var st lifecycle.StatusReport
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range st.Run.Steps {
		if s.State != "done" {
			t.Errorf("step %s/%s: %s", s.Node, s.Step, s.State)
		}
		if s.Step == "retire" || s.Step == "unretire" || strings.HasSuffix(s.Step, "/stop") || strings.HasSuffix(s.Step, "/health") {
			order = append(order, s.Node+" "+s.Step)
		}
	}
	want := []string{
		"dea-1 retire", "dea-1 dea-staging-timeout-fix/dea_ng/stop", "dea-1 dea-staging-timeout-fix/dea_ng/health", "dea-1 unretire",
		"dea-2 retire", "dea-2 dea-staging-timeout-fix/dea_ng/stop", "dea-2 dea-staging-timeout-fix/dea_ng/health", "dea-2 unretire",
	}
	if !slices.Equal(order, want) {
		t.Errorf("steps: %v\nwant %v", order, want)
	}
	for i := 1; i < len(st.Run.Steps); i++ {
		a, b := st.Run.Steps[i-1], st.Run.Steps[i]
		if a.Ended != nil && b.Started != nil && b.Started.Before(*a.Ended) {
			t.Errorf("step %s/%s began before %s/%s ended", b.Node, b.Step, a.Node, a.Step)
		}
	}
}

// --download-only --cache-ip fills the cache node with the patches; the
// install then runs from the cache with the upstream gone.
func TestPatchFromCacheWithoutUpstream(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	lab.startCache(nil)
	if r := lab.sentinel(nil, "patch", "install", "--cache-ip", lab.cacheIP, "--yes"); r.code != 2 || !strings.Contains(r.stderr, "patch install --download-only --cache-ip") {
		t.Errorf("install from an empty cache: exit %d\n%s", r.code, r.stderr)
	}
	before := digests(t, lab)
	r := lab.mustSucceed("patch", "install", "--download-only", "--cache-ip", lab.cacheIP)
	if !strings.Contains(r.stdout, "The cache holds the patches of 3.4.2: 4 fetched now") {
		t.Errorf("download-only:\n%s", r.stdout)
	}
	if got := changedNodes(t, lab, before); len(got) != 0 {
		t.Errorf("download-only changed %v", got)
	}
	tw := lab.cutUpstream()
	cacheHost := strings.Split(lab.cacheIP, ":")[0]
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--cache-ip", cacheHost, "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests during the install from the cache", n)
	}
	wantLevel(t, lab.root("router-3"), "router", "3.4.2-p1", "3.4.2-p1")
	wantLevel(t, lab.root("core"), "aok", "3.4.2-p1", "3.4.2-p1")
	if r := lab.mustSucceed("patch", "status", "--cache-ip", cacheHost); !strings.Contains(r.stdout, "2 updates are available for 3.4.2.") {
		t.Errorf("status from the cache:\n%s", r.stdout)
	}
}

// SIGKILL during `patch revert`, then --resume: the same end as an
// uninterrupted revert, record and files in agreement.
func TestPatchRevertCrashResumes(t *testing.T) {
	t.Parallel()
	ref := newPatchLab(t)
	ref.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	ref.mustSucceed("patch", "revert", "--yes")
	want := map[string]map[string]string{}
	for _, n := range labNodes {
		want[n] = nodeState(t, ref.root(n))
	}
	rep, err := resume.Read(ref.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	total := len(rep.Records)
	for k := 2; k <= total; k++ {
		if (k%3 != 2 || testing.Short() && k%5 != 2) && k != total {
			continue
		}
		t.Run(fmt.Sprintf("record-%03d", k), func(t *testing.T) {
			t.Parallel()
			lab := newPatchLab(t)
			lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
			lab.crashAt(k, "patch", "revert", "--yes")
			if r := lab.sentinel(nil, "patch", "revert", "--resume"); r.code != 0 {
				t.Fatalf("resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			for _, n := range labNodes {
				if got := nodeState(t, lab.root(n)); !reflect.DeepEqual(got, want[n]) {
					t.Errorf("node %s differs from an uninterrupted revert:\n got %v\nwant %v", n, got, want[n])
				}
			}
			consistent(t, lab, false)
		})
	}
}

// One offline maintenance window for a release and its patches: the cache
// node filled ahead with `upgrade --download-only` holds the target
// release's patch catalog and artifacts too, so with the upstream gone the
// upgrade, `patch status` and `patch install` all run from the cache.
func TestUpgradeThenPatchesFromCacheWithoutUpstream(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLab(t, 5, "3.4.1")
	lab.startCache(nil)
	lab.mustSucceed("upgrade", fixtures.PatchedRelease, "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()
	cacheHost := strings.Split(lab.cacheIP, ":")[0]
	lab.mustSucceed("upgrade", fixtures.PatchedRelease, "--cache-ip", cacheHost, "--yes")
	if r := lab.mustSucceed("patch", "status", "--cache-ip", cacheHost); !strings.Contains(r.stdout, "3 updates are available for "+fixtures.PatchedRelease+".") {
		t.Errorf("status from the cache after the upgrade:\n%s", r.stdout)
	}
	lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--cache-ip", cacheHost, "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests during the maintenance window", n)
	}
	wantLevel(t, lab.root("core"), "aok", "3.4.2-p1", "3.4.2-p1")
}

// A node still on another release (say, one the last upgrade skipped) is
// left out of a patch run, which goes on for the others instead of being
// refused by preflight.
func TestPatchSkipsNodeOnAnotherRelease(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	router := lab.root("router-3")
	rec, err := steps.ReadRecord(router)
	if err != nil {
		t.Fatal(err)
	}
	rec.Release = "3.4.1"
	if err := steps.WriteRecord(router, rec); err != nil {
		t.Fatal(err)
	}
	before := digests(t, lab)
	r := lab.mustSucceed("patch", "install", "aok-endpoint-fix", "--yes")
	if got := changedNodes(t, lab, before); !slices.Equal(got, []string{"core"}) {
		t.Errorf("changed %v, want only the core (router-3 is on 3.4.1)\n%s", got, r.stdout)
	}
}
