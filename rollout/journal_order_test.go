package rollout

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// A step that takes the node somewhere a resume must know about is on
// disk, begun, before its node hears of it, and so is every earlier step's
// outcome: a crash at that moment never hides a stop from the rollback, a
// retirement from the halt, or a migration from the status hook's retry.
func TestStartOnDiskBeforeTheNodeChanges(t *testing.T) {
	// With the drain, a retirement's capacity check asks the DEAs first,
	// and its start goes to disk meanwhile.
	t.Run("skip-drain", func(t *testing.T) { startOnDiskBeforeTheNodeChanges(t, true) })
	t.Run("drain", func(t *testing.T) { startOnDiskBeforeTheNodeChanges(t, false) })
}

func startOnDiskBeforeTheNodeChanges(t *testing.T, skipDrain bool) {
	ops := []string{steps.OpRetire, steps.OpFetch, steps.OpBackup, steps.OpInstall, steps.OpStop, steps.OpMigrate,
		steps.OpSwitch, steps.OpStart, steps.OpHealth, steps.OpCommit, steps.OpRestart, steps.OpUnretire}
	// The restart before the unretire is a real plan's order: the
	// restart's success must be on disk before the DEA takes instances,
	// or a resume would restart it with instances on it.
	mustWait := []string{steps.OpRetire, steps.OpStop, steps.OpMigrate, steps.OpSwitch, steps.OpStart, steps.OpCommit, steps.OpRestart, steps.OpUnretire}
	var ss []Step
	for _, op := range ops {
		ss = append(ss, Step{ID: "3.4.2/dea/" + op, Op: op})
	}
	plan := &Plan{From: "3.4.1", To: "3.4.2", Nodes: []NodePlan{{Node: "dea-1", Roles: []string{"dea"}, Steps: ss}}}
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start("run-1", []string{"sentinel", "upgrade"}, "test", plan)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var checked []string
	x := &Executor{Journal: j, Progress: quietProgress{}, SkipDrain: skipDrain, Transports: map[string]cluster.Transport{
		"dea-1": probedNode(func(ctx context.Context, op string, in any) error {
			if !slices.Contains(mustWait, op) {
				return nil
			}
			rep, err := resume.Read(j.Path())
			if err != nil {
				t.Fatal(err)
			}
			began, ended := map[string]bool{}, map[string]bool{}
			for _, rec := range rep.Records {
				var ref stepRef
				json.Unmarshal(rec.Data, &ref)
				switch rec.Type {
				case recStepStart:
					began[ref.Step] = true
				case recStepDone:
					ended[ref.Step] = true
				}
			}
			for _, s := range ss {
				if s.Op == op {
					if !began[s.ID] {
						t.Errorf("%s was sent to the node before its start was on disk", s.ID)
					}
					break
				}
				if !ended[s.ID] {
					t.Errorf("%s was sent to the node before the success of %s was on disk", op, s.ID)
				}
			}
			checked = append(checked, op)
			return nil
		}),
		"dea-2": probedNode(func(context.Context, string, any) error { return nil }),
	}, DEAs: []string{"dea-1", "dea-2"}}
	if err := x.Execute(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(checked, mustWait) {
		t.Errorf("checked %v, want every one of %v", checked, mustWait)
	}
}

// probedNode answers capacity probes with a half-full DEA, and every other
// call through its function.
type probedNode func(ctx context.Context, op string, in any) error

func (f probedNode) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	if op == steps.OpProbe {
		out.(*steps.Result).Probe = &steps.ProbeFacts{Capacity: &steps.DEACapacity{MemoryTotalMB: 4096, MemoryUsedMB: 2048,
			Instances: []steps.AppInstance{{App: "app-1", MemoryMB: 256}}}}
		return nil
	}
	return f(ctx, op, in)
}
