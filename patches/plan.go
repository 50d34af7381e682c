package patches

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// PlanInput is what a patch plan is made from.
type PlanInput struct {
	Inventory *cluster.Inventory
	Facts     map[string]*steps.Facts
	Catalog   *release.Catalog
	Manifest  *release.Manifest // of the catalog's release
	// Names are the patches to install or revert; none: every patch
	// (install: those some node needs; revert: those some node has).
	Names []string
	// Only limits the run to these nodes (--node, --local).
	Only []string
	// NoRestart: switch the new files in, but leave the running processes
	// alone; they pick the files up at their next restart.
	NoRestart bool
	// Reinstall installs the patches again where node.json records them.
	Reinstall bool
	RunID     string
	CacheURL  string
	// DrainDeadline bounds a DEA's drain (0: the default).
	DrainDeadline time.Duration
	// Unanswered are the nodes that could not tell their facts. One
	// outside the run (not selected, or of no role these patches
	// concern) need not answer; the core node must (its release chooses
	// the catalog).
	Unanswered map[string]error
}

// check validates the names the operator gave.
func (in PlanInput) check() ([]release.Patch, error) {
	for _, name := range in.Only {
		if _, ok := in.Inventory.Node(name); !ok {
			return nil, &rollout.UsageError{Msg: fmt.Sprintf("--node %s: the cluster file has no such node", name)}
		}
	}
	if len(in.Names) == 0 {
		return in.Catalog.Patches, nil
	}
	var out []release.Patch
	for _, p := range in.Catalog.Patches { // catalog order, whatever the order of the names
		if slices.Contains(in.Names, p.Name) {
			out = append(out, p)
		}
	}
	for _, name := range in.Names {
		if _, ok := in.Catalog.Patch(name); !ok {
			return nil, &rollout.UsageError{Msg: fmt.Sprintf("release %s has no patch %q (its patches: %s)", in.Catalog.Release, name, strings.Join(catalogNames(in.Catalog), ", "))}
		}
	}
	return out, nil
}

func catalogNames(c *release.Catalog) []string {
	var out []string
	for _, p := range c.Patches {
		out = append(out, p.Name)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// newPlan starts a plan over every node, in the upgrade's role order (DEAs
// first, the core last), each node's share filled in by fill.
func newPlan(in PlanInput, kind string, patchList []release.Patch,
	fill func(np *rollout.NodePlan, n cluster.Node, f *steps.Facts)) (*rollout.Plan, error) {
	core := in.Inventory.Core()
	cf := in.Facts[core.Name]
	if cf == nil || cf.Record == nil {
		return nil, &rollout.UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", core.Name, recordProblem(cf))}
	}
	plan := &rollout.Plan{From: cf.Record.Release, To: cf.Record.Release, Kind: kind, CacheURL: in.CacheURL, Hops: []string{in.Catalog.Release}}
	plan.Source = plan.DefaultSource().String()
	for _, p := range patchList {
		plan.Patches = append(plan.Patches, p.Name)
	}
	for _, n := range rollout.Order(in.Inventory.Nodes) {
		f := in.Facts[n.Name]
		if err := in.Unanswered[n.Name]; f == nil && err != nil {
			np, err := in.unanswered(n, patchList, err)
			if err != nil {
				return nil, err
			}
			plan.Nodes = append(plan.Nodes, np)
			continue
		}
		if f == nil || f.Record == nil {
			return nil, &rollout.UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", n.Name, recordProblem(f))}
		}
		np := rollout.NodePlan{Node: n.Name, Roles: n.Roles, From: f.Record.Release}
		switch {
		case len(in.Only) > 0 && !slices.Contains(in.Only, n.Name):
			np.Skip = "not selected (--node)"
		case f.Record.Release != in.Catalog.Release:
			np.Skip = fmt.Sprintf("on release %s; these patches are for %s", f.Record.Release, in.Catalog.Release)
		default:
			fill(&np, n, f)
		}
		plan.Nodes = append(plan.Nodes, np)
	}
	return plan, nil
}

// unanswered plans a node that did not tell its facts: left out, saying
// so, when the run does not concern it; else the run cannot be planned.
func (in PlanInput) unanswered(n cluster.Node, list []release.Patch, err error) (rollout.NodePlan, error) {
	np := rollout.NodePlan{Node: n.Name, Roles: n.Roles}
	if len(in.Only) > 0 && !slices.Contains(in.Only, n.Name) {
		np.Skip = fmt.Sprintf("not selected (--node); it did not answer: %v", err)
		return np, nil
	}
	var concern []string
	for _, p := range list {
		if len(nodeComponents(p, in.Manifest, n.Roles)) > 0 {
			concern = append(concern, p.Name)
		}
	}
	if len(concern) == 0 {
		np.Skip = fmt.Sprintf("not affected: no patch of this run concerns its roles (%s); it did not answer: %v", strings.Join(n.Roles, ","), err)
		return np, nil
	}
	return np, fmt.Errorf("node %s: %s concern(s) its roles (%s), and it did not answer: %w. Bring it back and run again, or leave it out: name the patches for other roles, or choose nodes with --node",
		n.Name, strings.Join(concern, ", "), strings.Join(n.Roles, ","), err)
}

func recordProblem(f *steps.Facts) string {
	if f == nil {
		return "no facts"
	}
	return f.RecordError
}

// MakeInstallPlan decides what each node does to install the patches: on
// each node of their roles that lacks them, fetch and verify the
// artifacts, back up <root>/etc, unpack every component of a patch, then
// per component stop, switch, start and check health (or only switch, with
// NoRestart or for a component whose patch needs no restart), then record
// the patch in node.json. A component the node already runs at a later
// patch level (which includes this patch's fix) is only unpacked, never
// switched back. A DEA whose dea_ng is restarted is retired first
// and unretired after. Each step's Release is the patch's name, so a failed
// health rolls back that patch's components on that node only.
func MakeInstallPlan(in PlanInput) (*rollout.Plan, error) {
	list, err := in.check()
	if err != nil {
		return nil, err
	}
	return newPlan(in, KindInstall, list, func(np *rollout.NodePlan, n cluster.Node, f *steps.Facts) {
		running := map[string]string{}
		for c, v := range f.Current {
			running[c] = v
		}
		var fetches, work []rollout.Step
		var already []string
		retired := false
		for _, p := range list {
			comps := nodeComponents(p, in.Manifest, n.Roles)
			if len(comps) == 0 {
				continue
			}
			if slices.Contains(f.Record.Patches, p.Name) && !in.Reinstall {
				already = append(already, p.Name)
				continue
			}
			work = append(work, rollout.Step{ID: p.Name + "/backup", Op: steps.OpBackup, Release: p.Name,
				Request: steps.Request{BackupID: in.RunID + "-" + p.Name}})
			versions := map[string]string{}
			var swaps, switchOnly []rollout.Step
			var pending []string
			for _, pc := range comps {
				versions[pc.Name] = pc.Version
				fetches = append(fetches, rollout.Step{ID: p.Name + "/" + pc.Name + "/fetch", Op: steps.OpFetch, Release: p.Name,
					Component: pc.Name, Version: pc.Version,
					Request: steps.Request{Component: pc.Name, Version: pc.Version, Artifact: pc.Artifact}})
				from := running[pc.Name]
				req := steps.Request{Component: pc.Name, Version: pc.Version, FromVersion: from, Artifact: pc.Artifact, Hooks: pc.Hooks}
				step := func(op string) rollout.Step {
					return rollout.Step{ID: p.Name + "/" + pc.Name + "/" + op, Op: op, Release: p.Name,
						Component: pc.Name, Version: pc.Version, From: from, Request: req}
				}
				// Every component is unpacked before any is touched: a bad
				// archive stops the patch with nothing running changed.
				work = append(work, step(steps.OpInstall))
				if above(from, pc.Version) {
					// The node runs a later level of the component, which
					// includes this patch's fix (levels are cumulative):
					// switching back would undo the later patch while
					// node.json still records it. The component stays; the
					// level is unpacked only, for a later revert to return to.
					versions[pc.Name] = from
					continue
				}
				if pc.Restart && !in.NoRestart {
					if pc.Name == deaComponent && n.HasRole(release.RoleDEA) && !retired {
						retired = true
						swaps = append([]rollout.Step{{ID: "retire", Op: steps.OpRetire,
							Request: steps.Request{DrainDeadline: release.Duration(in.DrainDeadline)}}}, swaps...)
					}
					for _, op := range []string{steps.OpStop, steps.OpSwitch, steps.OpStart, steps.OpHealth} {
						swaps = append(swaps, step(op))
					}
				} else {
					switchOnly = append(switchOnly, step(steps.OpSwitch))
					if pc.Restart {
						pending = append(pending, pc.Name) // --no-restart
					}
				}
				running[pc.Name] = pc.Version
			}
			// Components switched without a restart come after those that
			// restart: a failed health rolls back the latter before any of
			// the former was switched (a rollback only undoes what it stopped).
			work = append(work, swaps...)
			work = append(work, switchOnly...)
			rec := recordStep(p, in.Catalog.Release, versions, true)
			rec.Request.RestartPending = pending
			work = append(work, rec)
		}
		if retired {
			work = append(work, rollout.Step{ID: "unretire", Op: steps.OpUnretire})
		}
		np.Steps = append(fetches, work...)
		if len(np.Steps) == 0 {
			np.Skip = "not affected: no patch of this run concerns its roles (" + strings.Join(n.Roles, ",") + ")"
			if len(already) > 0 {
				np.Skip = "already installed: " + strings.Join(already, ", ") + " (`sentinel patch reinstall NAME` installs one again)"
			}
		}
	})
}

// above reports whether have is a later patch level of want's version.
func above(have, want string) bool { return have != want && atLeast(have, want) }

// deaComponent is the component whose restart moves a DEA's app instances.
const deaComponent = "dea_ng"

func recordStep(p release.Patch, rel string, versions map[string]string, installed bool) rollout.Step {
	return rollout.Step{ID: p.Name + "/record", Op: steps.OpRecordPatch, Release: p.Name,
		Request: steps.Request{Patch: p.Name, PatchInstalled: installed, Release: rel, Components: versions}}
}

// MakeRevertPlan decides what each node does to revert the patches: on each
// node that has them (recorded in node.json, or with their files in
// place), newest patch first, each component goes back to the version it
// had without the patch (the release's own, or the level of another patch
// the node keeps): stop, switch, start, health (only switch with NoRestart
// or a component that needs no restart); then node.json forgets the patch.
func MakeRevertPlan(in PlanInput) (*rollout.Plan, error) {
	list, err := in.check()
	if err != nil {
		return nil, err
	}
	return newPlan(in, KindRevert, list, func(np *rollout.NodePlan, n cluster.Node, f *steps.Facts) {
		running := map[string]string{}
		for c, v := range f.Current {
			running[c] = v
		}
		kept := map[string]bool{} // patches the node keeps
		for _, name := range f.Record.Patches {
			kept[name] = true
		}
		retired := false
		var work []rollout.Step
		for i := len(list) - 1; i >= 0; i-- {
			p := list[i]
			comps := nodeComponents(p, in.Manifest, n.Roles)
			if len(comps) == 0 {
				continue
			}
			recorded := slices.Contains(f.Record.Patches, p.Name)
			if !recorded && !anyAt(comps, f) {
				continue
			}
			delete(kept, p.Name)
			versions := map[string]string{}
			var swaps, switchOnly []rollout.Step
			slices.Reverse(comps) // undone in the reverse order of the install
			for _, pc := range comps {
				target, hooks := in.levelWithout(pc.Name, kept, n.Roles)
				versions[pc.Name] = target
				from := running[pc.Name]
				if from == target {
					continue // already back
				}
				req := steps.Request{Component: pc.Name, Version: target, FromVersion: from, Hooks: hooks}
				step := func(op string) rollout.Step {
					return rollout.Step{ID: p.Name + "/revert/" + pc.Name + "/" + op, Op: op, Release: p.Name,
						Component: pc.Name, Version: target, From: from, Request: req}
				}
				if pc.Restart && !in.NoRestart {
					if pc.Name == deaComponent && n.HasRole(release.RoleDEA) && !retired {
						retired = true
						swaps = append(swaps, rollout.Step{ID: "retire", Op: steps.OpRetire,
							Request: steps.Request{DrainDeadline: release.Duration(in.DrainDeadline)}})
					}
					for _, op := range []string{steps.OpStop, steps.OpSwitch, steps.OpStart, steps.OpHealth} {
						swaps = append(swaps, step(op))
					}
				} else {
					switchOnly = append(switchOnly, step(steps.OpSwitch))
				}
				running[pc.Name] = target
			}
			// As on install: the components switched without a restart
			// come after those that restart and are checked healthy.
			work = append(work, swaps...)
			work = append(work, switchOnly...)
			work = append(work, recordStep(p, in.Catalog.Release, versions, false))
		}
		if retired {
			work = append(work, rollout.Step{ID: "unretire", Op: steps.OpUnretire})
		}
		np.Steps = work
		if len(work) == 0 {
			np.Skip = "none of these patches is installed here (roles " + strings.Join(n.Roles, ",") + ")"
		}
	})
}

// anyAt reports whether one of the components runs the patch's level.
func anyAt(comps []release.PatchComponent, f *steps.Facts) bool {
	for _, pc := range comps {
		if f.Current[pc.Name] == pc.Version {
			return true
		}
	}
	return false
}

// levelWithout is the version component c returns to when only the kept
// patches remain: the highest level among them, or the release's own.
func (in PlanInput) levelWithout(c string, kept map[string]bool, roles []string) (string, release.Hooks) {
	mc, _ := in.Manifest.Component(c)
	version, hooks := mc.Version, mc.Hooks
	for _, p := range in.Catalog.Patches {
		if !kept[p.Name] {
			continue
		}
		for _, pc := range nodeComponents(p, in.Manifest, roles) {
			if pc.Name == c && atLeast(pc.Version, version) {
				version, hooks = pc.Version, pc.Hooks
			}
		}
	}
	return version, hooks
}

// ArtifactField names, for errors, where the catalog lists an artifact:
// "patch aok-endpoint-fix, patches[0].components[1] (router 3.4.2-p1).artifact".
func ArtifactField(cat *release.Catalog, digest string) string {
	for i, p := range cat.Patches {
		for j, pc := range p.Components {
			if pc.Artifact.SHA256 == digest {
				return fmt.Sprintf("patch %s, patches[%d].components[%d] (%s %s).artifact", p.Name, i, j, pc.Name, pc.Version)
			}
		}
	}
	return "artifact sha256 " + digest
}

// Verb is what a patch run of kind does: "install" or "revert".
func Verb(kind string) string {
	if kind == KindRevert {
		return "revert"
	}
	return "install"
}
