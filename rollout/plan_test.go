package rollout

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/steps"
)

func TestOrder(t *testing.T) {
	nodes := []cluster.Node{
		{Name: "core", Roles: []string{"primary", "controller", "router", "dea"}},
		{Name: "db", Roles: []string{"mysql"}},
		{Name: "r1", Roles: []string{"router"}},
		{Name: "d1", Roles: []string{"dea"}},
		{Name: "c1", Roles: []string{"controller"}},
		{Name: "d2", Roles: []string{"dea"}},
	}
	names := func(ns []cluster.Node) string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		roles []string
		want  string
	}{
		{nil, "d1,d2,c1,r1,db,core"},                           // the product's order, others after them, the core last
		{[]string{"router", "dea"}, "r1,d1,d2,db,c1,core"},     // overridden; unlisted roles keep the file's order
		{[]string{"primary", "router"}, "r1,db,d1,c1,d2,core"}, // naming primary does not move the core
	}
	for _, c := range cases {
		if got := names(OrderBy(nodes, c.roles)); got != c.want {
			t.Errorf("OrderBy(%v) = %s, want %s", c.roles, got, c.want)
		}
	}
}

// fitElsewhere places the retiring DEA's instances, largest first, on the
// first other DEA with room, and says what does not fit.
func TestFitElsewhere(t *testing.T) {
	dea := func(total int64, mbs ...int64) *steps.DEACapacity {
		c := &steps.DEACapacity{MemoryTotalMB: total}
		for _, mb := range mbs {
			c.Instances = append(c.Instances, steps.AppInstance{App: "a", MemoryMB: mb})
			c.MemoryUsedMB += mb
		}
		return c
	}
	cases := []struct {
		name         string
		caps         map[string]*steps.DEACapacity
		missing, big int64
	}{
		{"fits", map[string]*steps.DEACapacity{"d1": dea(1024, 512, 256), "d2": dea(1024)}, 0, 0},
		{"needs splitting over two", map[string]*steps.DEACapacity{"d1": dea(2048, 600, 600), "d2": dea(1024, 400), "d3": dea(1024, 400)}, 0, 0},
		{"largest first matters", map[string]*steps.DEACapacity{"d1": dea(2048, 300, 700), "d2": dea(1000)}, 0, 0},
		{"does not fit", map[string]*steps.DEACapacity{"d1": dea(1024, 600, 300), "d2": dea(1024, 600, 256)}, 900, 600},
		{"one instance too big anywhere", map[string]*steps.DEACapacity{"d1": dea(4096, 2048), "d2": dea(4096, 3000)}, 2048, 2048},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			missing, big := fitElsewhere("d1", slices.Sorted(maps.Keys(c.caps)), c.caps)
			if missing != c.missing || big != c.big {
				t.Errorf("missing %d MB (largest %d), want %d (largest %d)", missing, big, c.missing, c.big)
			}
		})
	}
}
