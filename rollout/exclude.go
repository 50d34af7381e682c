package rollout

import (
	"fmt"
	"slices"

	"github.com/sentinel-paas/sentinel/resume"
)

// Exclude takes a node out of an unfinished run, journaled with who did it,
// from where and why, before anything else happens: the run then finishes
// the other nodes and ends partial. The core node cannot be excluded: the
// cluster's release is the core's. Excluding a node twice is a no-op.
func Exclude(j *resume.Journal, run *Run, x Exclusion) error {
	if err := CheckExclusion(run, x); err != nil || run.IsExcluded(x.Node) {
		return err
	}
	rec, err := j.Append(recExcluded, x)
	if err != nil {
		return fmt.Errorf("cannot write the run journal %s: %w (fix the disk, then resume)", j.Path(), err)
	}
	return run.apply(rec)
}

// CheckExclusion says why the node cannot be excluded from the run, or nil.
func CheckExclusion(run *Run, x Exclusion) error {
	if x.Reason == "" {
		return &UsageError{Msg: fmt.Sprintf("--exclude-node %s needs --reason TEXT: the journal keeps why a node was left behind", x.Node)}
	}
	if run.Finished() {
		return &UsageError{Msg: fmt.Sprintf("run %s has ended (%s): there is nothing to exclude %s from", run.ID, run.Status, x.Node)}
	}
	i := slices.IndexFunc(run.Plan.Nodes, func(np NodePlan) bool { return np.Node == x.Node })
	if i < 0 {
		return &UsageError{Msg: fmt.Sprintf("--exclude-node %s: run %s has no such node (its nodes: %s)", x.Node, run.ID, joinNodes(run.Plan.Nodes))}
	}
	np := run.Plan.Nodes[i]
	switch {
	case run.IsExcluded(x.Node):
		return nil
	case np.Skip != "":
		return &UsageError{Msg: fmt.Sprintf("--exclude-node %s: run %s has nothing to do on it (%s)", x.Node, run.ID, np.Skip)}
	case isCore(np):
		return &UsageError{Msg: fmt.Sprintf("--exclude-node %s: it is the core node, whose release is the cluster's: it cannot be left out. Bring it back, then run `sentinel upgrade --resume`", x.Node)}
	case firstPending(run, np) == "(none)" && run.rollbackOf(x.Node) == nil:
		return &UsageError{Msg: fmt.Sprintf("--exclude-node %s: run %s has already done every step on it", x.Node, run.ID)}
	}
	return nil
}

func joinNodes(nodes []NodePlan) string {
	var names []string
	for _, np := range nodes {
		if np.Skip == "" {
			names = append(names, np.Node)
		}
	}
	return fmt.Sprint(names)
}
