package main

// Zero downtime as an app's users see it: every app instance a process on
// its DEA, every router a proxy process, Debian's nginx in front of the
// routers, and steady requests to every app through nginx for the whole
// upgrade (fixtures/live.go, nginx.go, traffic.go).

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
)

// liveLab is a lab of the layout whose apps serve for real; everything it
// starts is stopped when the test ends, and checked gone.
func liveLab(t *testing.T, layout string, memoryMB int64, apps []fixtures.LiveApp) (*testLab, *fixtures.Live) {
	t.Helper()
	if _, err := os.Stat(fixtures.NginxPath); err != nil {
		t.Skipf("needs Debian's nginx (scripts/install-test-deps.sh): %v", err)
	}
	lab := newLabWith(t, fixtures.LabOptions{Layout: layout, Release: "3.4.1"})
	lab.SetMaintenanceHook("true")
	lv, err := lab.StartLive(fixtures.LiveOptions{Bin: labBin, Apps: apps, DEAMemoryMB: memoryMB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lv.Close(); err != nil {
			t.Errorf("stopping the live lab: %v", err)
		}
		if left := processesUnder(lab.Dir); len(left) > 0 {
			t.Errorf("processes left running after the test: %v", left)
		}
	})
	return lab, lv
}

// processesUnder lists the processes whose command line names dir.
func processesUnder(dir string) []string {
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		data, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || len(data) == 0 || !strings.Contains(string(data), dir) {
			continue
		}
		out = append(out, p.Name()+": "+strings.ReplaceAll(string(data), "\x00", " "))
	}
	return out
}

// startTraffic sends steady requests to every live app through the load
// balancer until the test stops it.
func startTraffic(t *testing.T, lv *fixtures.Live) *fixtures.Traffic {
	t.Helper()
	tr, err := fixtures.StartTraffic(fixtures.TrafficOptions{URL: lv.LB.URL(), Apps: lv.AppNames(), MaxDuration: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Stop() })
	return tr
}

// checkNoFailures: every app with two or more instances answered every
// request, and some of them from the new release; the report is logged.
func checkNoFailures(t *testing.T, rep fixtures.TrafficReport, apps []fixtures.LiveApp, newRelease string) {
	t.Helper()
	t.Logf("\n%s", rep)
	for _, a := range apps {
		got, _ := rep.App(a.Name)
		if got.Requests < 100 {
			t.Errorf("app %s: only %d requests during the run", a.Name, got.Requests)
		}
		if a.Instances < 2 {
			continue
		}
		if got.Failures != 0 {
			t.Errorf("app %s (%d instances): %d of %d requests failed: %v", a.Name, a.Instances, got.Failures, got.Requests, got.Windows)
		}
		if got.Releases[newRelease] == 0 {
			t.Errorf("app %s: no answer from a DEA on %s: %v", a.Name, newRelease, got.Releases)
		}
	}
}

// The smallest layout with two routers behind the load balancer (core
// and router-2 behind nginx; three DEAs): upgraded with requests to every
// app all the time, no request to an app with two or more instances fails.
// What happened to the single-instance app is reported.
func TestLiveTrafficNoFailedRequests(t *testing.T) {
	lab, lv := liveLab(t, "seven", 2048, fixtures.DefaultLiveApps)
	tr := startTraffic(t, lv)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	rep := tr.Stop()
	checkNoFailures(t, rep, fixtures.DefaultLiveApps, "3.4.2")
	if err := lv.Controller.CheckAvailability(); err != nil {
		t.Errorf("the controller's timeline: %v", err)
	}
	checkAllOn(t, lab, "3.4.2")
}

// The docs' closing restart ("kato restart on all nodes" before leaving
// maintenance mode) under live traffic: after the core, every node
// upgraded before it restarts again, rolling, DEAs retired around it, the
// routers one at a time; no request to an app with two or more instances
// fails.
//
// A long scenario (about 45 s: the seven nodes' upgrade and then their
// closing restart, three DEA retirements each): make test-e2e runs it.
// make test keeps TestClosingRestartThenMaintenanceOff (the order of the
// closing restart, without traffic) and TestLiveTrafficNoFailedRequests.
func TestLiveTrafficClosingRestartNoFailedRequests(t *testing.T) {
	longScenario(t)
	lab, lv := liveLab(t, "seven", 2048, fixtures.DefaultLiveApps)
	tr := startTraffic(t, lv)
	lab.mustSucceed("upgrade", "3.4.2", "--yes", "--closing-restart")
	rep := tr.Stop()
	checkNoFailures(t, rep, fixtures.DefaultLiveApps, "3.4.2")
	if err := lv.Controller.CheckAvailability(); err != nil {
		t.Errorf("the controller's timeline: %v", err)
	}
	checkAllOn(t, lab, "3.4.2")
	// The closing restart did happen, on every node upgraded before the core.
	done := map[string]bool{}
	jr, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range jr.Records {
		var v struct{ Node, Step string }
		if rec.Type == "step-done" && json.Unmarshal(rec.Data, &v) == nil {
			done[v.Node+" "+v.Step] = true
		}
	}
	for _, n := range []string{"router-2", "services", "dea-1", "dea-2", "dea-3"} {
		if !done[n+" closing/restart"] || (strings.HasPrefix(n, "dea-") && !done[n+" closing/retire"]) {
			t.Errorf("%s: no closing restart (or, for a DEA, no retirement around it) in the journal", n)
		}
	}
}

// The proof can fail: without draining (--skip-drain) a DEA's instances
// stop with it, and requests to the apps fail; the failures are counted
// and their windows reported.
func TestLiveTrafficWithoutDrainFails(t *testing.T) {
	lab, lv := liveLab(t, "seven", 2048, fixtures.DefaultLiveApps)
	tr := startTraffic(t, lv)
	lab.mustSucceed("upgrade", "3.4.2", "--yes", "--skip-drain")
	rep := tr.Stop()
	t.Logf("\n%s", rep)
	failed := 0
	for _, a := range fixtures.DefaultLiveApps {
		got, _ := rep.App(a.Name)
		if a.Instances >= 2 && got.Failures > 0 {
			failed++
			if len(got.Windows) == 0 || got.LongestGap <= 0 {
				t.Errorf("app %s: %d failures but windows %v, longest gap %s", a.Name, got.Failures, got.Windows, got.LongestGap)
			}
		}
	}
	if failed == 0 {
		t.Errorf("without draining, no redundant app saw a failed request:\n%s", rep)
	}
}

// twentyNodeApps run on the twenty-node layout's twelve DEAs: four
// redundant apps and a single-instance one.
var twentyNodeApps = []fixtures.LiveApp{
	{Name: "shop", Instances: 3, MemoryMB: 512},
	{Name: "blog", Instances: 2, MemoryMB: 256},
	{Name: "api", Instances: 4, MemoryMB: 256},
	{Name: "docs", Instances: 2, MemoryMB: 128},
	{Name: "cron", Instances: 1, MemoryMB: 128},
}

// Must-show 1 of "zero downtime, proven with live traffic": the docs'
// twenty-node cluster (three routers behind nginx, twelve DEAs) upgraded
// with requests to every app throughout: no request to an app with two or
// more instances fails; the report (requests, failures, longest gap,
// latency) is logged.
//
// A long scenario (twelve DEA retirements with live instances moved):
// make test-e2e runs it. make test keeps TestLiveTrafficNoFailedRequests,
// the same on the seven-node layout (two routers, three DEAs).
func TestLiveTrafficTwentyNodes(t *testing.T) {
	longScenario(t)
	lab, lv := liveLab(t, "twenty", 2048, twentyNodeApps)
	tr := startTraffic(t, lv)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	rep := tr.Stop()
	checkNoFailures(t, rep, twentyNodeApps, "3.4.2")
	if err := lv.Controller.CheckAvailability(); err != nil {
		t.Errorf("the controller's timeline: %v", err)
	}
	checkRetiredOneAtATime(t, lv.Controller, 12)
	checkAllOn(t, lab, "3.4.2")
}

// Must-show 3: the same, four nodes at a time, and the orchestrator killed
// with SIGKILL in the middle (once the fourth DEA has been retired), then
// resumed: still no failed request to a redundant app.
//
// A long scenario, as TestLiveTrafficTwentyNodes.
func TestLiveTrafficTwentyNodesKilledAndResumed(t *testing.T) {
	longScenario(t)
	lab, lv := liveLab(t, "twenty", 2048, twentyNodeApps)
	tr := startTraffic(t, lv)
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes", "--max-in-flight", "4")
	waitForLine(t, run.stdout, "[dea-4] retire")
	run.kill()
	if st := run.cmd.ProcessState; st == nil || st.Success() {
		t.Fatalf("the run was not killed: %v", st)
	}
	mid := tr.Snapshot()
	lab.mustSucceed("upgrade", "--resume")
	rep := tr.Stop()
	t.Logf("killed at %s, %d requests sent by then", mid.End.Format("15:04:05.000"), mid.Requests())
	checkNoFailures(t, rep, twentyNodeApps, "3.4.2")
	if err := lv.Controller.CheckAvailability(); err != nil {
		t.Errorf("the controller's timeline: %v", err)
	}
	checkAllOn(t, lab, "3.4.2")
}
