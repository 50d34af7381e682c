package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
)

// updateAction is the lab's stand-in for "apt-get update &&
// unattended-upgrades -d": it records that it ran, with its environment,
// and asks for a reboot as a kernel update does.
const updateAction = `echo "$SENTINEL_NODE" >> "$SENTINEL_ROOT/var/log/maintained"; env > "$SENTINEL_ROOT/var/log/action-env"; touch "$SENTINEL_ROOT/var/run/reboot-required"`

// rebootLab is a five-node SSH lab whose cluster file declares the
// update action and the lab's reboot (the node's sshd really stopped and
// started again). The sshds the reboots started are stopped when the test
// ends.
func rebootLab(t *testing.T, nodes int, actions map[string]cluster.Action) (*testLab, map[string]*fixtures.SSHD) {
	t.Helper()
	lab, sshds := sshLab(t, nodes)
	if err := lab.SetMaintenance(actions, lab.RebootCommand(labBin)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range lab.Nodes {
			os.Remove(lab.RebootHold(n.Name)) // a held node comes back, and its new sshd is recorded
		}
		// Every node that went down is back (its new sshd in lab.json)
		// before the sshds are stopped.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			got, _ := lab.Reboots()
			away := 0
			for _, e := range got {
				if e[0] == "down" {
					away++
				} else {
					away--
				}
			}
			if away == 0 {
				break
			}
		}
		now, err := fixtures.LoadLab(lab.Dir)
		if err != nil {
			return
		}
		for _, n := range now.Nodes {
			if s, err := now.LabSSHD(n.Name); err == nil {
				_ = s.Stop()
			}
		}
	})
	return lab, sshds
}

// planOrder is the order the rollout takes the lab's nodes in.
func planOrder(lab *testLab) []string {
	var names []string
	for _, n := range rollout.Order(lab.inventory().Nodes) {
		names = append(names, n.Name)
	}
	return names
}

// checkRebootedInTurn fails unless every named node went down and came
// back, one at a time, in this order.
func checkRebootedInTurn(t *testing.T, lab *testLab, order []string) {
	t.Helper()
	got, err := lab.Reboots()
	if err != nil {
		t.Fatal(err)
	}
	var want [][2]string
	for _, n := range order {
		want = append(want, [2]string{"down", n}, [2]string{"up", n})
	}
	if !slices.Equal(got, want) {
		t.Errorf("reboots %v, want each node down and up in turn: %v", got, want)
	}
}

// checkComponentsRunning fails unless every component of the node runs
// its current release again.
func checkComponentsRunning(t *testing.T, lab *testLab, name, version string) {
	t.Helper()
	n, _ := lab.Node(name)
	for _, c := range lab.manifest(version).Components {
		if !c.AppliesTo(n.Roles) {
			continue
		}
		if v, err := fixtures.RunningVersion(n.Root, c.Name); err != nil || v != version {
			t.Errorf("node %s: component %s runs %q (%v), want %s", name, c.Name, v, err, version)
		}
	}
}

// Must show 1: the update-and-reboot action runs on one node at a time in
// role order, the core last; each DEA is retired first and unretired
// after; every node really goes away (its sshd stopped, a new one
// started) and comes back with every component running and healthy.
func TestMaintainRebootsEachNodeInTurn(t *testing.T) {
	longScenario(t)
	lab, sshds := rebootLab(t, 5, map[string]cluster.Action{"os-security-updates": {Command: updateAction}})
	r := lab.mustSucceed("maintain", "os-security-updates", "--yes")
	order := planOrder(lab)
	if order[len(order)-1] != lab.core().Name {
		t.Fatalf("the plan order %v does not end with the core", order)
	}
	checkRebootedInTurn(t, lab, order)
	now, err := fixtures.LoadLab(lab.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range lab.Nodes {
		if now.SSHDPIDs[n.Name] == sshds[n.Name].PID || processAlive(sshds[n.Name].PID) {
			t.Errorf("node %s: its sshd (pid %d) was not stopped and started again", n.Name, sshds[n.Name].PID)
		}
		if data := mustRead(t, filepath.Join(n.Root, "var", "log", "maintained")); strings.TrimSpace(string(data)) != n.Name {
			t.Errorf("node %s: the action ran %q times, want once", n.Name, data)
		}
		if _, err := os.Stat(filepath.Join(n.Root, "var", "run", "reboot-required")); err == nil {
			t.Errorf("node %s still asks for a reboot", n.Name)
		}
		checkComponentsRunning(t, lab, n.Name, "3.4.1")
		if n.HasRole(release.RoleDEA) {
			for _, s := range []string{"[" + n.Name + "] retire", "[" + n.Name + "] unretire"} {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("DEA %s: no %q in the run's output:\n%s", n.Name, s, r.stdout)
				}
			}
		}
	}
	// The action ran strictly after the node's components stopped.
	if i, j := strings.Index(r.stdout, "["+order[0]+"] action"), strings.Index(r.stdout, "["+order[1]+"] action"); i < 0 || j < i {
		t.Errorf("the action did not run on %s before %s:\n%s", order[0], order[1], r.stdout)
	}
}

// waitForReboot waits until the lab's reboot log shows node going (down)
// or coming back (up).
func waitForReboot(t *testing.T, lab *testLab, what, node string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := lab.Reboots()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(got, [2]string{what, node}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not %s within 60s (reboots: %v)", node, what, got)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another process writes
	}
}

// Must show 2: the orchestrator SIGKILLed while a node is away for its
// reboot; --resume waits for the node and carries on with the others.
func TestMaintainResumeWhileNodeIsDown(t *testing.T) {
	longScenario(t)
	lab, _ := rebootLab(t, 5, map[string]cluster.Action{"os-security-updates": {Command: updateAction}})
	order := planOrder(lab)
	held := order[1]
	if err := os.WriteFile(lab.RebootHold(held), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := startSentinel(t, lab, "maintain", "os-security-updates", "--yes")
	waitForReboot(t, lab, "down", held)
	b.kill() // SIGKILL
	resumed := startSentinel(t, lab, "maintain", "--resume")
	waitForLine(t, resumed.stdout, "node "+held+" is away (rebooting)")
	if err := os.Remove(lab.RebootHold(held)); err != nil { // the node boots
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(resumed.stdout)
	if err := resumed.cmd.Wait(); err != nil {
		t.Fatalf("maintain --resume: %v\n%s", err, rest)
	}
	checkRebootedInTurn(t, lab, order)
	for _, n := range lab.Nodes {
		checkComponentsRunning(t, lab, n.Name, "3.4.1")
	}
	if !strings.Contains(string(rest), "["+held+"] wait-back") || !strings.Contains(string(rest), "back from its reboot") {
		t.Errorf("the resumed run did not wait for %s to come back:\n%s", held, rest)
	}
}

// Must show 3: a node that does not come back within --reboot-timeout
// stops the run, resumable (exit 75), naming it; --resume --exclude-node
// finishes the others.
func TestMaintainNodeNotBackIsUnreachable(t *testing.T) {
	longScenario(t)
	lab, _ := rebootLab(t, 5, map[string]cluster.Action{"os-security-updates": {Command: updateAction}})
	order := planOrder(lab)
	lost := order[2]
	if err := os.WriteFile(lab.RebootHold(lost), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "maintain", "os-security-updates", "--yes", "--reboot-timeout", "3s")
	if r.code != exitInterrupted {
		t.Fatalf("exit %d, want 75\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{lost, "did not come back from its reboot within 3s", "--exclude-node " + lost} {
		if !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("the error does not say %q:\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
		}
	}
	for _, name := range order[3:] {
		n, _ := lab.Node(name)
		if _, err := os.Stat(filepath.Join(n.Root, "var", "log", "maintained")); err == nil {
			t.Errorf("node %s was maintained while %s was away", name, lost)
		}
	}
	if r := lab.sentinel(nil, "maintain", "os-security-updates", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "sentinel maintain --resume") {
		t.Errorf("a new run beside the unfinished one: exit %d, want 2 pointing to --resume\n%s", r.code, r.stderr)
	}
	r = lab.sentinel(nil, "maintain", "--resume", "--exclude-node", lost, "--reason", "did not boot")
	if r.code != exitExcluded || !strings.Contains(r.stderr, lost+": excluded") {
		t.Fatalf("resume without %s: exit %d, want %d naming it\nstdout:\n%s\nstderr:\n%s", lost, r.code, exitExcluded, r.stdout, r.stderr)
	}
	var finished []string
	for _, n := range order {
		if n != lost {
			finished = append(finished, n)
		}
	}
	got, _ := lab.Reboots()
	var ups []string
	for _, e := range got {
		if e[0] == "up" {
			ups = append(ups, e[1])
		}
	}
	if !slices.Equal(ups, finished) {
		t.Errorf("nodes back from their reboots %v, want %v", ups, finished)
	}
}

// Must show 4: an action that fails on a node is a failed node: the run
// stops before the next node, the node's components are started again and
// the DEA unretired, and the action's output is shown and kept on the node.
// With --max-failures 1 the run spends the budget and goes on.
func TestMaintainActionFailure(t *testing.T) {
	longScenario(t)
	t.Parallel()
	failing := `if [ "$SENTINEL_NODE" = dea-2 ]; then echo "E: Failed to fetch security updates" >&2; exit 100; fi; ` + updateAction
	lab, _ := rebootLab(t, 5, map[string]cluster.Action{"os-security-updates": {Command: failing}})
	order := planOrder(lab)
	if order[1] != "dea-2" {
		t.Fatalf("plan order %v: want dea-2 second", order)
	}
	r := lab.sentinel(nil, "maintain", "os-security-updates", "--yes")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"node dea-2: step action failed", "E: Failed to fetch security updates", "components were started again as they were (logyard, dea_ng, kato, sentinel) and the DEA unretired", "run `sentinel maintain os-security-updates` again"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error does not show %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "[dea-2] recover/unretire") {
		t.Errorf("dea-2 was not unretired:\n%s", r.stdout)
	}
	checkComponentsRunning(t, lab, "dea-2", "3.4.1")
	n, _ := lab.Node("dea-2")
	if log := mustRead(t, filepath.Join(n.Root, "logs", "action-os-security-updates.log")); !strings.Contains(string(log), "E: Failed to fetch security updates") {
		t.Errorf("dea-2's action log does not keep the output:\n%s", log)
	}
	checkRebootedInTurn(t, lab, order[:1])

	// A new run with a failure budget: dea-2 fails again, the others go on.
	r = lab.sentinel(nil, "maintain", "os-security-updates", "--yes", "--max-failures", "1")
	if r.code != exitFailedWithinBudget {
		t.Fatalf("exit %d, want 5 (a node failed within the budget)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, name := range order[2:] {
		if !strings.Contains(r.stdout, "["+name+"] wait-back") {
			t.Errorf("node %s was not maintained within the failure budget:\n%s", name, r.stdout)
		}
	}
	checkComponentsRunning(t, lab, "dea-2", "3.4.1")
}

// Must show 5: the proxy the operator set reaches the action's
// environment on the node, over SSH.
func TestMaintainActionSeesOperatorProxy(t *testing.T) {
	t.Parallel()
	lab, _ := rebootLab(t, 2, map[string]cluster.Action{"env": {Command: updateAction}})
	proxy := []string{"http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3129", "no_proxy=127.0.0.1,localhost"}
	r := lab.sentinel(proxy, "maintain", "env", "--yes", "--reboot", "never")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range lab.Nodes {
		env := string(mustRead(t, filepath.Join(n.Root, "var", "log", "action-env")))
		for _, want := range append(proxy, "HTTPS_PROXY=http://127.0.0.1:3129") {
			if !slices.Contains(strings.Split(env, "\n"), want) {
				t.Errorf("node %s: the action's environment lacks %s:\n%s", n.Name, want, env)
			}
		}
	}
	if got, _ := lab.Reboots(); len(got) != 0 {
		t.Errorf("--reboot never rebooted: %v", got)
	}
	if st := lab.mustSucceed("status"); !strings.Contains(st.stdout, "maintenance on 3.4.1, SUCCEEDED") {
		t.Errorf("status does not show the maintenance run:\n%s", st.stdout)
	}
	if runs := lab.mustSucceed("runs"); !strings.Contains(runs.stdout, "maintenance on 3.4.1") || !strings.Contains(runs.stdout, "maintain env") {
		t.Errorf("runs does not list the maintenance run:\n%s", runs.stdout)
	}
}

// Bad input is refused with exit 2 before anything changes: an action the
// cluster file does not declare, a reboot policy that does not exist, an
// actions: entry that is not valid.
func TestMaintainRefusesBadInput(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 2, "3.4.1")
	if err := lab.SetMaintenance(map[string]cluster.Action{"os-security-updates": {Command: updateAction}}, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"maintain", "kernel-updates", "--yes"}, `unknown action "kernel-updates": the cluster file`},
		{[]string{"maintain", "os-security-updates", "--reboot", "sometimes", "--yes"}, `--reboot "sometimes"`},
		{[]string{"maintain", "--yes"}, "which action?"},
		{[]string{"maintain", "--resume"}, "no run to resume"},
	} {
		r := lab.sentinel(nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, want 2 saying %q\n%s", c.args, r.code, c.want, r.stderr)
		}
	}
	if err := lab.SetMaintenance(map[string]cluster.Action{"os-security-updates": {Command: "true", Mirror: "ftp://mirror.invalid/"}}, ""); err != nil {
		t.Fatal(err)
	}
	if r := lab.sentinel(nil, "maintain", "os-security-updates", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "actions.os-security-updates.mirror") {
		t.Errorf("a bad mirror: exit %d, want 2 naming the field\n%s", r.code, r.stderr)
	}
	for _, n := range lab.Nodes {
		if _, err := os.Stat(filepath.Join(n.Root, "var", "log", "maintained")); err == nil {
			t.Errorf("node %s was changed by bad input", n.Name)
		}
	}
}

// --dry-run shows the order, the core last, and which roles go down,
// and changes nothing.
func TestMaintainDryRun(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 5, "3.4.1")
	if err := lab.SetMaintenance(map[string]cluster.Action{"os-security-updates": {Command: updateAction}}, ""); err != nil {
		t.Fatal(err)
	}
	r := lab.mustSucceed("maintain", "os-security-updates", "--dry-run")
	order := planOrder(lab)
	at := -1
	for _, name := range order {
		i := strings.Index(r.stdout, ". "+name+" ")
		if i < at {
			t.Errorf("--dry-run does not list %s in order %v:\n%s", name, order, r.stdout)
		}
		at = i
	}
	for _, want := range []string{"dea-1          [dea] retire, stop 4 components, action, reboot", "Downtime by role:", "primary", "down while core is maintained", "DEAs, each retired first"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--dry-run does not say %q:\n%s", want, r.stdout)
		}
	}
	j := lab.mustSucceed("maintain", "os-security-updates", "--dry-run", "--output", "json")
	if !strings.Contains(j.stdout, `"kind": "maintain"`) || !strings.Contains(j.stdout, `"op": "wait-back"`) {
		t.Errorf("--dry-run --output json does not carry the maintenance plan:\n%s", j.stdout)
	}
	for _, n := range lab.Nodes {
		if _, err := os.Stat(filepath.Join(n.Root, "var", "log", "maintained")); err == nil {
			t.Errorf("node %s was changed by --dry-run", n.Name)
		}
	}
}

// Preflight: the action's package mirror answers from every node through
// the operator's proxy (tinyproxy carries it); a mirror that does not
// answer refuses the run (exit 3) naming it, before any change.
func TestMaintainPreflightReachesMirrorThroughProxy(t *testing.T) {
	t.Parallel()
	proxy := startTinyproxy(t)
	var mirrorHits atomic.Int64
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { mirrorHits.Add(1) }))
	t.Cleanup(mirror.Close)
	lab, _ := rebootLab(t, 2, map[string]cluster.Action{"os-security-updates": {Command: updateAction, Mirror: mirror.URL + "/ubuntu/"}})
	env := []string{"http_proxy=http://" + proxy.addr, "https_proxy=http://" + proxy.addr, "no_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="}
	r := lab.sentinel(env, "maintain", "os-security-updates", "--yes", "--reboot", "never")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if mirrorHits.Load() < int64(len(lab.Nodes)) {
		t.Errorf("the mirror saw %d requests, want one from each of %d nodes", mirrorHits.Load(), len(lab.Nodes))
	}
	if log := proxy.logText(t); !strings.Contains(log, strings.TrimPrefix(mirror.URL, "http://")) {
		t.Errorf("the proxy did not carry the mirror check:\n%s", log)
	}

	mirror.Close()
	r = lab.sentinel(env, "maintain", "os-security-updates", "--yes", "--reboot", "never")
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, strings.TrimPrefix(mirror.URL, "http://")) {
		t.Fatalf("a mirror that does not answer: exit %d, want 3 naming it\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range lab.Nodes {
		if data := mustRead(t, filepath.Join(n.Root, "var", "log", "maintained")); strings.Count(string(data), n.Name) != 1 {
			t.Errorf("node %s: the action ran again though preflight refused: %q", n.Name, data)
		}
	}
}

// Must show 1, apps kept up: on the seven-node live lab (apps that really
// serve, two routers behind nginx, three DEAs), the action on every node
// with requests to every app throughout: each DEA retired (its instances
// moved) before its components stop, one at a time, and no request to an
// app with two or more instances fails. The lab's reboot needs SSH, which
// the live lab does not use: --reboot never here; the SSH scenarios above
// reboot.
func TestMaintainKeepsAppsUp(t *testing.T) {
	longScenario(t)
	lab, lv := liveLab(t, "seven", 2048, fixtures.DefaultLiveApps)
	if err := lab.SetMaintenance(map[string]cluster.Action{"os-security-updates": {Command: updateAction}}, ""); err != nil {
		t.Fatal(err)
	}
	tr := startTraffic(t, lv)
	lab.mustSucceed("maintain", "os-security-updates", "--yes", "--reboot", "never")
	rep := tr.Stop()
	checkNoFailures(t, rep, fixtures.DefaultLiveApps, "3.4.1")
	if err := lv.Controller.CheckAvailability(); err != nil {
		t.Errorf("the controller's timeline: %v", err)
	}
	checkRetiredOneAtATime(t, lv.Controller, 3)
	for _, n := range lab.Nodes {
		if data := mustRead(t, filepath.Join(n.Root, "var", "log", "maintained")); strings.TrimSpace(string(data)) != n.Name {
			t.Errorf("node %s: the action ran %q", n.Name, data)
		}
	}
}
