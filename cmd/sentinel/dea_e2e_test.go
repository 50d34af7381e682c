package main

import (
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
)

// deaLab is the five-node lab whose DEAs report to a fixture DEA
// controller running the given apps.
func deaLab(t *testing.T) (*testLab, *fixtures.DEAController) {
	t.Helper()
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	ctl, err := fixtures.StartDEAController("127.0.0.1:0", map[string]int64{"dea-1": 4096, "dea-2": 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	for _, name := range []string{"dea-1", "dea-2"} {
		n, _ := lab.Node(name)
		if err := fixtures.UseDEAController(n.Root, ctl.URL()); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range []struct {
		name      string
		instances int
		mb        int64
	}{{"shop", 2, 512}, {"blog", 2, 256}, {"api", 3, 256}, {"cron", 1, 128}} {
		if err := ctl.Deploy(app.name, app.instances, app.mb); err != nil {
			t.Fatal(err)
		}
	}
	return lab, ctl
}

// Zero downtime: through the whole rollout every app with two or more
// instances has one running at every moment, and DEAs are retired strictly
// one at a time, each taking instances again after its upgrade.
func TestRollingDEARetirementKeepsAppsUp(t *testing.T) {
	longScenario(t)
	lab, ctl := deaLab(t)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if err := ctl.CheckAvailability(); err != nil {
		t.Fatalf("availability broke during the rollout: %v", err)
	}
	var order []string
	for _, e := range ctl.Events() {
		if e.Kind == fixtures.DEAEventRetire || e.Kind == fixtures.DEAEventUnretire {
			order = append(order, e.Kind+" "+e.DEA)
		}
	}
	if got := strings.Join(order, ", "); got != "retire dea-1, unretire dea-1, retire dea-2, unretire dea-2" {
		t.Errorf("retirements: %s", got)
	}
	for _, name := range []string{"dea-1", "dea-2"} {
		n, _ := lab.Node(name)
		everyComponentOn(t, n.Root, "3.4.2")
	}
}

// A DEA that never drains hits the deadline: the run stops with exit code
// 75 naming the DEA, nothing of it upgraded; --resume --skip-drain gets
// past it.
func TestDrainDeadline(t *testing.T) {
	longScenario(t)
	lab, _ := deaLab(t)
	dea1, _ := lab.Node("dea-1")
	if err := fixtures.InjectFault(dea1.Root, "dea_ng", "drain", "hang", ""); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes", "--drain-timeout", "2s")
	if r.code != 75 || !strings.Contains(r.stderr, "DEA dea-1 did not drain within 2s") {
		t.Fatalf("drain that never ends: exit %d\n%s", r.code, r.stderr)
	}
	everyComponentOn(t, dea1.Root, "3.4.1")
	out := lab.mustSucceed("upgrade", "--resume", "--skip-drain")
	if !strings.Contains(out.stdout, "drain skipped") {
		t.Errorf("resume --skip-drain:\n%s", out.stdout)
	}
	everyComponentOn(t, dea1.Root, "3.4.2")
}

// The proof can fail: upgrading the DEAs without draining them (the
// operator's --skip-drain) stops every instance of an app, and the
// controller's record shows it.
func TestWithoutDrainAppsGoDown(t *testing.T) {
	longScenario(t)
	lab, ctl := deaLab(t)
	lab.mustSucceed("upgrade", "3.4.2", "--yes", "--skip-drain")
	err := ctl.CheckAvailability()
	if err == nil || !strings.Contains(err.Error(), "had no instance running") {
		t.Fatalf("without draining, availability should have broken: %v", err)
	}
}
