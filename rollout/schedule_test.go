package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
)

// docsCluster is the larger cluster of the product's docs: a core, a
// second controller, a load balancer, two routers, three data-services
// nodes and twelve DEAs.
func docsCluster() []cluster.Node {
	nodes := []cluster.Node{
		{Name: "core", Roles: []string{"primary", "controller", "router"}},
		{Name: "controller-2", Roles: []string{"controller"}},
		{Name: "lb", Roles: []string{"load_balancer"}},
		{Name: "router-1", Roles: []string{"router"}},
		{Name: "router-2", Roles: []string{"router"}},
		{Name: "fs", Roles: []string{"filesystem"}},
		{Name: "sql", Roles: []string{"postgresql", "mysql"}},
		{Name: "other", Roles: []string{"mongodb", "redis", "rabbit"}},
	}
	for i := 1; i <= 12; i++ {
		nodes = append(nodes, cluster.Node{Name: fmt.Sprintf("dea-%d", i), Roles: []string{"dea"}})
	}
	return nodes
}

func planOf(nodes []cluster.Node, maxInFlight int, cost func(string) int) *Plan {
	p := &Plan{MaxInFlight: maxInFlight}
	for _, n := range OrderBy(nodes, nil) {
		np := NodePlan{Node: n.Name, Roles: n.Roles}
		for i := 0; i < cost(n.Name); i++ {
			np.Steps = append(np.Steps, Step{ID: fmt.Sprint(i)})
		}
		p.Nodes = append(p.Nodes, np)
	}
	return p
}

// checkRules asserts the scheduling rules on a schedule.
func checkRules(t *testing.T, p *Plan, slots []Slot) {
	t.Helper()
	byName := map[string]NodePlan{}
	for _, np := range p.Nodes {
		byName[np.Node] = np
	}
	counts := roleCounts(p.Nodes)
	if len(slots) != len(p.Nodes) {
		t.Fatalf("%d nodes scheduled, want %d", len(slots), len(p.Nodes))
	}
	for i, a := range slots {
		inFlight := 1
		for j, b := range slots {
			if i == j || !(b.Start <= a.Start && a.Start < b.End) {
				continue
			}
			inFlight++
			if r := sharedRedundantRole(byName[a.Node], byName[b.Node], counts); r != "" {
				t.Errorf("%s and %s are upgraded together, and both have the redundant role %s", a.Node, b.Node, r)
			}
		}
		if inFlight > max(p.MaxInFlight, 1) {
			t.Errorf("%d nodes in flight when %s starts, max %d", inFlight, a.Node, p.MaxInFlight)
		}
		if isCore(byName[a.Node]) {
			for _, b := range slots {
				if b.Node != a.Node && b.End > a.Start {
					t.Errorf("core starts at %v before %s ends at %v", a.Start, b.Node, b.End)
				}
			}
		}
	}
}

func TestScheduleOneAtATimeIsPlanOrder(t *testing.T) {
	p := planOf(docsCluster(), 1, func(string) int { return 3 })
	var got, want []string
	for _, sl := range Simulate(p, StepCost) {
		got = append(got, sl.Node)
	}
	for _, np := range p.Nodes {
		want = append(want, np.Node)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want the plan's %v", got, want)
	}
	if got[len(got)-1] != "core" || !strings.HasPrefix(got[0], "dea-") {
		t.Fatalf("order %v: want DEAs first and the core last", got)
	}
}

func TestScheduleParallelKeepsRolesUp(t *testing.T) {
	for _, n := range []int{2, 3, 4, 8, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// Uneven costs so that nodes overtake each other.
			p := planOf(docsCluster(), n, func(name string) int { return 2 + len(name)%5 })
			slots := Simulate(p, StepCost)
			checkRules(t, p, slots)
			// The DEAs go one after another: with enough slots, the run takes
			// the twelve DEAs, then the core.
			var deas, core, end float64
			for _, sl := range slots {
				end = max(end, sl.End)
				switch {
				case strings.HasPrefix(sl.Node, "dea-"):
					deas += sl.End - sl.Start
				case sl.Node == "core":
					core = sl.End - sl.Start
				}
			}
			if n >= 4 && end != deas+core {
				t.Errorf("with %d in flight the run takes %v, want the critical path %v (DEAs one at a time, then the core)", n, end, deas+core)
			}
		})
	}
}

func TestScheduleSkippedNodeKeepsItsRoleUp(t *testing.T) {
	// Two routers, one already upgraded: the other may go with anything.
	p := planOf([]cluster.Node{
		{Name: "core", Roles: []string{"primary"}},
		{Name: "r1", Roles: []string{"router"}},
		{Name: "r2", Roles: []string{"router"}},
		{Name: "d1", Roles: []string{"dea"}},
	}, 3, func(string) int { return 1 })
	p.Nodes[slices.IndexFunc(p.Nodes, func(np NodePlan) bool { return np.Node == "r2" })].Skip = "already on 3.4.2"
	slots := Simulate(p, StepCost)
	if len(slots) != 3 || slots[0].Start != 0 || slots[1].Start != 0 {
		t.Fatalf("schedule %+v: want d1 and r1 together, then the core", slots)
	}
}

func TestDowntimeByRole(t *testing.T) {
	p := planOf(docsCluster(), 1, func(string) int { return 1 })
	got := map[string]RoleDowntime{}
	for _, d := range p.Downtime() {
		got[d.Role] = d
	}
	for _, role := range []string{"router", "controller", release.RoleDEA} {
		if len(got[role].Down) != 0 {
			t.Errorf("%s has %d nodes but is reported down: %+v", role, len(got[role].Nodes), got[role])
		}
	}
	for role, node := range map[string]string{"primary": "core", "filesystem": "fs", "mysql": "sql", "load_balancer": "lb"} {
		if !slices.Equal(got[role].Down, []string{node}) {
			t.Errorf("%s: down %v, want [%s] (its only node)", role, got[role].Down, node)
		}
	}
	if _, ok := got[release.RoleBase]; ok {
		t.Errorf("base is reported as a role of the cluster: %+v", got[release.RoleBase])
	}
}
