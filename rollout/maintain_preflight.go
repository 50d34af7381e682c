package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// MaintainPreflight checks, before a maintenance run changes anything,
// that every node of the run answers and its clock is right, that the
// action's package mirror (when the cluster file names one) answers from
// each node through the operator's proxy, and that each DEA's instances fit
// on the other DEAs. Nothing is installed, so disk and memory are the
// action's own business.
func MaintainPreflight(ctx context.Context, in PreflightInput, mirror string) *preflight.Report {
	ctx, cancel := context.WithTimeout(ctx, probeDeadline)
	defer cancel()
	var mu sync.Mutex
	probes := map[string]*steps.ProbeFacts{}
	checks := map[string][]preflight.Checker{}
	var g errgroup.Group
	g.SetLimit(32)
	for _, n := range in.Inventory.Nodes {
		if in.outsideRun(n.Name) && !n.HasRole(release.RoleDEA) {
			continue
		}
		req := &steps.ProbeRequest{Capacity: n.HasRole(release.RoleDEA), MemoryCgroup: n.MemoryCgroup, Proxy: in.Proxy}
		if mirror != "" && !in.outsideRun(n.Name) {
			req.Reach = []string{mirror}
		}
		g.Go(func() error {
			var res steps.Result
			err := in.Transports[n.Name].Call(ctx, steps.OpProbe, steps.Request{Probe: req}, &res, nil)
			if err == nil && res.Probe == nil {
				err = errors.New("the agent sent no probe")
			}
			var node []preflight.Checker
			switch {
			case err != nil && in.outsideRun(n.Name):
				node = append(node, warning(preflight.NameNodeReachable, fmt.Errorf("could not probe the DEA (%v): the capacity check cannot count its room", err)))
			case err != nil:
				node = append(node, failing(preflight.NameNodeReachable, preflight.Unignorable(fmt.Errorf("could not probe the node: %v", err))))
			default:
				if len(res.Probe.Reach) > 0 {
					node = append(node, preflight.ReachCheck{Facts: res.Probe.Reach})
				}
				if !in.outsideRun(n.Name) {
					node = append(node, readClock(ctx, in.Transports[n.Name]))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			checks[n.Name] = node
			if err == nil {
				probes[n.Name] = res.Probe
			}
			return nil
		})
	}
	_ = g.Wait()
	checks[""] = []preflight.Checker{deaCapacityCheck(in, probes), runLockCheck(in)}
	return preflight.Run(ctx, checks, in.Ignore)
}
