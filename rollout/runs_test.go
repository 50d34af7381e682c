package rollout

import (
	"errors"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// A plan the journal could not read back never becomes a run: one bad
// value would otherwise block every later command (status, resume,
// recover) on a record they cannot decode.
func TestStartRefusesAPlanThatWouldNotReadBack(t *testing.T) {
	runs := Runs{Dir: t.TempDir()}
	bad := &Plan{From: "3.4.1", To: "3.4.2", Nodes: []NodePlan{{Node: "dea-1", Steps: []Step{
		{ID: "retire", Op: steps.OpRetire, Request: steps.Request{DrainDeadline: release.Duration(-5 * time.Minute)}},
	}}}}
	_, _, err := runs.Start("r1", []string{"sentinel", "upgrade"}, "test", bad)
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("a plan with a negative drain deadline: %v", err)
	}
	if last, _, err := runs.Latest(); last != nil || err != nil {
		t.Fatalf("the refused plan left a run: %+v %v", last, err)
	}
	good := &Plan{From: "3.4.1", To: "3.4.2"}
	j, run, err := runs.Start("r2", nil, "test", good)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if last, _, err := runs.Latest(); err != nil || last == nil || last.ID != run.ID {
		t.Fatalf("after a refused plan, a good one: %+v %v", last, err)
	}
}
