package rollout

import (
	"fmt"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/steps"
)

// diskNeed is the free disk one node needs for this plan, defined once:
// the larger of the docs' figure (7 GiB, 10 GiB on the cache node; the
// cluster file may change them) and the node's real needs, the artifacts
// its fetch steps still have to put in its cache plus what its install
// steps unpack (where the channel gives the unpacked size). why says
// which, for the message.
func diskNeed(th preflight.Thresholds, isCache bool, np *NodePlan, cached map[string]bool) (need uint64, why string, staged uint64) {
	doc := th.DiskNeed(isCache)
	if np == nil {
		return doc, "", 0
	}
	var toCache, unpacked uint64
	seen := map[string]bool{}
	for _, s := range np.Steps {
		a := s.Request.Artifact
		switch s.Op {
		case steps.OpFetch:
			switch {
			case seen[a.SHA256] || a.Size <= 0:
			case cached[a.SHA256]:
				staged += uint64(a.Size)
			default:
				toCache += uint64(a.Size)
			}
			seen[a.SHA256] = true
		case steps.OpInstall:
			if s.Request.Artifact.UnpackedSize > 0 {
				unpacked += uint64(s.Request.Artifact.UnpackedSize)
			}
		}
	}
	real := toCache + unpacked
	if real <= doc {
		return doc, "", staged
	}
	return real, fmt.Sprintf("this node's releases: %s of artifacts to download into its cache and %s unpacked, more than the usual %s",
		preflight.FormatBytes(toCache), preflight.FormatBytes(unpacked), preflight.FormatBytes(doc)), staged
}

// nodePlan is the plan's share of the named node, nil if it has none.
func (p *Plan) nodePlan(name string) *NodePlan {
	if p == nil {
		return nil
	}
	for i := range p.Nodes {
		if p.Nodes[i].Node == name {
			return &p.Nodes[i]
		}
	}
	return nil
}

// fetchDigests lists the artifacts the node's fetch steps put in its cache.
func (np *NodePlan) fetchDigests() []string {
	if np == nil {
		return nil
	}
	var out []string
	for _, s := range np.Steps {
		if s.Op == steps.OpFetch {
			out = append(out, s.Request.Artifact.SHA256)
		}
	}
	return out
}
