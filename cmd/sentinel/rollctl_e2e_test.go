package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// recordedRelease is the release node.json records on the named node.
func recordedRelease(t *testing.T, lab *testLab, node string) string {
	t.Helper()
	n, _ := lab.Node(node)
	rec, err := steps.ReadRecord(n.Root)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Release
}

// touchedNodes lists the nodes the journal of the last run shows a step
// started on.
func touchedNodes(t *testing.T, lab *testLab) map[string]bool {
	t.Helper()
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rep.Records {
		if r.Type == "step-start" {
			var ref struct{ Node string }
			if err := json.Unmarshal(r.Data, &ref); err != nil {
				t.Fatal(err)
			}
			out[ref.Node] = true
		}
	}
	return out
}

// Bad --canaries, --watch-time, --max-in-flight, --max-failures,
// --exclude-node and --reason, and a bad update: block in the cluster
// file: exit 2, and no run is started.
func TestUpdateFlagsRefusedBeforeAnything(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	for _, args := range [][]string{
		{"upgrade", "3.4.2", "--yes", "--canaries", "-1"},
		{"upgrade", "3.4.2", "--yes", "--watch-time", "5"},
		{"upgrade", "3.4.2", "--yes", "--max-in-flight", "0"},
		{"upgrade", "3.4.2", "--yes", "--max-in-flight", "120%"},
		{"upgrade", "3.4.2", "--yes", "--max-failures", "one"},
		{"upgrade", "3.4.2", "--yes", "--exclude-node", "core", "--reason", "x"},
		{"upgrade", "--resume", "--exclude-node", "core"},
		{"upgrade", "--resume", "--canaries", "1"},
	} {
		r := lab.sentinel(nil, args...)
		if r.code != 2 {
			t.Errorf("sentinel %v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	// --dry-run shows them, and the cluster file's block is read.
	r := lab.mustSucceed("upgrade", "3.4.2", "--dry-run", "--watch-time", "5s", "--max-failures", "1")
	if !strings.Contains(r.stdout, "each node watched for 5s before its commit") || !strings.Contains(r.stdout, "3.4.2/watch") {
		t.Errorf("--dry-run does not show the watch:\n%s", r.stdout)
	}
	data := mustRead(t, lab.ClusterFile)
	if err := os.WriteFile(lab.ClusterFile, append(data, []byte("update:\n  max_failures: 10 percent\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	r = lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "update.max_failures") {
		t.Errorf("a bad update: block: exit %d, want 2 naming update.max_failures\n%s", r.code, r.stderr)
	}
	if p, _ := (rollout.Runs{Dir: lab.inventory().State()}).LatestPath(); p != "" {
		t.Errorf("a refused run left a journal %s", p)
	}
	if got := recordedRelease(t, lab, "core"); got != "3.4.1" {
		t.Errorf("core on %s after refused runs", got)
	}
}

// A run for some nodes (--node) does not need the others to answer: one
// that is away is reported by preflight, and the run goes on.
func TestNodeRunWithAnotherNodeAway(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "dea-2")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--node", "dea-1")
	if r.code != 0 {
		t.Fatalf("upgrade --node dea-1 with dea-2 away: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout+r.stderr, "dea-2") {
		t.Errorf("nothing said that dea-2 did not answer:\n%s\n%s", r.stdout, r.stderr)
	}
	if got := recordedRelease(t, lab, "dea-1"); got != "3.4.2" {
		t.Errorf("dea-1 on %s, want 3.4.2", got)
	}
	// The whole cluster does need every node.
	r = lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code == 0 || !strings.Contains(r.stderr, "dea-2") {
		t.Errorf("a whole-cluster run with dea-2 away: exit %d, want a refusal naming dea-2\n%s", r.code, r.stderr)
	}
}

// --canaries 1 --watch-time 5s: the first DEA goes alone; its dea_ng turns
// unhealthy 2 s after it started, which the watch catches (its health step
// passed); the canary is rolled back and no other DEA is touched.
func TestCanaryCaughtDuringWatch(t *testing.T) {
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	dea1, _ := lab.Node("dea-1")
	if err := fixtures.InjectFault(dea1.Root, "dea_ng", fixtures.HookHealth, fixtures.FaultFailAfter(2), "3.4.2"); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--canaries", "1", "--watch-time", "5s")
	if r.code != 1 {
		t.Fatalf("canary failing during its watch: exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"node dea-1: step 3.4.2/watch failed", "dea_ng 3.4.2 turned unhealthy", "5s watch", "rolled back"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, r.stderr)
		}
	}
	// The health step itself passed: it is the watch that caught it.
	run, _, err := rollout.Runs{Dir: lab.inventory().State()}.Latest()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range run.View("dea-1") {
		if v.ID == "3.4.2/dea_ng/health" && v.State != rollout.StateDone {
			t.Errorf("dea_ng's health step: %s, want done (the fault comes 2 s after the start)", v.State)
		}
	}
	everyComponentOn(t, dea1.Root, "3.4.1")
	touched := touchedNodes(t, lab)
	for _, n := range []string{"dea-2", "dea-3", "services", "core"} {
		if touched[n] {
			t.Errorf("%s was touched after the canary failed", n)
		}
		if got := recordedRelease(t, lab, n); got != "3.4.1" {
			t.Errorf("%s on %s", n, got)
		}
	}
}

// --max-failures 1: a DEA that fails is rolled back, the other DEAs and the
// core finish; exit 5 and the summary name it; status shows it behind;
// once fixed, a new run catches it up and touches nothing else.
func TestFailureBudgetFinishesTheOthers(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	dea2, _ := lab.Node("dea-2")
	if err := fixtures.InjectFault(dea2.Root, "dea_ng", fixtures.HookHealth, fixtures.FaultFail, "3.4.2"); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--max-failures", "1")
	if r.code != exitFailedWithinBudget {
		t.Fatalf("one DEA failing within the budget: exit %d, want %d\n%s\n%s", r.code, exitFailedWithinBudget, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "done without 1 node") || !strings.Contains(r.stderr, "node dea-2: step 3.4.2/dea_ng/health failed") {
		t.Errorf("the summary does not name dea-2:\n%s", r.stderr)
	}
	for _, n := range []string{"dea-1", "dea-3", "services", "core"} {
		if got := recordedRelease(t, lab, n); got != "3.4.2" {
			t.Errorf("%s on %s, want 3.4.2", n, got)
		}
	}
	everyComponentOn(t, dea2.Root, "3.4.1")
	st := lab.sentinel(nil, "status")
	if st.code != 5 || !strings.Contains(st.stdout, "PARTIAL") || !strings.Contains(st.stdout, "failed and rolled back: dea-2") || !strings.Contains(st.stdout, "behind: failed in run") {
		t.Errorf("status after the partial run: exit %d, want 5\n%s", st.code, st.stdout)
	}
	fixtures.ClearFaults(dea2.Root)
	r = lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(r.stdout+r.stderr, "this run catches it up") {
		t.Errorf("preflight did not say dea-2 is behind and caught up:\n%s\n%s", r.stdout, r.stderr)
	}
	if touched := touchedNodes(t, lab); len(touched) != 1 || !touched["dea-2"] {
		t.Errorf("the catch-up run touched %v, want dea-2 only", touched)
	}
	checkAllOn(t, lab, "3.4.2")
}

// killSSHDMidRun starts an upgrade over SSH, kills the node's sshd (its
// sessions and the agent they run, SIGKILL) once the node is under way, and
// checks that the run stops with exit 75 naming it.
func killSSHDMidRun(t *testing.T, lab *testLab, sshd *fixtures.SSHD, node string, args ...string) {
	t.Helper()
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &background{t: t, cmd: cmd, stdout: bufio.NewReader(pipe)}
	t.Cleanup(b.kill)
	waitForLine(t, b.stdout, "["+node+"] 3.4.2/dea_ng/install ")
	if err := sshd.Stop(); err != nil {
		t.Fatal(err)
	}
	rest := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(b.stdout)
		rest <- string(data)
	}()
	var stdout string
	select {
	case stdout = <-rest:
	case <-time.After(120 * time.Second):
		t.Fatalf("the run did not stop within 120s of losing %s", node)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("run that lost %s: %v, want exit 75\nstdout:\n%s\nstderr:\n%s", node, err, stdout, stderr.String())
	}
	if !strings.Contains(stderr.String(), "run interrupted at node "+node) {
		t.Errorf("the error does not name %s:\n%s", node, stderr.String())
	}
}

// excludeDeadDEA is issue 15's scenario: a DEA lost for good mid-run
// (its sshd killed) interrupts the run (75); `--resume --exclude-node`
// finishes every other node (exit 4) and says who excluded it and why;
// status shows it behind; the DEA, back later, is caught up by a new run
// that touches nothing else.
func excludeDeadDEA(t *testing.T, layout, dea string) {
	lab, sshds := sshLabWith(t, fixtures.LabOptions{Layout: layout, Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	killSSHDMidRun(t, lab, sshds[dea], dea, "upgrade", "3.4.2", "--yes", "--node-retries", "1", "--max-in-flight", "4")

	r := lab.sentinel(nil, "upgrade", "--resume", "--exclude-node", dea, "--reason", "disk controller died (ticket 4711)")
	if r.code != exitExcluded {
		t.Fatalf("--resume --exclude-node %s: exit %d, want %d\n%s\n%s", dea, r.code, exitExcluded, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "done without 1 node") || !strings.Contains(r.stderr, dea+": excluded by ") || !strings.Contains(r.stderr, "ticket 4711") {
		t.Errorf("the summary does not name the excluded %s and why:\n%s", dea, r.stderr)
	}
	for _, n := range lab.Nodes {
		want := "3.4.2"
		if n.Name == dea {
			want = "3.4.1"
		}
		if got := recordedRelease(t, lab, n.Name); got != want {
			t.Errorf("%s on %s, want %s", n.Name, got, want)
		}
	}
	st := lab.sentinel(nil, "status")
	if st.code != 4 || !strings.Contains(st.stdout, "PARTIAL") || !strings.Contains(st.stdout, "excluded: "+dea) || !strings.Contains(st.stdout, "behind: excluded from run") {
		t.Errorf("status after the exclusion: exit %d, want 4\n%s", st.code, st.stdout)
	}
	// A second resume has nothing to do; a new run is not refused.
	if r := lab.sentinel(nil, "upgrade", "--resume"); r.code != 0 || !strings.Contains(r.stdout, "already finished") {
		t.Errorf("a second --resume: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if err := sshds[dea].Restart(); err != nil { // the DEA is back
		t.Fatal(err)
	}
	r = lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(r.stdout+r.stderr, "this run catches it up") {
		t.Errorf("preflight did not show %s behind:\n%s\n%s", dea, r.stdout, r.stderr)
	}
	if touched := touchedNodes(t, lab); len(touched) != 1 || !touched[dea] {
		t.Errorf("the catch-up run touched %v, want %s only", touched, dea)
	}
	checkAllOn(t, lab, "3.4.2")
}

// The five-node SSH lab: what TestExcludeDeadDEATwentyNodesOverSSH shows on
// the twenty-node one, in make test.
func TestExcludeDeadDEAOverSSH(t *testing.T) {
	longScenario(t)
	excludeDeadDEA(t, "five", "dea-2")
}

// Issue 15's twenty-node SSH lab (long: twenty sshds and twelve DEAs;
// TestExcludeDeadDEAOverSSH is the same on five nodes in make test).
func TestExcludeDeadDEATwentyNodesOverSSH(t *testing.T) {
	longScenario(t)
	excludeDeadDEA(t, "twenty", "dea-7")
}

// maintenanceLab is a lab whose cluster file switches maintenance mode
// with commands that log each switch to a file, and whose status says
// whether the flag file is there. With killOnce, the first "on" kills
// sentinel (SIGKILL) right after switching, before the journal says so.
func maintenanceLab(t *testing.T, killOnce bool) (lab *testLab, switches string) {
	t.Helper()
	lab = newLab(t, 1, "3.4.1")
	dir := t.TempDir()
	switches, flag, once := filepath.Join(dir, "switches.log"), filepath.Join(dir, "on"), filepath.Join(dir, "kill-once")
	if killOnce {
		if err := os.WriteFile(once, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	block := fmt.Sprintf(`maintenance:
  on: ["echo on >> %[1]s", "touch %[2]s", "if [ -e %[3]s ]; then rm %[3]s; kill -9 $PPID; fi"]
  off: ["echo off >> %[1]s", "rm -f %[2]s"]
  status: ["test -e %[2]s"]
`, switches, flag, once)
	data := mustRead(t, lab.ClusterFile)
	if err := os.WriteFile(lab.ClusterFile, append(data, block...), 0o644); err != nil {
		t.Fatal(err)
	}
	return lab, switches
}

// maintenanceRecords are the journal's maintenance records ("on intent",
// "on done", ...) by record number, and the numbers of the first step
// start and the last step outcome.
func maintenanceRecords(t *testing.T, lab *testLab) (recs map[string]int, firstStep, lastStep int) {
	t.Helper()
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	recs = map[string]int{}
	for i, r := range rep.Records {
		switch r.Type {
		case "maintenance":
			var m struct{ Mode, Phase string }
			if err := json.Unmarshal(r.Data, &m); err != nil {
				t.Fatal(err)
			}
			recs[m.Mode+" "+m.Phase] = i + 1
		case "step-start":
			if firstStep == 0 {
				firstStep = i + 1
			}
		case "step-done", "step-failed":
			lastStep = i + 1
		}
	}
	return recs, firstStep, lastStep
}

// Maintenance mode is switched on before the first change and off after
// the last, each exactly once, though sentinel is killed (SIGKILL) right
// after switching it on, before the journal says so; --resume finishes.
// --no-maintenance leaves it alone.
func TestMaintenanceSwitchedOnceAcrossKills(t *testing.T) {
	t.Parallel()
	lab, switches := maintenanceLab(t, true)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.signal != syscall.SIGKILL {
		t.Fatalf("the on command did not kill sentinel: exit %d signal %v\n%s", r.code, r.signal, r.stderr)
	}
	lab.mustSucceed("upgrade", "--resume")
	if got := string(mustRead(t, switches)); got != "on\noff\n" {
		t.Errorf("killed right after switching on, then resumed: switches %q, want on then off, once each", got)
	}
	recs, first, last := maintenanceRecords(t, lab)
	if !(recs["on done"] < first && recs["off intent"] > last && recs["off done"] > recs["off intent"]) {
		t.Errorf("maintenance records %v, first step at %d, last at %d: want on before the first change and off after the last", recs, first, last)
	}
	checkAllOn(t, lab, "3.4.2")

	lab, switches = maintenanceLab(t, false)
	lab.mustSucceed("upgrade", "3.4.2", "--yes", "--no-maintenance")
	if data, _ := os.ReadFile(switches); len(data) != 0 {
		t.Errorf("--no-maintenance switched: %q", data)
	}
}

// SIGKILL right after each maintenance record (the crash hook), then
// --resume: each switch still happens exactly once. Long: a lab and two
// runs per record; TestMaintenanceSwitchedOnceAcrossKills keeps the
// hardest case (killed between the switch and its record) in make test.
func TestMaintenanceSwitchedOnceAfterEveryRecord(t *testing.T) {
	longScenario(t)
	t.Parallel()
	ref, _ := maintenanceLab(t, false)
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	recs, _, _ := maintenanceRecords(t, ref)
	for _, at := range []string{"on intent", "on done", "off intent", "off done"} {
		t.Run(strings.ReplaceAll(at, " ", "-"), func(t *testing.T) {
			lab, switches := maintenanceLab(t, false)
			lab.crashAt(recs[at], "upgrade", "3.4.2", "--yes")
			lab.mustSucceed("upgrade", "--resume")
			if got := string(mustRead(t, switches)); got != "on\noff\n" {
				t.Errorf("killed after the %s record: switches %q, want on then off, once each", at, got)
			}
			checkAllOn(t, lab, "3.4.2")
		})
	}
}

// `sentinel restart` is what follows `patch install --no-restart`: the
// patched component, switched in but still running the old version, runs
// the patch after it; only the node asked for is restarted.
func TestRestartAfterNoRestartPatch(t *testing.T) {
	t.Parallel()
	lab := newPatchLab(t)
	deaRoot := lab.root("dea-2")
	lab.mustSucceed("patch", "install", "dea-staging-timeout-fix", "--node", "dea-2", "--no-restart", "--yes")
	wantLevel(t, deaRoot, "dea_ng", "3.4.2-p1", "3.4.2") // new files, old process
	pending := "dea-2 (installed, restart pending"
	if st := lab.mustSucceed("patch", "status", "--all"); !strings.Contains(st.stdout, pending) {
		t.Errorf("patch status after --no-restart does not say dea-2 waits for its restart:\n%s", st.stdout)
	}
	n := eventCount(t, deaRoot)
	others := map[string]int{}
	for _, name := range []string{"dea-1", "core"} {
		others[name] = eventCount(t, lab.root(name))
	}
	r := lab.mustSucceed("restart", "--node", "dea-2", "--yes")
	if !strings.Contains(r.stdout, "Restarted dea-2") {
		t.Errorf("restart output:\n%s", r.stdout)
	}
	wantLevel(t, deaRoot, "dea_ng", "3.4.2-p1", "3.4.2-p1")
	if st := lab.mustSucceed("patch", "status", "--all"); strings.Contains(st.stdout, pending) || !strings.Contains(st.stdout, "dea-2") {
		t.Errorf("patch status after the restart:\n%s", st.stdout)
	}
	if got := eventsSince(t, deaRoot, n); !slices.Contains(got, "start dea_ng 3.4.2-p1") || !slices.Contains(got, "stop dea_ng 3.4.2") {
		t.Errorf("dea-2's restart events: %v", got)
	}
	for name, k := range others {
		if got := eventsSince(t, lab.root(name), k); len(got) != 0 {
			t.Errorf("%s was restarted too: %v", name, got)
		}
	}
	if touched := touchedNodes(t, lab); len(touched) != 1 || !touched["dea-2"] {
		t.Errorf("the restart run touched %v", touched)
	}
	if r := lab.sentinel(nil, "restart", "--role", "nosuchrole", "--yes"); r.code != 2 {
		t.Errorf("--role nosuchrole: exit %d\n%s", r.code, r.stderr)
	}
}

// The docs' closing steps on the five-node lab, through a kill -9 in the
// middle of the closing restart and a resume: maintenance mode on before
// the first change; after the core, every node upgraded before it is
// restarted once more (DEAs retired around it, one at a time), the core
// not again; then maintenance off. Each switch happens exactly once.
func TestClosingRestartThenMaintenanceOff(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	dir := t.TempDir()
	switches, flag := filepath.Join(dir, "switches.log"), filepath.Join(dir, "on")
	block := fmt.Sprintf("maintenance:\n  on: [\"echo on >> %[1]s; touch %[2]s\"]\n  off: [\"echo off >> %[1]s; rm -f %[2]s\"]\n  status: [\"test -e %[2]s\"]\n", switches, flag)
	if err := os.WriteFile(lab.ClusterFile, append(mustRead(t, lab.ClusterFile), block...), 0o644); err != nil {
		t.Fatal(err)
	}
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes", "--closing-restart")
	waitForLine(t, run.stdout, "[dea-2] closing/retire")
	if err := run.cmd.Process.Kill(); err != nil { // SIGKILL, mid closing restart
		t.Fatal(err)
	}
	_ = run.cmd.Wait()
	if got := string(mustRead(t, switches)); got != "on\n" {
		t.Errorf("killed in the closing restart: switches %q, want on only", got)
	}
	lab.mustSucceed("upgrade", "--resume")
	if got := string(mustRead(t, switches)); got != "on\noff\n" {
		t.Errorf("switches %q, want on then off, once each", got)
	}
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	type ref struct{ Node, Step, Mode, Phase string }
	at := map[string]int{} // "node step" of each done step, "maintenance mode phase" -> record number
	var retires []string
	for i, rec := range rep.Records {
		var v ref
		_ = json.Unmarshal(rec.Data, &v)
		switch rec.Type {
		case "step-done":
			at[v.Node+" "+v.Step] = i + 1
		case "step-start":
			// A step started again after the kill counts once.
			if s := v.Node + " " + v.Step; strings.HasSuffix(v.Step, "retire") && (len(retires) == 0 || retires[len(retires)-1] != s) {
				retires = append(retires, s)
			}
		case "maintenance":
			at["maintenance "+v.Mode+" "+v.Phase] = i + 1
		}
	}
	coreRestart := at["core restart"]
	for _, n := range []string{"dea-1", "dea-2", "dea-3", "services"} {
		if c := at[n+" closing/restart"]; c == 0 || c < coreRestart || c > at["maintenance off intent"] {
			t.Errorf("%s's closing restart at record %d: want after the core's restart (%d) and before maintenance off (%d)", n, c, coreRestart, at["maintenance off intent"])
		}
	}
	if at["core closing/restart"] != 0 {
		t.Error("the core was restarted twice")
	}
	want := "dea-1 retire, dea-1 unretire, dea-2 retire, dea-2 unretire, dea-3 retire, dea-3 unretire, " +
		"dea-1 closing/retire, dea-1 closing/unretire, dea-2 closing/retire, dea-2 closing/unretire, dea-3 closing/retire, dea-3 closing/unretire"
	if got := strings.Join(retires, ", "); got != want {
		t.Errorf("retirements:\n%s\nwant\n%s", got, want)
	}
	checkAllOn(t, lab, "3.4.2")
}

// The proxy the operator set in sentinel's environment reaches the nodes'
// agents over SSH, whose login environment does not have it: every
// artifact download a node makes goes through it (tinyproxy's log).
func TestOperatorProxyReachesNodesOverSSH(t *testing.T) {
	t.Parallel()
	proxy := startTinyproxy(t)
	lab, sshds := sshLab(t, 1)
	env := []string{"http_proxy=http://" + proxy.addr, "https_proxy=http://" + proxy.addr, "no_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="}
	r := lab.sentinel(env, "upgrade", "3.4.2", "--yes")
	if r.code != 0 {
		t.Fatalf("upgrade through the proxy over SSH: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkReachedOverSSH(t, sshds)
	proxied := proxy.artifactGETs(t, hostOf(lab.upstream.URL))
	if n := lab.upstream.ArtifactDownloads(); n == 0 || proxied != n {
		t.Errorf("%d artifact downloads reached the upstream, %d of them through the proxy: want all\n%s", n, proxied, proxy.logText(t))
	}
	checkAllOn(t, lab, "3.4.2")
}

// One run at a time for the whole cluster: a second operator, whose
// sentinel keeps its own state directory (another machine), is refused
// (exit 2) while a run holds the lease on the core node, and told whose;
// the first run's own resume takes its lease over at once.
func TestClusterLeaseKeepsOperatorsApart(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	if err := fixtures.InjectFault(core.Root, fixtures.Components()[1].Name, fixtures.HookStart, fixtures.FaultHang, "3.4.2"); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(lab.ClusterFile), "cluster-other.yaml") // the second machine: its own state directory
	data := append(mustRead(t, lab.ClusterFile), fmt.Sprintf("state_dir: %s\n", t.TempDir())...)
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "[core] 3.4.2/"+fixtures.Components()[1].Name+"/switch") // its start hook hangs next
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--cluster", other)
	if r.code != 2 || !strings.Contains(r.stderr, "core:") || !strings.Contains(r.stderr, "cluster.lease") || !strings.Contains(r.stderr, "sentinel upgrade 3.4.2") {
		t.Fatalf("a second operator while a run holds the lease: exit %d, want 2 naming the lease and its run\n%s", r.code, r.stderr)
	}
	if got := recordedRelease(t, lab, "core"); got != "3.4.1" {
		t.Errorf("core on %s", got)
	}
	run.kill() // SIGKILL: the lease stays until it expires
	fixtures.ClearFaults(core.Root)
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--cluster", other); r.code != 2 {
		t.Errorf("the killed run's lease did not keep the other machine out: exit %d\n%s", r.code, r.stderr)
	}
	lab.mustSucceed("upgrade", "--resume") // the same state directory takes it over
	checkAllOn(t, lab, "3.4.2")
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--cluster", other); r.code != 0 {
		t.Errorf("once the run released the lease, the other machine was refused: exit %d\n%s", r.code, r.stderr)
	}
}
