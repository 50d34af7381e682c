package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// watch runs a watch step: every component of the node is asked for its
// health at once and then every WatchInterval until the plan's watch time
// has passed since the step began. A check fails when the health hook
// fails twice in a row, one interval apart; the step then fails, and the
// node is rolled back like after any failed health step. The watch is
// real time: it is what makes a component that falls over after its
// start caught before the next node follows.
func (x *Executor) watch(ctx context.Context, run *Run, node string, s Step) (steps.Result, error) {
	d := time.Duration(run.Plan.WatchTime)
	every := x.WatchInterval
	if every <= 0 {
		every = min(time.Second, max(d/2, 10*time.Millisecond))
	}
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for checks := 1; ; checks++ {
		for _, it := range s.Request.Restart {
			req := steps.Request{Component: it.Component, Version: it.Version, Hooks: it.Hooks}
			req.Hooks.Health.Retries, req.Hooks.Health.Interval = 1, release.Duration(every)
			var res steps.Result
			if err := x.Transports[node].Call(ctx, steps.OpHealth, req, &res, nil); err != nil {
				return steps.Result{}, watchFailed(err, it.Component, it.Version, time.Since(start), d)
			}
		}
		if time.Since(start) >= d {
			return steps.Result{Note: fmt.Sprintf("healthy for the %s watch (%d checks of %d components)", d, checks, len(s.Request.Restart))}, nil
		}
		select {
		case <-ctx.Done():
			return steps.Result{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// watchFailed says which component turned unhealthy, and when; an agent
// error keeps its hook output.
func watchFailed(err error, component, version string, after, watch time.Duration) error {
	var ae *cluster.AgentError
	if !errors.As(err, &ae) {
		return err // unreachable, or cancelled: not a verdict on the component
	}
	c := *ae
	c.Op = OpWatch
	c.Message = fmt.Sprintf("%s %s turned unhealthy %s into the %s watch: %s", component, version, after.Round(100*time.Millisecond), watch, ae.Message)
	return &c
}

// canaries picks, for each redundant role, the first Plan.Canaries nodes
// in plan order that have work: they go first within their role's turn,
// each alone. The core node is never one: it goes last.
func canaries(p *Plan) map[string]bool {
	out := map[string]bool{}
	if p.Canaries <= 0 {
		return out
	}
	counts := roleCounts(p.Nodes)
	picked := map[string]int{}
	for _, np := range p.Nodes {
		if np.Skip != "" || isCore(np) {
			continue
		}
		for _, r := range np.Roles {
			if r != release.RoleBase && counts[r] >= 2 && picked[r] < p.Canaries {
				out[np.Node] = true
				break
			}
		}
		if out[np.Node] {
			for _, r := range np.Roles {
				picked[r]++
			}
		}
	}
	return out
}
