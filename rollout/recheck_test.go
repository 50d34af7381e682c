package rollout

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
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
			x.Transports = map[string]cluster.Transport{"n1": factsNode{&steps.Facts{Current: c.current, Record: &steps.Record{Release: "3.4.1"}}}}
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

// What a reset takes along: the fetch of an artifact to install again (a
// restored node may have lost its cache) and, for a DEA that was already
// unretired, its retirement (its components go down again).
func TestStepsToRedoTakeFetchAndRetire(t *testing.T) {
	art := func(c string) steps.Request {
		return steps.Request{Component: c, Artifact: release.Artifact{SHA256: "sha-" + c}}
	}
	var all []Step
	for _, c := range []string{"a", "b"} {
		all = append(all, Step{ID: "3.4.2/" + c + "/fetch", Op: steps.OpFetch, Component: c, Request: art(c)})
	}
	all = append(all, Step{ID: "retire", Op: steps.OpRetire})
	for _, c := range []string{"a", "b"} {
		for _, op := range []string{steps.OpInstall, steps.OpSwitch} {
			all = append(all, Step{ID: "3.4.2/" + c + "/" + op, Op: op, Component: c, Request: art(c)})
		}
	}
	all = append(all, Step{ID: "unretire", Op: steps.OpUnretire})
	np := NodePlan{Node: "dea-1", Steps: all}
	var ids []string
	for _, s := range stepsToRedo(np, 5) { // from 3.4.2/b/install
		ids = append(ids, s.ID)
	}
	want := []string{"3.4.2/b/fetch", "retire", "3.4.2/b/install", "3.4.2/b/switch", "unretire"}
	if !slices.Equal(ids, want) {
		t.Errorf("redo %v, want %v", ids, want)
	}
}
