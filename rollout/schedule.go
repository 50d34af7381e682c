package rollout

import (
	"fmt"
	"slices"
	"sort"

	"github.com/sentinel-paas/sentinel/release"
)

// The rules for nodes upgraded at the same time (--max-in-flight N):
//   - at most N nodes are in flight;
//   - two nodes that share a redundant role (one that two or more nodes of
//     the cluster have) never go together, so such a role always has a node
//     up, and DEAs are retired strictly one at a time;
//   - the core node (primary) starts only when every other node is done;
//   - a canary (Plan.Canaries per redundant role) starts only with no node
//     in flight and nothing starts beside it; a node that shares a
//     redundant role with a canary not yet done waits for it;
//   - otherwise nodes start in plan (role) order, and a node may pass an
//     earlier one that has to wait for a role it shares with a node in
//     flight. With N = 1 this is the product's order, one node at a time.
//
// Base is every node's plumbing, not a service of the cluster: it does
// not make nodes wait for each other.

// roleCounts counts, for each role, the nodes of the plan that have it,
// skipped nodes included: a node that stays as it is keeps its role up.
func roleCounts(nodes []NodePlan) map[string]int {
	counts := map[string]int{}
	for _, np := range nodes {
		for _, r := range np.Roles {
			if r != release.RoleBase {
				counts[r]++
			}
		}
	}
	return counts
}

// sharedRedundantRole returns a role a and b both have that two or more
// nodes have, or "".
func sharedRedundantRole(a, b NodePlan, counts map[string]int) string {
	for _, r := range a.Roles {
		if r != release.RoleBase && counts[r] >= 2 && slices.Contains(b.Roles, r) {
			return r
		}
	}
	return ""
}

func isCore(np NodePlan) bool { return slices.Contains(np.Roles, release.RolePrimary) }

// scheduler picks the nodes that may start, given those in flight.
type scheduler struct {
	max      int
	counts   map[string]int
	pending  []NodePlan // in plan order
	inFlight []NodePlan
	canary   map[string]bool
	last     string // Plan.Last
	// free: only the bound on nodes in flight applies (a staging run,
	// which takes no node down).
	free bool
}

func newScheduler(all []NodePlan, todo []NodePlan, maxInFlight int, canary map[string]bool) *scheduler {
	return &scheduler{max: max(1, maxInFlight), counts: roleCounts(all), pending: slices.Clone(todo), canary: canary}
}

// next removes and returns the nodes that may start now, in plan order.
func (s *scheduler) next() []NodePlan {
	var out []NodePlan
	for i := 0; i < len(s.pending) && len(s.inFlight) < s.max; {
		np := s.pending[i]
		if s.mayStart(np) {
			s.pending = slices.Delete(s.pending, i, i+1)
			s.inFlight = append(s.inFlight, np)
			out = append(out, np)
			continue
		}
		i++
	}
	return out
}

func (s *scheduler) mayStart(np NodePlan) bool {
	if s.free {
		return true
	}
	if np.Node == s.last && (len(s.inFlight) > 0 || len(s.pending) > 1) {
		return false
	}
	others := len(s.pending) - 1
	if s.last != "" && np.Node != s.last && slices.ContainsFunc(s.pending, func(p NodePlan) bool { return p.Node == s.last }) {
		others-- // the last node waits for the core, not the core for it
	}
	if isCore(np) && (len(s.inFlight) > 0 || others > 0) {
		return false
	}
	for _, f := range s.inFlight {
		if s.canary[f.Node] || sharedRedundantRole(np, f, s.counts) != "" {
			return false
		}
	}
	if s.canary[np.Node] {
		return len(s.inFlight) == 0
	}
	for _, p := range s.pending {
		if p.Node != np.Node && s.canary[p.Node] && sharedRedundantRole(np, p, s.counts) != "" {
			return false
		}
	}
	return true
}

// finished marks a node in flight as done.
func (s *scheduler) finished(node string) {
	s.inFlight = slices.DeleteFunc(s.inFlight, func(np NodePlan) bool { return np.Node == node })
}

// Slot is one node's place in a simulated schedule.
type Slot struct {
	Node       string  `json:"node"`
	Start, End float64 `json:"-"`
}

// Simulate runs the scheduling rules with the given cost per node (any
// unit) and returns when each node would start and end, in start order.
// It is what --dry-run shows and what the benchmark compares against.
func Simulate(p *Plan, cost func(NodePlan) float64) []Slot {
	var todo []NodePlan
	for _, np := range p.Nodes {
		if np.Skip == "" {
			todo = append(todo, np)
		}
	}
	s := newScheduler(p.Nodes, todo, p.MaxInFlight, canaries(p))
	s.last = p.Last
	now := 0.0
	var slots []Slot
	running := map[string]float64{} // node -> end
	for len(s.pending) > 0 || len(s.inFlight) > 0 {
		for _, np := range s.next() {
			end := now + cost(np)
			running[np.Node] = end
			slots = append(slots, Slot{Node: np.Node, Start: now, End: end})
		}
		// Advance to the earliest end; ties finish together.
		first := ""
		for n, end := range running {
			if first == "" || end < running[first] || end == running[first] && n < first {
				first = n
			}
		}
		if first == "" {
			break // nothing can start: cannot happen, every rule lets a lone node go
		}
		now = running[first]
		for n, end := range running {
			if end == now {
				delete(running, n)
				s.finished(n)
			}
		}
	}
	return slots
}

// StepCost is a node's cost in steps, a rough stand-in for its duration.
func StepCost(np NodePlan) float64 { return float64(len(np.Steps)) }

// RoleDowntime says whether a role's service goes down during the run.
type RoleDowntime struct {
	Role     string   `json:"role"`
	Nodes    []string `json:"nodes"`    // every node with the role
	Upgraded []string `json:"upgraded"` // those the run upgrades
	// Down lists the nodes during whose upgrade the role has no node up:
	// empty for a redundant role.
	Down []string `json:"down,omitempty"`
	Note string   `json:"note"`
}

// Downtime reports, for each role the run touches, whether it stays up.
func (p *Plan) Downtime() []RoleDowntime {
	byRole := map[string]*RoleDowntime{}
	for _, np := range p.Nodes {
		for _, r := range np.Roles {
			if r == release.RoleBase {
				continue
			}
			d := byRole[r]
			if d == nil {
				d = &RoleDowntime{Role: r}
				byRole[r] = d
			}
			d.Nodes = append(d.Nodes, np.Node)
			if np.Skip == "" {
				d.Upgraded = append(d.Upgraded, np.Node)
			}
		}
	}
	var out []RoleDowntime
	for _, d := range byRole {
		switch {
		case len(d.Upgraded) == 0:
			continue
		case len(d.Nodes) == 1:
			d.Down = d.Upgraded
			d.Note = fmt.Sprintf("while %s is upgraded (the role's only node)", d.Upgraded[0])
		case d.Role == release.RoleDEA:
			d.Note = fmt.Sprintf("%d DEAs, retired one at a time with their apps moved first (apps with a single instance restart elsewhere)", len(d.Nodes))
		default:
			d.Note = fmt.Sprintf("%d nodes, upgraded one at a time", len(d.Nodes))
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Role < out[j].Role })
	return out
}
