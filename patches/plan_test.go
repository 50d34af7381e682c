package patches

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

const d1 = "1111111111111111111111111111111111111111111111111111111111111111"
const d2 = "2222222222222222222222222222222222222222222222222222222222222222"

// Two patches of one release touch the same component (p2 includes p1).
func fixture() (*release.Catalog, *release.Manifest, *cluster.Inventory) {
	m := &release.Manifest{Version: "3.4.2", Components: []release.Component{
		{Name: "aok", Version: "3.4.2", Roles: []string{"controller"}},
		{Name: "router", Version: "3.4.2", Roles: []string{"router"}},
	}}
	cat := &release.Catalog{Release: "3.4.2", Patches: []release.Patch{
		{ID: 1, Name: "first", Roles: []string{"controller"}, Components: []release.PatchComponent{{Name: "aok", Version: "3.4.2-p1", Restart: true, Artifact: release.Artifact{SHA256: d1, Size: 1}}}},
		{ID: 2, Name: "second", Roles: []string{"controller"}, Components: []release.PatchComponent{{Name: "aok", Version: "3.4.2-p2", Restart: true, Artifact: release.Artifact{SHA256: d2, Size: 1}}}},
	}}
	inv := &cluster.Inventory{Nodes: []cluster.Node{
		{Name: "core", Roles: []string{"primary", "controller"}},
		{Name: "router-1", Roles: []string{"router"}},
	}}
	return cat, m, inv
}

func facts(aok string, patches ...string) map[string]*steps.Facts {
	return map[string]*steps.Facts{
		"core":     {Record: &steps.Record{Release: "3.4.2", Patches: patches}, Current: map[string]string{"aok": aok}},
		"router-1": {Record: &steps.Record{Release: "3.4.2"}, Current: map[string]string{"router": "3.4.2"}},
	}
}

func stepIDs(np rollout.NodePlan) []string {
	var out []string
	for _, s := range np.Steps {
		out = append(out, s.ID+"@"+s.Version)
	}
	return out
}

func TestRevertReturnsToTheLevelOfKeptPatches(t *testing.T) {
	cat, m, inv := fixture()
	cases := []struct {
		name      string
		names     []string
		aok       string
		have      []string
		noRestart bool
		want      []string
	}{
		{"revert the newer: back to the older's level", []string{"second"}, "3.4.2-p2", []string{"first", "second"}, false,
			[]string{"second/revert/aok/stop@3.4.2-p1", "second/revert/aok/switch@3.4.2-p1", "second/revert/aok/start@3.4.2-p1", "second/revert/aok/health@3.4.2-p1", "second/record@"}},
		{"revert the older only: the newer keeps aok", []string{"first"}, "3.4.2-p2", []string{"first", "second"}, false,
			[]string{"first/record@"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := MakeRevertPlan(PlanInput{Inventory: inv, Facts: facts(c.aok, c.have...), Catalog: cat, Manifest: m, Names: c.names, NoRestart: c.noRestart})
			if err != nil {
				t.Fatal(err)
			}
			got := stepIDs(plan.Nodes[1]) // the core is last
			if !slices.Equal(got, c.want) {
				t.Errorf("core steps %v\nwant %v", got, c.want)
			}
			if plan.Nodes[0].Skip == "" {
				t.Errorf("router-1 has no patch but gets steps: %v", stepIDs(plan.Nodes[0]))
			}
		})
	}
	// Both reverted, without restart: newest first, each to the level below.
	plan, err := MakeRevertPlan(PlanInput{Inventory: inv, Facts: facts("3.4.2-p2", "first", "second"), Catalog: cat, Manifest: m, NoRestart: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"second/revert/aok/switch@3.4.2-p1", "second/record@", "first/revert/aok/switch@3.4.2", "first/record@"}
	if got := stepIDs(plan.Nodes[1]); !slices.Equal(got, want) {
		t.Errorf("core steps %v\nwant %v", got, want)
	}
	if v := plan.Nodes[1].Steps[1].Request.Components["aok"]; v != "3.4.2-p1" {
		t.Errorf("record of the second revert says aok %s", v)
	}
}

func TestInstallPlan(t *testing.T) {
	cat, m, inv := fixture()
	plan, err := MakeInstallPlan(PlanInput{Inventory: inv, Facts: facts("3.4.2"), Catalog: cat, Manifest: m, Names: []string{"first"}, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first/aok/fetch@3.4.2-p1", "first/backup@", "first/aok/install@3.4.2-p1", "first/aok/stop@3.4.2-p1", "first/aok/switch@3.4.2-p1", "first/aok/start@3.4.2-p1", "first/aok/health@3.4.2-p1", "first/record@"}
	if got := stepIDs(plan.Nodes[1]); !slices.Equal(got, want) {
		t.Errorf("core steps %v\nwant %v", got, want)
	}
	if plan.Kind != KindInstall || !slices.Equal(plan.Patches, []string{"first"}) {
		t.Errorf("plan kind %q patches %v", plan.Kind, plan.Patches)
	}
	// Already recorded: nothing to do, and it says so.
	plan, _ = MakeInstallPlan(PlanInput{Inventory: inv, Facts: facts("3.4.2-p1", "first"), Catalog: cat, Manifest: m, Names: []string{"first"}})
	if !plan.NothingToDo() || !strings.HasPrefix(plan.Nodes[1].Skip, "already installed: first") {
		t.Errorf("second install: %+v", plan.Nodes[1])
	}
	// Unknown names and nodes are bad input.
	for _, in := range []PlanInput{
		{Inventory: inv, Facts: facts("3.4.2"), Catalog: cat, Manifest: m, Names: []string{"nope"}},
		{Inventory: inv, Facts: facts("3.4.2"), Catalog: cat, Manifest: m, Only: []string{"nowhere"}},
	} {
		var ue *rollout.UsageError
		if _, err := MakeInstallPlan(in); err == nil || !asUsage(err, &ue) {
			t.Errorf("got %v, want a usage error", err)
		}
	}
}

func asUsage(err error, target **rollout.UsageError) bool {
	ue, ok := err.(*rollout.UsageError)
	*target = ue
	return ok
}

func TestStatusFlagsDisagreement(t *testing.T) {
	cat, m, inv := fixture()
	st := ComputeStatus(cat, m, inv, facts("3.4.2", "first"))
	p := st.Patches[0]
	if !slices.Equal(p.InstalledOn, []string{"core"}) || len(p.ToBeInstalledOn) != 0 || len(p.Problems) != 1 || !strings.Contains(p.Problems[0].Problem, "not in place") {
		t.Errorf("recorded without files: %+v", p)
	}
	st = ComputeStatus(cat, m, inv, facts("3.4.2-p1"))
	p = st.Patches[0]
	if !slices.Equal(p.ToBeInstalledOn, []string{"core"}) || len(p.Problems) != 1 || !strings.Contains(p.Problems[0].Problem, "does not record it") {
		t.Errorf("files without record: %+v", p)
	}
	if st.Available() != 2 {
		t.Errorf("available %d", st.Available())
	}
}

// In a patch that restarts one component and only switches another, the
// switch-only one comes after the restarted one's health: a failed health
// rolls back before anything unstopped was switched.
func TestInstallPlanSwitchOnlyLast(t *testing.T) {
	cat, m, inv := fixture()
	m.Components = append(m.Components, release.Component{Name: "console", Version: "3.4.2", Roles: []string{"controller"}})
	cat.Patches[0].Components = []release.PatchComponent{
		{Name: "console", Version: "3.4.2-p1", Restart: false, Artifact: release.Artifact{SHA256: d2, Size: 1}},
		{Name: "aok", Version: "3.4.2-p1", Restart: true, Artifact: release.Artifact{SHA256: d1, Size: 1}},
	}
	plan, err := MakeInstallPlan(PlanInput{Inventory: inv, Facts: facts("3.4.2"), Catalog: cat, Manifest: m, Names: []string{"first"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first/console/fetch@3.4.2-p1", "first/aok/fetch@3.4.2-p1", "first/backup@", "first/console/install@3.4.2-p1", "first/aok/install@3.4.2-p1",
		"first/aok/stop@3.4.2-p1", "first/aok/switch@3.4.2-p1", "first/aok/start@3.4.2-p1", "first/aok/health@3.4.2-p1", "first/console/switch@3.4.2-p1", "first/record@"}
	if got := stepIDs(plan.Nodes[1]); !slices.Equal(got, want) {
		t.Errorf("core steps %v\nwant %v", got, want)
	}
}

// Patch levels compare by number: -p10 is above -p9.
func TestPatchLevelTen(t *testing.T) {
	if !atLeast("3.4.2-p10", "3.4.2-p9") || atLeast("3.4.2-p9", "3.4.2-p10") {
		t.Errorf("atLeast(3.4.2-p10, 3.4.2-p9) = %v, atLeast(3.4.2-p9, 3.4.2-p10) = %v", atLeast("3.4.2-p10", "3.4.2-p9"), atLeast("3.4.2-p9", "3.4.2-p10"))
	}
	// Reverting p11 while the node keeps p9 and p10 returns aok to p10.
	cat, m, _ := fixture()
	cat.Patches = nil
	for i, n := range []int{9, 10, 11} {
		v := fmt.Sprintf("3.4.2-p%d", n)
		cat.Patches = append(cat.Patches, release.Patch{ID: i + 1, Name: fmt.Sprintf("p%d", n), Roles: []string{"controller"},
			Components: []release.PatchComponent{{Name: "aok", Version: v, Restart: true, Artifact: release.Artifact{SHA256: d1, Size: 1}}}})
	}
	in := PlanInput{Catalog: cat, Manifest: m}
	if v, _ := in.levelWithout("aok", map[string]bool{"p9": true, "p10": true}, []string{"controller"}); v != "3.4.2-p10" {
		t.Errorf("without p11, keeping p9 and p10: aok %s, want 3.4.2-p10", v)
	}
}

// A node on aok 3.4.2-p2 (patch second) is never switched back to -p1 by
// installing or reinstalling first: p2 includes p1's fix, so first is
// only unpacked (for a later revert of second to return to) and recorded,
// with aok at 3.4.2-p2.
func TestInstallOlderPatchKeepsNewerLevel(t *testing.T) {
	cat, m, inv := fixture()
	for _, in := range []PlanInput{
		{Inventory: inv, Facts: facts("3.4.2-p2", "second"), Catalog: cat, Manifest: m, RunID: "r"},
		{Inventory: inv, Facts: facts("3.4.2-p2", "second", "first"), Catalog: cat, Manifest: m, RunID: "r", Names: []string{"first"}, Reinstall: true},
	} {
		plan, err := MakeInstallPlan(in)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"first/aok/fetch@3.4.2-p1", "first/backup@", "first/aok/install@3.4.2-p1", "first/record@"}
		if got := stepIDs(plan.Nodes[1]); !slices.Equal(got, want) {
			t.Errorf("reinstall %v: core steps %v\nwant %v", in.Reinstall, got, want)
		}
		rec := plan.Nodes[1].Steps[len(plan.Nodes[1].Steps)-1]
		if rec.Op != steps.OpRecordPatch || rec.Request.Patch != "first" || rec.Request.Components["aok"] != "3.4.2-p2" {
			t.Errorf("reinstall %v: record step %+v, want first recorded with aok 3.4.2-p2", in.Reinstall, rec.Request)
		}
	}
}

// Whatever the catalog order, installing both patches ends aok on p2.
func TestCatalogOrderDoesNotDecideFinalLevel(t *testing.T) {
	cat, m, inv := fixture()
	slices.Reverse(cat.Patches)
	plan, err := MakeInstallPlan(PlanInput{Inventory: inv, Facts: facts("3.4.2"), Catalog: cat, Manifest: m, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, s := range plan.Nodes[1].Steps {
		if s.Op == steps.OpSwitch && s.Component == "aok" {
			last = s.Version
		}
		if s.Op == steps.OpRecordPatch && s.Request.Components["aok"] != "3.4.2-p2" {
			t.Errorf("%s records aok %s, want 3.4.2-p2", s.ID, s.Request.Components["aok"])
		}
	}
	if last != "3.4.2-p2" {
		t.Errorf("after installing both patches aok ends on %s, want 3.4.2-p2: %v", last, stepIDs(plan.Nodes[1]))
	}
}

// On revert too, a switch-only component comes after the restarted ones'
// health: a failed health rolls back before it was switched.
func TestRevertPlanSwitchOnlyLast(t *testing.T) {
	cat, m, inv := fixture()
	m.Components = append(m.Components, release.Component{Name: "console", Version: "3.4.2", Roles: []string{"controller"}})
	cat.Patches[0].Components = []release.PatchComponent{
		{Name: "aok", Version: "3.4.2-p1", Restart: true, Artifact: release.Artifact{SHA256: d1, Size: 1}},
		{Name: "console", Version: "3.4.2-p1", Restart: false, Artifact: release.Artifact{SHA256: d2, Size: 1}},
	}
	f := facts("3.4.2-p1", "first")
	f["core"].Current["console"] = "3.4.2-p1"
	plan, err := MakeRevertPlan(PlanInput{Inventory: inv, Facts: f, Catalog: cat, Manifest: m, Names: []string{"first"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first/revert/aok/stop@3.4.2", "first/revert/aok/switch@3.4.2", "first/revert/aok/start@3.4.2", "first/revert/aok/health@3.4.2",
		"first/revert/console/switch@3.4.2", "first/record@"}
	if got := stepIDs(plan.Nodes[1]); !slices.Equal(got, want) {
		t.Errorf("core steps %v\nwant %v", got, want)
	}
}

// A node that did not answer is left out when the run does not concern
// it (not selected, or of no role its patches touch), and refuses the
// plan, named, when it does.
func TestPlanWithoutAnUnansweredNode(t *testing.T) {
	cat, m, inv := fixture()
	f := facts("3.4.2")
	delete(f, "router-1")
	away := map[string]error{"router-1": fmt.Errorf("agent did not answer")}
	for _, planFor := range []func(PlanInput) (*rollout.Plan, error){MakeInstallPlan, MakeRevertPlan} {
		in := PlanInput{Inventory: inv, Facts: f, Catalog: cat, Manifest: m, Unanswered: away, RunID: "r"}
		plan, err := planFor(in)
		if err != nil {
			t.Fatalf("controller patches, the router away: %v", err)
		}
		if np := plan.Nodes[0]; np.Node != "router-1" || !strings.Contains(np.Skip, "not affected") || !strings.Contains(np.Skip, "did not answer") {
			t.Errorf("router-1 planned %+v, want left out saying it did not answer", np)
		}
	}
	// A patch for the router's role concerns it.
	cat.Patches = append(cat.Patches, release.Patch{ID: 3, Name: "router-fix", Roles: []string{"router"},
		Components: []release.PatchComponent{{Name: "router", Version: "3.4.2-p1", Restart: true, Artifact: release.Artifact{SHA256: d1, Size: 1}}}})
	in := PlanInput{Inventory: inv, Facts: f, Catalog: cat, Manifest: m, Unanswered: away, Names: []string{"router-fix"}, RunID: "r"}
	if _, err := MakeInstallPlan(in); err == nil || !strings.Contains(err.Error(), "node router-1") || !strings.Contains(err.Error(), "router-fix") {
		t.Errorf("a patch for the router with the router away: %v, want a refusal naming router-1 and router-fix", err)
	}
	in.Only = []string{"core"}
	plan, err := MakeInstallPlan(in)
	if err != nil || !strings.Contains(plan.Nodes[0].Skip, "not selected") {
		t.Errorf("--node core, the router away: %v, %+v", err, plan)
	}
}
