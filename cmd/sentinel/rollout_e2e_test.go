package main

import (
	"github.com/sentinel-paas/sentinel/lifecycle"

	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// nodeSpan is when the journal shows a node's steps running.
type nodeSpan struct {
	node       string
	start, end time.Time
}

// journalSpans reads, per node, the first step start and last step end.
func journalSpans(t *testing.T, lab *testLab) []nodeSpan {
	t.Helper()
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	spans := map[string]*nodeSpan{}
	var order []string
	for _, r := range rep.Records {
		if !strings.HasPrefix(r.Type, "step-") {
			continue
		}
		var ref struct {
			Node string `json:"node"`
			Step string `json:"step"`
		}
		if err := json.Unmarshal(r.Data, &ref); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(ref.Step, "finally/") {
			continue // the cache node's clean-up, once every node is done
		}
		s := spans[ref.Node]
		if s == nil {
			s = &nodeSpan{node: ref.Node, start: r.Time}
			spans[ref.Node] = s
			order = append(order, ref.Node)
		}
		s.end = r.Time
	}
	var out []nodeSpan
	for _, n := range order {
		out = append(out, *spans[n])
	}
	return out
}

// checkSchedule asserts the rollout rules on what the journal shows: at
// most maxInFlight nodes at once, never two nodes of a redundant role, the
// core alone and last. It returns the most nodes seen in flight at once.
func checkSchedule(t *testing.T, lab *testLab, spans []nodeSpan, maxInFlight int) int {
	t.Helper()
	counts := map[string]int{}
	for _, n := range lab.Nodes {
		for _, r := range n.Roles {
			counts[r]++
		}
	}
	most := 0
	for _, a := range spans {
		na, _ := lab.Node(a.node)
		inFlight := 1
		for _, b := range spans {
			if a.node == b.node || b.start.After(a.start) || !b.end.After(a.start) {
				continue
			}
			inFlight++
			nb, _ := lab.Node(b.node)
			for _, r := range na.Roles {
				if r != release.RoleBase && counts[r] >= 2 && nb.HasRole(r) {
					t.Errorf("%s and %s were upgraded at the same time, and both have the redundant role %s", a.node, b.node, r)
				}
			}
			if na.HasRole(release.RolePrimary) || nb.HasRole(release.RolePrimary) {
				t.Errorf("the core was upgraded alongside %s", map[bool]string{true: b.node, false: a.node}[na.HasRole(release.RolePrimary)])
			}
		}
		most = max(most, inFlight)
	}
	if most > maxInFlight {
		t.Errorf("%d nodes in flight at once, --max-in-flight %d", most, maxInFlight)
	}
	if last := spans[len(spans)-1]; last.node != "core" {
		t.Errorf("the last node to start was %s, not the core", last.node)
	}
	return most
}

// The docs' larger cluster (core, second controller, load balancer, two
// routers, three data-services nodes, twelve DEAs), every node behind its
// own sshd, upgraded from the cache node with the upstream gone, four nodes
// at a time: every node ends on 3.4.2, the schedule keeps every redundant
// role up and the core last, DEAs are retired strictly one at a time, and
// no app with two or more instances ever had none running.
//
// A long scenario (twenty sshds, twelve DEA retirements): make test-e2e
// runs it. make test keeps its parts: the five-node cluster over SSH from
// the cache with DEAs retired one at a time and no app down
// (TestUpgradeOverSSHFromCache), and the schedule's rules on this very
// layout at several --max-in-flight (rollout's schedule_test.go).
func TestTwentyNodeExampleOverSSH(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab, sshds := sshLabWith(t, fixtures.LabOptions{Layout: "twenty", Release: "3.4.1"})
	if len(lab.Nodes) != 20 {
		t.Fatalf("the twenty-node layout has %d nodes", len(lab.Nodes))
	}
	lab.SetMaintenanceHook("true")
	ctl := withDEAController(t, lab, 2048, []app{{"shop", 3, 512}, {"blog", 2, 256}, {"api", 4, 256}, {"docs", 2, 128}, {"cron", 1, 128}})
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()

	dry := lab.mustSucceed("upgrade", "3.4.2", "--dry-run", "--max-in-flight", "4", "--cache-ip", lab.cacheIP)
	for _, want := range []string{"Schedule, up to 4 nodes at once", "Downtime by role:", "dea            none ", "router         none ", "filesystem     DOWN  while filesystem is upgraded", "primary        DOWN  while core is upgraded"} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("--dry-run lacks %q:\n%s", want, dry.stdout)
		}
	}

	lab.mustSucceed("upgrade", "3.4.2", "--cache-ip", lab.cacheIP, "--max-in-flight", "4", "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests during the upgrade from the cache", n)
	}
	checkAllOn(t, lab, "3.4.2")
	checkReachedOverSSH(t, sshds)
	if err := ctl.CheckAvailability(); err != nil {
		t.Errorf("availability broke during the rollout: %v", err)
	}
	checkRetiredOneAtATime(t, ctl, 12)
	spans := journalSpans(t, lab)
	if len(spans) != 20 {
		t.Fatalf("the journal shows steps on %d nodes, want 20", len(spans))
	}
	if most := checkSchedule(t, lab, spans, 4); most < 2 {
		t.Errorf("never more than %d node in flight: --max-in-flight 4 did not take", most)
	}
}

// Must-show 6: the orchestrator SIGKILLed at ten random moments of a
// five-node run (the docs' example: core, data services, three DEAs).
// Each time --resume goes on, the run ends with every node on 3.4.2, no
// step the journal shows done was done twice, and no hook ran again after
// its effect was in place (the fixtures log such runs).
func TestKilledAtRandomMomentsFiveNodes(t *testing.T) {
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	args := []string{"upgrade", "3.4.2", "--yes"}
	for i := 0; i < 10; i++ {
		cmd := exec.Command(sentinelBin, args...)
		cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it report a random number of steps, then kill it wherever
		// it is: in a hook, between steps, writing the journal.
		r := bufio.NewReader(out)
		lines := 2 + rng.IntN(25)
		ended := false
		for n := 0; n < lines; n++ {
			if _, err := r.ReadString('\n'); err != nil {
				ended = true
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if ended {
			t.Fatalf("kill %d: the run ended before %d lines: too few steps left to kill it ten times", i+1, lines)
		}
		args = []string{"upgrade", "--resume"}
	}
	lab.mustSucceed("upgrade", "--resume")
	checkAllOn(t, lab, "3.4.2")
	for _, n := range lab.Nodes {
		noops, err := fixtures.Noops(n.Root)
		if err != nil {
			t.Fatal(err)
		}
		if len(noops) > 0 {
			t.Errorf("node %s: hooks ran again after their effect was in place: %v", n.Name, noops)
		}
	}
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	for _, r := range rep.Records {
		if r.Type == "step-reset" {
			t.Errorf("a step was reset though no node changed behind the run's back: %s", r.Data)
		}
		if r.Type != "step-done" {
			continue
		}
		var ref struct{ Node, Step string }
		_ = json.Unmarshal(r.Data, &ref)
		done[ref.Node+" "+ref.Step]++
		if done[ref.Node+" "+ref.Step] == 2 {
			t.Errorf("step %s on %s was done twice", ref.Step, ref.Node)
		}
	}
}

// Must-show 3, with the DEAs full: the upgrade refuses before any change,
// saying how much memory is missing and that a DEA must be added; once a
// DEA is added to the cluster (and to the controller), it runs without any
// app going down.
func TestFullDEAsRefusedUntilOneIsAdded(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	ctl := withDEAController(t, lab, 1024, []app{{"shop", 3, 512}, {"blog", 3, 256}, {"api", 3, 128}})
	before := map[string]string{}
	for _, n := range lab.Nodes {
		before[n.Name] = nodeDigest(t, n.Root)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, "MB more") || !strings.Contains(r.stdout+r.stderr, "add a DEA node") {
		t.Fatalf("full DEAs: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range lab.Nodes {
		if nodeDigest(t, n.Root) != before[n.Name] {
			t.Errorf("node %s changed though the run was refused", n.Name)
		}
	}
	addDEA(t, lab, ctl, "dea-4", 1024)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	checkAllOn(t, lab, "3.4.2")
	if err := ctl.CheckAvailability(); err != nil {
		t.Errorf("availability broke during the rollout: %v", err)
	}
	checkRetiredOneAtATime(t, ctl, 4)
}

// The capacity check right before each retirement: DEAs that filled up
// after preflight (here, preflight's capacity check ignored) stop the run
// before the DEA is retired, resumable, saying what to do; with a DEA
// added, --resume finishes.
func TestCapacityCheckedAgainBeforeEachRetirement(t *testing.T) {
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	ctl := withDEAController(t, lab, 1024, []app{{"shop", 3, 512}, {"blog", 3, 256}, {"api", 3, 128}})
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--ignore-preflight-errors", "DEACapacity")
	if r.code != 75 || !strings.Contains(r.stderr, "cannot be retired now") || !strings.Contains(r.stderr, "add a DEA node") || !strings.Contains(r.stderr, "run `sentinel upgrade --resume` to continue") {
		t.Fatalf("full DEAs at retirement: exit %d\n%s", r.code, r.stderr)
	}
	for _, e := range ctl.Events() {
		if e.Kind == fixtures.DEAEventRetire {
			t.Fatalf("DEA %s was retired though the others had no room", e.DEA)
		}
	}
	addDEA(t, lab, ctl, "dea-4", 1024)
	lab.mustSucceed("upgrade", "--resume")
	for _, name := range []string{"dea-1", "dea-2", "dea-3"} {
		n, _ := lab.Node(name)
		everyComponentOn(t, n.Root, "3.4.2")
	}
	if err := ctl.CheckAvailability(); err != nil {
		t.Errorf("availability broke during the rollout: %v", err)
	}
}

func addDEA(t *testing.T, lab *testLab, ctl *fixtures.DEAController, name string, memoryMB int64) cluster.Node {
	t.Helper()
	ctl.AddDEA(name, memoryMB)
	n, err := lab.AddNode(context.Background(), name, []string{release.RoleDEA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixtures.UseDEAController(n.Root, ctl.URL()); err != nil {
		t.Fatal(err)
	}
	return n
}

// A node changed behind an interrupted run's back (a component's link
// put back, as a snapshot restore would) is noticed by --resume, which
// does that component's steps again instead of trusting the journal.
func TestResumeRechecksNodes(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.SetMaintenanceHook("true")
	// Stop the run once the first component is switched and started.
	b := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	first := lab.manifest("3.4.2").Components[0].Name
	waitForLine(t, b.stdout, fmt.Sprintf("3.4.2/%s/health", first))
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	_ = b.cmd.Wait()
	core := lab.core()
	link := core.Root + "/code/" + first + "/current"
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/3.4.1", link); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "--resume")
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	want := fmt.Sprintf("node core: %s points at 3.4.1, but this run switched it to 3.4.2", first)
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, fmt.Sprintf("from 3.4.2/%s/fetch run again", first)) {
		t.Errorf("resume did not say it redoes %s:\n%s", first, r.stderr)
	}
	everyComponentOn(t, core.Root, "3.4.2")
	if !slices.Contains(componentsOf(t, core.Root), first) {
		t.Errorf("%s missing from node.json", first)
	}
}

func componentsOf(t *testing.T, root string) []string {
	t.Helper()
	rec, err := steps.ReadRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for c := range rec.Components {
		out = append(out, c)
	}
	return out
}

// `sentinel status --watch` follows a run: each refresh shows every node
// with its step and progress, and the watch ends by itself once the run
// is no longer running.
func TestStatusWatchFollowsARun(t *testing.T) {
	lab := newLabWith(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	dea1, _ := lab.Node("dea-1")
	if err := fixtures.InjectFault(dea1.Root, "dea_ng", "drain", "hang", ""); err != nil {
		t.Fatal(err)
	}
	up := startSentinel(t, lab, "upgrade", "3.4.2", "--yes", "--drain-timeout", "10m")
	waitForLine(t, up.stdout, "[dea-1] 3.4.2/") // fetched: on to the retirement, which hangs

	watch := startSentinel(t, lab, "status", "--watch", "--interval", "50ms", "--output", "json")
	atRetire := func() bool {
		line, err := watch.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("status --watch ended while the run was running: %v", err)
		}
		var rep lifecycle.StatusReport
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatalf("status --watch printed %q: %v", line, err)
		}
		if rep.Run == nil || rep.Run.Status != "running" {
			t.Fatalf("status --watch: run %+v while the upgrade runs", rep.Run)
		}
		for _, n := range rep.Nodes {
			if n.Node == "dea-1" {
				return n.Step == "retire" && n.StepState == "running" && n.StepsDone > 0 && n.StepsTotal > n.StepsDone
			}
		}
		t.Fatal("status --watch does not list dea-1")
		return false
	}
	for !atRetire() {
	}
	// The watch asks every node through the same agent at each refresh:
	// one per node, the same processes two refreshes later.
	agents := childrenOf(t, watch.cmd.Process.Pid)
	atRetire()
	atRetire()
	if later := childrenOf(t, watch.cmd.Process.Pid); len(agents) != len(lab.Nodes) || !slices.Equal(later, agents) {
		t.Errorf("the watch's processes: %v, then %v two refreshes later; want the same agent per node (%d)", agents, later, len(lab.Nodes))
	}
	_ = up.cmd.Process.Signal(syscall.SIGKILL)
	_ = up.cmd.Wait()
	// The watch sees the run stop, prints it once more and ends.
	var last lifecycle.StatusReport
	for {
		line, err := watch.stdout.ReadString('\n')
		if err != nil {
			break
		}
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			t.Fatalf("status --watch printed %q: %v", line, err)
		}
	}
	// status's exit code says how the run stands: interrupted, 75.
	if err := watch.cmd.Wait(); watch.cmd.ProcessState.ExitCode() != 75 {
		t.Fatalf("status --watch: %v, want exit 75", err)
	}
	if last.Run == nil || last.Run.Status != "interrupted" {
		t.Errorf("last report of the watch: %+v, want the run interrupted", last.Run)
	}
}

// childrenOf lists, sorted, the pids of a process's children: the
// processes whose /proc/PID/stat names it as parent.
func childrenOf(t *testing.T, pid int) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // it ended meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		if fields := strings.Fields(rest); len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, filepath.Base(filepath.Dir(f)))
		}
	}
	slices.Sort(kids)
	return kids
}
