// Package patches applies a release's patches (small in-place fixes) to the
// nodes of a cluster: which patch concerns which node and where it is in
// place (Status), and the journaled plans that install or revert them
// (MakeInstallPlan, MakeRevertPlan), which rollout's Executor carries out
// like an upgrade: journaled, resumable, rolled back on a failed health.
//
// node.json is the record of what is installed (Record.Patches, with the
// component versions in Record.Components); the record-patch step writes
// it atomically, after the files are in place on install and after they
// are back on revert.
package patches

import (
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// Run kinds of patch runs, in rollout.Plan.Kind.
const (
	KindInstall = "patch-install"
	KindRevert  = "patch-revert"
)

// IsPatchRun reports whether a plan is a patch run.
func IsPatchRun(p *rollout.Plan) bool { return p.Kind == KindInstall || p.Kind == KindRevert }

// Status is where each patch of the cluster's release stands. Its JSON is
// the output of `sentinel patch status --output json` (documented in the
// README).
type Status struct {
	Release string        `json:"release"`
	Patches []PatchStatus `json:"patches"`
	// OtherRelease lists nodes whose node.json records another release
	// than the core node's: the patches do not apply to them.
	OtherRelease []NodeRelease `json:"other_release,omitempty"`
}

// PatchStatus is one patch and its nodes.
type PatchStatus struct {
	ID          int              `json:"id"`
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Severity    string           `json:"severity"`
	Roles       []string         `json:"roles"`
	Components  []ComponentLevel `json:"components"`
	InstalledOn []string         `json:"installed_on"`
	// RestartPendingOn are the nodes of InstalledOn where a component of
	// the patch still runs the old version (installed with --no-restart;
	// `sentinel restart` finishes it).
	RestartPendingOn []string `json:"restart_pending_on,omitempty"`
	ToBeInstalledOn  []string `json:"to_be_installed_on"`
	// Problems are nodes whose record and files disagree about the patch.
	Problems []NodeProblem `json:"problems,omitempty"`
}

// ComponentLevel is a component a patch replaces.
type ComponentLevel struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Restart bool   `json:"restart"`
}

// NodeRelease is a node and the release it records.
type NodeRelease struct {
	Node    string `json:"node"`
	Release string `json:"release"`
}

// NodeProblem is a disagreement between a node's record and its files.
type NodeProblem struct {
	Node    string `json:"node"`
	Problem string `json:"problem"`
}

// Pending reports whether some node still needs the patch.
func (p PatchStatus) Pending() bool { return len(p.ToBeInstalledOn) > 0 }

// Available counts the patches some node still needs.
func (s *Status) Available() int {
	n := 0
	for _, p := range s.Patches {
		if p.Pending() {
			n++
		}
	}
	return n
}

// nodeComponents is what the patch replaces on a node with these roles:
// its components that the release runs there.
func nodeComponents(p release.Patch, m *release.Manifest, roles []string) []release.PatchComponent {
	if !p.AppliesTo(roles) {
		return nil
	}
	var out []release.PatchComponent
	for _, pc := range p.Components {
		if mc, ok := m.Component(pc.Name); ok && mc.AppliesTo(roles) {
			out = append(out, pc)
		}
	}
	return out
}

// inPlace reports whether the node's current links show the patch's
// components at its level or a later patch level of the same release
// version.
func inPlace(comps []release.PatchComponent, f *steps.Facts) bool {
	for _, pc := range comps {
		if !atLeast(f.Current[pc.Name], pc.Version) {
			return false
		}
	}
	return true
}

// atLeast: have is want, or a later patch level of the same version.
func atLeast(have, want string) bool {
	hb, _, _ := strings.Cut(have, "-")
	wb, _, _ := strings.Cut(want, "-")
	if have == "" || hb != wb {
		return false
	}
	hv, err1 := release.ParseVersion(have)
	wv, err2 := release.ParseVersion(want)
	return err1 == nil && err2 == nil && hv.Compare(wv) >= 0
}

// ComputeStatus tells, from the nodes' facts, which node has which patch
// of the catalog and which still needs it. A node needs a patch when it
// has one of the patch's roles, runs one of its components and is on the
// catalog's release.
func ComputeStatus(cat *release.Catalog, m *release.Manifest, inv *cluster.Inventory, facts map[string]*steps.Facts) *Status {
	st := &Status{Release: cat.Release, Patches: []PatchStatus{}}
	for _, n := range inv.Nodes {
		if f := facts[n.Name]; f != nil && f.Record != nil && f.Record.Release != cat.Release {
			st.OtherRelease = append(st.OtherRelease, NodeRelease{Node: n.Name, Release: f.Record.Release})
		}
	}
	for _, p := range cat.Patches {
		ps := PatchStatus{ID: p.ID, Name: p.Name, Description: p.Description, Severity: p.Severity,
			Roles: slices.Clone(p.Roles), InstalledOn: []string{}, ToBeInstalledOn: []string{}}
		for _, pc := range p.Components {
			ps.Components = append(ps.Components, ComponentLevel{Name: pc.Name, Version: pc.Version, Restart: pc.Restart})
		}
		for _, n := range inv.Nodes {
			f := facts[n.Name]
			if f == nil || f.Record == nil || f.Record.Release != cat.Release {
				continue
			}
			comps := nodeComponents(p, m, n.Roles)
			if len(comps) == 0 {
				continue
			}
			recorded := slices.Contains(f.Record.Patches, p.Name)
			there := inPlace(comps, f)
			if recorded {
				ps.InstalledOn = append(ps.InstalledOn, n.Name)
				if slices.ContainsFunc(comps, func(pc release.PatchComponent) bool { return slices.Contains(f.Record.RestartPending, pc.Name) }) {
					ps.RestartPendingOn = append(ps.RestartPendingOn, n.Name)
				}
			} else {
				ps.ToBeInstalledOn = append(ps.ToBeInstalledOn, n.Name)
			}
			switch {
			case recorded && !there:
				ps.Problems = append(ps.Problems, NodeProblem{Node: n.Name, Problem: "node.json records the patch, but its files are not in place (" + levels(comps, f) + "): run `sentinel patch reinstall " + p.Name + " --node " + n.Name + "`"})
			case !recorded && there:
				ps.Problems = append(ps.Problems, NodeProblem{Node: n.Name, Problem: "the patch's files are in place (" + levels(comps, f) + "), but node.json does not record it: finish the run with `sentinel patch install --resume`, or `sentinel patch mark --installed " + p.Name + " --node " + n.Name + "`"})
			}
		}
		st.Patches = append(st.Patches, ps)
	}
	return st
}

func levels(comps []release.PatchComponent, f *steps.Facts) string {
	var out []string
	for _, pc := range comps {
		cur := f.Current[pc.Name]
		if cur == "" {
			cur = "none"
		}
		out = append(out, pc.Name+" current "+cur)
	}
	return strings.Join(out, ", ")
}
