package rollout

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// A staging run only fetches, and nodes that an upgrade keeps apart (DEAs,
// the core) fetch together, up to the bound and never beyond it.
func TestStageFetchesAllNodesAtOnceWithinTheBound(t *testing.T) {
	up := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: 1, Maintenance: true, Source: "https://10.0.0.1:9077", CacheURL: "https://10.0.0.1:9077"}
	for _, n := range []struct{ name, role string }{{"dea-1", "dea"}, {"dea-2", "dea"}, {"dea-3", "dea"}, {"router-1", "router"}, {"router-2", "router"}, {"core", "primary"}} {
		up.Nodes = append(up.Nodes, NodePlan{Node: n.name, Roles: []string{n.role}, Steps: []Step{
			{ID: "retire", Op: steps.OpRetire},
			{ID: "3.4.2/nats/fetch", Op: steps.OpFetch, Request: steps.Request{Artifact: release.Artifact{SHA256: n.name, Size: 100}}},
			{ID: "3.4.2/nats/stop", Op: steps.OpStop},
			{ID: "3.4.2/nats/install", Op: steps.OpInstall},
			{ID: "3.4.2/nats/start", Op: steps.OpStart},
		}})
	}
	const parallel = 3
	plan := StagePlan(up, parallel)
	if plan.Kind != KindStage || plan.Maintenance || plan.StagedBytes() != 600 || plan.CacheURL != up.CacheURL {
		t.Fatalf("stage plan: kind %q, maintenance %v, %d bytes, cache %q; want kind stage, no maintenance, 600 bytes, the upgrade's cache", plan.Kind, plan.Maintenance, plan.StagedBytes(), plan.CacheURL)
	}

	var (
		mu              sync.Mutex
		inFlight, most  int
		ops             = map[string][]string{}
		firstWave       = make(chan struct{})
		firstWaveClosed bool
	)
	node := func(name string) cluster.Transport {
		return nodeFunc(func(ctx context.Context, op string, in any) error {
			mu.Lock()
			ops[name] = append(ops[name], op)
			inFlight++
			most = max(most, inFlight)
			if inFlight == parallel && !firstWaveClosed {
				firstWaveClosed = true
				close(firstWave)
			}
			mu.Unlock()
			// The first nodes wait until the bound is reached: under the
			// upgrade's role rules it never would be.
			select {
			case <-firstWave:
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
			return nil
		})
	}
	tr := map[string]cluster.Transport{}
	for _, np := range plan.Nodes {
		tr[np.Node] = node(np.Node)
	}
	runs := Runs{Dir: t.TempDir()}
	j, run, err := runs.Start("stage-1", []string{"sentinel", "upgrade", "3.4.2", "--stage"}, "test", plan)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard, not a wait
	defer cancel()
	if err := (&Executor{Journal: j, Progress: quietProgress{}, Transports: tr}).Execute(ctx, run); err != nil {
		t.Fatalf("staging run: %v", err)
	}
	if most != parallel {
		t.Errorf("at most %d nodes fetched at once, want exactly the bound %d", most, parallel)
	}
	for _, np := range plan.Nodes {
		if got := ops[np.Node]; len(got) != 1 || got[0] != steps.OpFetch {
			t.Errorf("%s received %v, want only its fetch", np.Node, got)
		}
	}
	if !run.Done() {
		t.Errorf("staging run status %q, want succeeded", run.Status)
	}
}

// A failed run says what the node keeps in words of its own kind: only a
// patch run has a patch to leave unrecorded.
func TestFailedRunSaysWhatTheNodeKeeps(t *testing.T) {
	for kind, want := range map[string]string{
		"":              "node.json unchanged",
		KindRestart:     "node.json unchanged",
		"patch-install": "the patch is not recorded on that node",
	} {
		plan := &Plan{From: "3.4.1", To: "3.4.2", Kind: kind, MaxInFlight: 1, Nodes: []NodePlan{{Node: "router-1", Roles: []string{"router"}, Steps: []Step{
			{ID: "3.4.2/nats/health", Op: steps.OpHealth, Release: "3.4.2", Component: "nats"},
		}}}}
		failing := nodeFunc(func(context.Context, string, any) error { return errors.New("nats answers 503") })
		runs := Runs{Dir: t.TempDir()}
		j, run, err := runs.Start("run-1", []string{"sentinel"}, "test", plan)
		if err != nil {
			t.Fatal(err)
		}
		err = (&Executor{Journal: j, Progress: quietProgress{}, Transports: map[string]cluster.Transport{"router-1": failing}}).Execute(t.Context(), run)
		j.Close()
		if err == nil || !strings.Contains(err.Error(), want) || (!strings.HasPrefix(kind, "patch") && strings.Contains(err.Error(), "patch")) {
			t.Errorf("a failed %q run says %v; want it to say %q", kind, err, want)
		}
	}
}
