package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

func PrintPlan(w io.Writer, format string, plan *rollout.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*rollout.Plan
			Downtime []rollout.RoleDowntime `json:"downtime"`
			Schedule []scheduleJSON         `json:"schedule"`
		}{plan, plan.Downtime(), scheduleOf(plan)})
	}
	fmt.Fprintf(w, "Plan: %s -> %s (releases installed in turn: %s; artifacts from %s)\n", plan.From, plan.To, strings.Join(plan.Hops, ", "), plan.Source)
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "\nnode %s [%s] on %s\n", np.Node, strings.Join(np.Roles, ","), np.From)
		if np.Skip != "" {
			fmt.Fprintf(w, "  nothing to do: %s\n", np.Skip)
			continue
		}
		var fetch int
		var bytes int64
		type comp struct {
			name, from, to string
			ops            []string
		}
		var comps []*comp
		byKey := map[string]*comp{}
		for _, s := range np.Steps {
			switch {
			case s.Op == steps.OpFetch:
				fetch++
				bytes += s.Request.Artifact.Size
			case s.Component != "":
				key := s.Release + "/" + s.Component
				c := byKey[key]
				if c == nil {
					c = &comp{name: s.Component, from: s.From, to: s.Version}
					byKey[key] = c
					comps = append(comps, c)
				}
				c.ops = append(c.ops, s.Op)
			default:
				for _, c := range comps {
					fmt.Fprintf(w, "  %-22s %-8s -> %-8s %s\n", c.name, orNone(c.from), c.to, strings.Join(c.ops, ", "))
				}
				comps, byKey = nil, map[string]*comp{}
				if s.Op == steps.OpBackup && fetch > 0 {
					fmt.Fprintf(w, "  fetch and verify %d artifacts (%s)\n", fetch, preflight.FormatBytes(bytes))
					fetch = 0
				}
				fmt.Fprintf(w, "  %s\n", describe(s))
			}
		}
	}
	if f := plan.Finally; f != nil {
		fmt.Fprintf(w, "\nfinally, on %s:\n", f.Node)
		for _, s := range f.Steps {
			fmt.Fprintf(w, "  %s\n", describe(s))
		}
	}
	printSchedule(w, plan)
	return nil
}

// scheduleJSON is when a node starts in the simulated schedule, counted in
// steps (a rough stand-in for time).
type scheduleJSON struct {
	Node       string  `json:"node"`
	StartStep  float64 `json:"start_step"`
	EndStep    float64 `json:"end_step"`
	NodeStepsN int     `json:"steps"`
}

func scheduleOf(plan *rollout.Plan) []scheduleJSON {
	out := []scheduleJSON{}
	for _, sl := range rollout.Simulate(plan, rollout.StepCost) {
		out = append(out, scheduleJSON{Node: sl.Node, StartStep: sl.Start, EndStep: sl.End, NodeStepsN: int(sl.End - sl.Start)})
	}
	return out
}

// printSchedule shows in which order, and with which others, nodes go,
// and which roles go down meanwhile.
func printSchedule(w io.Writer, plan *rollout.Plan) {
	slots := rollout.Simulate(plan, rollout.StepCost)
	if len(slots) == 0 {
		return
	}
	n := max(plan.MaxInFlight, 1)
	if n == 1 {
		var names []string
		for _, sl := range slots {
			names = append(names, sl.Node)
		}
		fmt.Fprintf(w, "\nOrder, one node at a time: %s\n", strings.Join(names, ", "))
	} else {
		var total float64
		for _, sl := range slots {
			total = max(total, sl.End)
		}
		fmt.Fprintf(w, "\nSchedule, up to %d nodes at once (estimated from step counts: %.0f steps end to end):\n", n, total)
		for _, sl := range slots {
			fmt.Fprintf(w, "  step %4.0f-%-4.0f %s\n", sl.Start, sl.End, sl.Node)
		}
	}
	if u := updateLine(plan); u != "" {
		fmt.Fprintf(w, "Update: %s\n", u)
	}
	fmt.Fprintln(w, "\nDowntime by role:")
	for _, d := range plan.Downtime() {
		status := "none"
		if len(d.Down) > 0 {
			status = "DOWN"
		}
		fmt.Fprintf(w, "  %-14s %-5s %s\n", d.Role, status, d.Note)
	}
}

// updateLine says how the run goes beyond the order: canaries, watch
// time, failure budget, maintenance mode, the closing restart.
func updateLine(plan *rollout.Plan) string {
	var parts []string
	if plan.Canaries > 0 {
		parts = append(parts, fmt.Sprintf("%d canary node(s) per redundant role, each alone", plan.Canaries))
	}
	if plan.WatchTime > 0 {
		parts = append(parts, fmt.Sprintf("each node watched for %s before its commit", time.Duration(plan.WatchTime)))
	}
	if plan.MaxFailures > 0 {
		parts = append(parts, fmt.Sprintf("up to %d failed node(s) rolled back while the others go on", plan.MaxFailures))
	}
	if plan.Maintenance {
		parts = append(parts, "maintenance mode on before the first change, off after the last")
	}
	if len(plan.Closing) > 0 {
		parts = append(parts, fmt.Sprintf("closing restart of %d node(s) after the core", len(plan.Closing)))
	}
	return strings.Join(parts, "; ")
}

func describe(s rollout.Step) string {
	switch s.Op {
	case steps.OpBackup:
		return "backup <root>/etc before " + s.Release
	case steps.OpCommit:
		return "record release " + s.Release + " in node.json"
	case steps.OpRestart:
		return fmt.Sprintf("restart all %d components and check health", len(s.Request.Restart))
	case steps.OpPrune:
		return fmt.Sprintf("prune the node cache down to the %d artifacts of %s", len(s.Request.Keep), s.Release)
	case steps.OpRetire:
		return fmt.Sprintf("retire the DEA: move its app instances to the other DEAs (drain, within %s)", s.Request.DrainDeadline.Or(steps.DefaultDrainDeadline))
	case steps.OpUnretire:
		return "unretire the DEA: it takes app instances again"
	case steps.OpPruneCache:
		return fmt.Sprintf("prune the cache node's store (%s) of what no release from %s on needs", s.Request.CacheDir, s.Request.KeepFrom)
	}
	return s.ID
}

func orNone(v string) string {
	if v == "" {
		return "(new)"
	}
	return v
}

func Indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func PrintNothingToDo(w io.Writer, plan *rollout.Plan, verb string) {
	var already []string
	for _, np := range plan.Nodes {
		if strings.HasPrefix(np.Skip, "already installed") {
			already = append(already, np.Node)
		}
	}
	if verb == "install" && len(already) > 0 {
		fmt.Fprintf(w, "%s already installed on every node it concerns (%s): nothing to install.\n", strings.Join(plan.Patches, ", "), strings.Join(already, ", "))
	} else {
		fmt.Fprintf(w, "Nothing to %s.\n", verb)
	}
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "  %s: %s\n", np.Node, np.Skip)
	}
}

// PrintStagePlan shows what staging fetches into each node cache, and the
// bound on transfers at once.
func PrintStagePlan(w io.Writer, format string, plan *rollout.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	fmt.Fprintf(w, "Plan: staging of %s (%s -> %s): %s on %d nodes, %s, into each node's cache; nothing else changes (artifacts from %s)\n",
		plan.To, plan.From, plan.To, preflight.FormatBytes(plan.StagedBytes()), len(plan.WorkingNodes()), plan.StageAtOnce(), plan.Source)
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "\nnode %s [%s] on %s\n", np.Node, strings.Join(np.Roles, ","), np.From)
		if np.Skip != "" {
			fmt.Fprintf(w, "  nothing to do: %s\n", np.Skip)
			continue
		}
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				fmt.Fprintf(w, "  fetch %-22s %-8s %10s  sha256 %.12s\n", s.Component, s.Version, preflight.FormatBytes(s.Request.Artifact.Size), s.Request.Artifact.SHA256)
			}
		}
	}
	return nil
}

// printPatchPlan shows, per node, what each patch changes.
func PrintPatchPlan(w io.Writer, format string, plan *rollout.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	fmt.Fprintf(w, "Plan: patch %s of %s (artifacts from %s)\n", patches.Verb(plan.Kind), strings.Join(plan.Patches, ", "), plan.Source)
	for _, np := range plan.Nodes {
		fmt.Fprintf(w, "\nnode %s [%s] on %s\n", np.Node, strings.Join(np.Roles, ","), np.From)
		if np.Skip != "" {
			fmt.Fprintf(w, "  nothing to do: %s\n", np.Skip)
			continue
		}
		type comp struct {
			key, from, to string
			ops           []string
		}
		var comps []*comp
		byKey := map[string]*comp{}
		for _, s := range np.Steps {
			switch {
			case s.Op == steps.OpFetch:
			case s.Component != "":
				key := s.Release + ": " + s.Component
				c := byKey[key]
				if c == nil {
					c = &comp{key: key, from: s.From, to: s.Version}
					byKey[key] = c
					comps = append(comps, c)
				}
				c.ops = append(c.ops, s.Op)
			case s.Op == steps.OpRetire, s.Op == steps.OpUnretire:
				fmt.Fprintf(w, "  %s\n", describe(s))
			}
		}
		for _, c := range comps {
			fmt.Fprintf(w, "  %-40s %-10s -> %-10s %s\n", c.key, orNone(c.from), c.to, strings.Join(c.ops, ", "))
		}
	}
	return nil
}
