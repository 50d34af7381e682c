package rollout

import (
	"context"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/steps"
)

// factsNode answers a facts call with its facts.
type factsNode struct{ facts *steps.Facts }

func (n factsNode) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	out.(*steps.Result).Facts = n.facts
	return nil
}

func componentSteps(rel string, comps ...string) []Step {
	var out []Step
	for _, c := range comps {
		for _, op := range []string{steps.OpInstall, steps.OpStop, steps.OpMigrate, steps.OpSwitch, steps.OpStart, steps.OpHealth} {
			out = append(out, Step{ID: rel + "/" + c + "/" + op, Op: op, Release: rel, Component: c, Version: rel, From: "3.4.1"})
		}
	}
	return append(out, Step{ID: rel + "/commit", Op: steps.OpCommit, Release: rel})
}

// A resumed run asks the node what runs: a component whose link no longer
// points where the run switched it has its steps done again, the others not.
func TestRecheckRedoesWhatANodeLost(t *testing.T) {
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: []NodePlan{
		{Node: "n1", Roles: []string{"router"}, Steps: componentSteps("3.4.2", "a", "b", "c")},
	}}
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start("run-1", nil, "test", plan)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	x := &Executor{Journal: j, Progress: quietProgress{}}
	// The run did a and b, then crashed.
	for _, s := range plan.Nodes[0].Steps[:12] {
		if err := x.record(run, recStepStart, stepRef{Node: "n1", Step: s.ID}); err != nil {
			t.Fatal(err)
		}
		if err := x.record(run, recStepDone, stepOutcome{Node: "n1", Step: s.ID}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		current map[string]string
		want    string // first step done again, "" for none
		resets  int
	}{
		{"as the journal says", map[string]string{"a": "3.4.2", "b": "3.4.2", "c": "3.4.1"}, "", 0},
		{"b restored", map[string]string{"a": "3.4.2", "b": "3.4.1", "c": "3.4.1"}, "3.4.2/b/install", 6},
		{"a and b restored", map[string]string{"a": "3.4.1", "b": "3.4.1", "c": "3.4.1"}, "3.4.2/a/install", 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x.Transports = map[string]cluster.Transport{"n1": factsNode{&steps.Facts{Current: c.current, Record: &cluster.Record{Release: "3.4.1"}}}}
			resets, unreached, err := x.Recheck(context.Background(), run)
			if err != nil || len(unreached) > 0 {
				t.Fatalf("Recheck: %v, unreached %v", err, unreached)
			}
			if len(resets) != c.resets {
				t.Fatalf("%d steps reset, want %d: %+v", len(resets), c.resets, resets)
			}
			if c.want == "" {
				return
			}
			if resets[0].Step != c.want || !strings.Contains(resets[0].Reason, "points at 3.4.1, but this run switched it to 3.4.2") {
				t.Errorf("first reset %+v, want %s with the reason", resets[0], c.want)
			}
			if st := run.state("n1", c.want).State; st != StatePending {
				t.Errorf("%s is %s after the reset, want pending", c.want, st)
			}
			// The journal says the same.
			path, _ := runs.LatestPath()
			again, j2 := reopen(t, path)
			j2.Close()
			if st := again.state("n1", c.want).State; st != StatePending {
				t.Errorf("replayed, %s is %s, want pending", c.want, st)
			}
			// Done again, for the next case.
			for _, r := range resets {
				if err := x.record(run, recStepDone, stepOutcome{Node: "n1", Step: r.Step}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
