package rollout

import (
	"fmt"

	"github.com/sentinel-paas/sentinel/steps"
)

// KindStage is the Plan.Kind of a staging run (`sentinel upgrade VERSION
// --stage`): every node fetches its artifacts into its node cache ahead of
// the window, and nothing else on the node changes.
const KindStage = "stage"

// DefaultStageParallel is how many nodes stage at once unless told.
const DefaultStageParallel = 8

// StagePlan keeps of an upgrade plan only what staging does: each node's
// fetch steps (the fetch op verifies each artifact's sha256 and resumes a
// partial transfer). The role rules do not apply, since no node goes down:
// parallel nodes fetch at once (the bound on the sources in total; each
// node fetches one artifact at a time, so a source serves at most parallel
// transfers).
func StagePlan(p *Plan, parallel int) *Plan {
	if parallel < 1 {
		parallel = DefaultStageParallel
	}
	st := &Plan{From: p.From, To: p.To, Kind: KindStage, MaxInFlight: parallel, Hops: p.Hops, Force: p.Force,
		Source: p.Source, CacheURL: p.CacheURL, Offline: p.Offline, ExpiredMetadata: p.ExpiredMetadata}
	for _, np := range p.Nodes {
		out := NodePlan{Node: np.Node, Roles: np.Roles, From: np.From, Skip: np.Skip}
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				out.Steps = append(out.Steps, s)
			}
		}
		if len(out.Steps) == 0 && out.Skip == "" {
			out.Skip = "nothing to fetch"
		}
		st.Nodes = append(st.Nodes, out)
	}
	return st
}

// StagedBytes is what a staging plan moves at most: every node's artifacts
// (a node that already holds one fetches nothing for it).
func (p *Plan) StagedBytes() (total int64) {
	for _, np := range p.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				total += s.Request.Artifact.Size
			}
		}
	}
	return total
}

// StageAtOnce says how many nodes a staging plan fetches on at once: the
// bound, or the nodes with something to fetch when fewer, with the bound.
func (p *Plan) StageAtOnce() string {
	n := min(p.MaxInFlight, len(p.WorkingNodes()))
	if n < p.MaxInFlight {
		return fmt.Sprintf("%d at once (bound %d)", n, p.MaxInFlight)
	}
	return fmt.Sprintf("%d at once", n)
}
