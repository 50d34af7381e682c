package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/steps"
)

// awayWhile makes a node's agent unreachable while the flag file exists:
// the agent does not start, as when the node is down.
func awayWhile(t *testing.T, lab *testLab, node string) string {
	t.Helper()
	flag := filepath.Join(t.TempDir(), node+".away")
	if err := lab.SetPrefix(node, []string{"/bin/sh", "-c", `[ -e "$0" ] && exit 255; exec "$@"`, flag}); err != nil {
		t.Fatal(err)
	}
	return flag
}

// goAway takes a node away in the middle of a run: the flag file of
// awayWhile keeps a new agent from starting, and the agent the run already
// keeps there is killed, as a node that goes down takes its processes with
// it.
func goAway(t *testing.T, lab *testLab, node, flag string) {
	t.Helper()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n, _ := lab.Node(node)
	killAgents(t, n.Root)
}

// killAgents SIGKILLs the session agents running for the node rooted at
// root (`sentinel node session --root ROOT ...`).
func killAgents(t *testing.T, root string) {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(string(data), "\x00")
		if i := slices.Index(args, "node"); i >= 0 && i+3 < len(args) && args[i+1] == "session" && args[i+2] == "--root" && args[i+3] == root {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// A node that cannot be reached for a moment is tried again with backoff,
// and the run goes on once it is back.
func TestUnreachableNodeRetried(t *testing.T) {
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "dea-2")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "[dea-1] 3.4.2/dea_ng/fetch")
	goAway(t, lab, "dea-2", flag)
	waitForLine(t, run.stdout, "cannot reach node dea-2")
	os.Remove(flag)
	waitForLine(t, run.stdout, "Cluster upgraded to 3.4.2")
	if err := run.cmd.Wait(); err != nil {
		t.Fatalf("upgrade with a node away for a moment: %v", err)
	}
	n, _ := lab.Node("dea-2")
	everyComponentOn(t, n.Root, "3.4.2")
}

// A node that stays away stops the run after its retries, with exit code
// 75 naming it; once it is back, --resume finishes.
func TestUnreachableNodeStopsRunResumable(t *testing.T) {
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "router-3")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes", "--node-retries", "1")
	waitForLine(t, run.stdout, "[dea-1] 3.4.2/dea_ng/fetch")
	goAway(t, lab, "router-3", flag)
	run.cmd.Wait()
	if code := run.cmd.ProcessState.ExitCode(); code != 75 {
		t.Fatalf("node away for good: exit %d, want 75", code)
	}
	st := lab.sentinel(nil, "status")
	if st.code != 75 || !strings.Contains(st.stdout, "INTERRUPTED") || !strings.Contains(st.stdout, "router-3") {
		t.Errorf("status after losing router-3:\n%s", st.stdout)
	}
	os.Remove(flag)
	lab.mustSucceed("upgrade", "--resume")
	for _, n := range lab.Nodes {
		everyComponentOn(t, n.Root, "3.4.2")
	}
}

// recordedPatches is what node.json of the node records as installed.
func recordedPatches(t *testing.T, lab *testLab, node string) []string {
	t.Helper()
	n, _ := lab.Node(node)
	rec, err := steps.ReadRecord(n.Root)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Patches
}

// Planning a patch run for some nodes does not need the others to
// answer: with a DEA's transport broken, a patch for the router and
// controller roles installs on the core (warning about the DEA), and so
// does `--local`; a patch the DEA's role needs is refused naming it; with
// the core away, a run for a DEA is refused saying the core is needed.
func TestPatchRunWithAnotherNodeAway(t *testing.T) {
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.2"})
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "dea-2")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "patch", "install", "aok-endpoint-fix", "--yes")
	if r.code != 0 {
		t.Fatalf("a router patch with dea-2 away: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if out := r.stdout + r.stderr; !strings.Contains(out, "node dea-2 did not answer") {
		t.Errorf("nothing warned that dea-2 did not answer:\n%s", out)
	}
	if got := recordedPatches(t, lab, "core"); !slices.Contains(got, "aok-endpoint-fix") {
		t.Errorf("core records patches %v, want aok-endpoint-fix", got)
	}

	r = lab.sentinel([]string{"SENTINEL_NODE=core"}, "patch", "install", "logs-endpoint-fix", "--local", "--yes")
	if r.code != 0 {
		t.Fatalf("patch install --local on the core with dea-2 away: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got := recordedPatches(t, lab, "core"); !slices.Contains(got, "logs-endpoint-fix") {
		t.Errorf("core records patches %v, want logs-endpoint-fix", got)
	}

	// A patch for the DEAs concerns dea-2: refused, naming it, nothing changed.
	r = lab.sentinel(nil, "patch", "install", "dea-staging-timeout-fix", "--yes")
	if r.code == 0 || !strings.Contains(r.stderr, "node dea-2") || !strings.Contains(r.stderr, "--node") {
		t.Errorf("a DEA patch with dea-2 away: exit %d, want a refusal naming dea-2 and --node\n%s", r.code, r.stderr)
	}
	if got := recordedPatches(t, lab, "dea-1"); slices.Contains(got, "dea-staging-timeout-fix") {
		t.Errorf("the refused run patched dea-1: %v", got)
	}
	// Left out with --node, it goes on.
	lab.mustSucceed("patch", "install", "dea-staging-timeout-fix", "--node", "dea-1", "--yes")
	if got := recordedPatches(t, lab, "dea-1"); !slices.Contains(got, "dea-staging-timeout-fix") {
		t.Errorf("dea-1 records patches %v, want dea-staging-timeout-fix", got)
	}

	// The core's facts are needed by every patch run.
	os.Remove(flag)
	coreFlag := awayWhile(t, lab, "core")
	if err := os.WriteFile(coreFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = lab.sentinel(nil, "patch", "install", "dea-staging-timeout-fix", "--node", "dea-3", "--yes")
	if r.code == 0 || !strings.Contains(r.stderr, "node core (the core node) did not answer") || !strings.Contains(r.stderr, "patch catalog") {
		t.Errorf("a patch run with the core away: exit %d, want a refusal naming the core\n%s", r.code, r.stderr)
	}
	t.Logf("with the core away:\n%s", r.stderr)
}
