package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// PreflightInput is what the checks before a run look at.
type PreflightInput struct {
	Inventory  *cluster.Inventory
	Transports map[string]cluster.Transport
	Plan       *Plan
	ChannelURL string // the index the plan was read from
	// DownloadOnly: only the cache node downloads, from the upstream.
	DownloadOnly bool
	// LockHeldByUs: the caller holds the run lock for this run.
	LockHeldByUs bool
	Runs         Runs
	Ignore       preflight.IgnoreSet
}

// Preflight checks every node, all at once, before anything changes.
func Preflight(ctx context.Context, in PreflightInput) *preflight.Report {
	probes, probeErrs := probeAll(ctx, in)
	checks := map[string][]preflight.Checker{}
	cacheNode := ""
	if in.Inventory.Cache != nil {
		cacheNode = in.Inventory.Cache.Node
	}
	th := in.Inventory.Thresholds()
	var cacheProblems map[string]error
	if in.Plan.Offline {
		cacheProblems = nodeCacheProblems(ctx, in)
	}
	for _, n := range in.Inventory.Nodes {
		name := n.Name
		p, perr := probes[name], probeErrs[name]
		unreachable := func(check string) preflight.Checker {
			return preflight.Func(check, func(context.Context) ([]error, []error) {
				return nil, []error{fmt.Errorf("could not probe the node: %v", perr)}
			})
		}
		if perr != nil {
			checks[name] = append(checks[name], unreachable(preflight.NameDiskSpace), unreachable(preflight.NameMemory))
			continue
		}
		isCache := name == cacheNode
		need := th.NodeDisk
		if isCache {
			need = th.CacheDisk
		}
		if p.DiskErr != "" {
			checks[name] = append(checks[name], failing(preflight.NameDiskSpace, "measuring free disk: "+p.DiskErr))
		}
		for i, d := range p.Disk {
			checks[name] = append(checks[name], preflight.DiskCheck{Facts: d, Need: need, CacheDir: i > 0})
		}
		if p.MemoryErr != "" {
			checks[name] = append(checks[name], failing(preflight.NameMemory, "measuring free memory: "+p.MemoryErr))
		} else {
			mem := th.NodeMemory
			if isCache || n.HasRole(release.RolePrimary) {
				mem = th.CoreMemory
			}
			checks[name] = append(checks[name], preflight.MemoryCheck{Facts: p.Memory, Need: mem, Roles: n.Roles})
		}
		if len(p.Reach) > 0 {
			checks[name] = append(checks[name], preflight.ReachCheck{Facts: p.Reach})
		}
		checks[name] = append(checks[name], customizationsCheck(p.Customized))
		if in.Plan.Offline {
			cerr := cacheProblems[name]
			checks[name] = append(checks[name], preflight.Func(preflight.NameArtifactsPresent, func(context.Context) ([]error, []error) {
				if cerr != nil {
					return nil, []error{cerr}
				}
				return nil, nil
			}))
		}
	}
	checks[""] = []preflight.Checker{
		releaseCheck(in),
		deaCapacityCheck(in, probes),
		runLockCheck(in),
		maintenanceCheck(in),
	}
	return preflight.Run(ctx, checks, in.Ignore)
}

func failing(name, msg string) preflight.Checker {
	return preflight.Func(name, func(context.Context) ([]error, []error) { return nil, []error{errors.New(msg)} })
}

// probeAll asks every node for its facts at once.
func probeAll(ctx context.Context, in PreflightInput) (map[string]*steps.ProbeFacts, map[string]error) {
	var mu sync.Mutex
	probes, errs := map[string]*steps.ProbeFacts{}, map[string]error{}
	upstream := upstreamTargets(in.ChannelURL, in.Plan)
	var g errgroup.Group
	g.SetLimit(32)
	for _, n := range in.Inventory.Nodes {
		req := &steps.ProbeRequest{Capacity: n.HasRole(release.RoleDEA)}
		isCache := in.Inventory.Cache != nil && in.Inventory.Cache.Node == n.Name
		if isCache {
			req.CacheDir = in.Inventory.Cache.Dir
		}
		switch {
		case in.DownloadOnly:
			if isCache {
				req.Reach = upstream // only the cache node downloads
			}
		case in.Plan.Offline:
		case in.Plan.CacheURL != "":
			req.Reach = []string{strings.TrimRight(in.Plan.CacheURL, "/") + "/healthz"}
		default:
			req.Reach = upstream
		}
		g.Go(func() error {
			var res steps.Result
			err := in.Transports[n.Name].Call(ctx, steps.OpProbe, steps.Request{Probe: req}, &res, nil)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && res.Probe == nil {
				err = errors.New("the agent sent no probe")
			}
			if err != nil {
				errs[n.Name] = err
			} else {
				probes[n.Name] = res.Probe
			}
			return nil
		})
	}
	_ = g.Wait()
	return probes, errs
}

// upstreamTargets is one URL per upstream origin the run reads from: the
// channel's, and each artifact host's.
func upstreamTargets(channelURL string, plan *Plan) []string {
	seen := map[string]bool{}
	var out []string
	add := func(raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return // file:// and the like: nothing to reach
		}
		if origin := u.Scheme + "://" + u.Host; !seen[origin] {
			seen[origin] = true
			out = append(out, raw)
		}
	}
	add(channelURL)
	for _, a := range plan.Artifacts() {
		add(a.URL)
	}
	return out
}

// nodeCacheProblems runs the --skip-download check, node by node.
func nodeCacheProblems(ctx context.Context, in PreflightInput) map[string]error {
	out := map[string]error{}
	err := CheckNodeCaches(ctx, in.Plan, in.Transports)
	for _, e := range unjoin(err) {
		var me *MissingArtifactsError
		if errors.As(e, &me) {
			out[me.Node] = e
		}
	}
	if err != nil && len(out) == 0 {
		for _, n := range in.Inventory.Nodes {
			out[n.Name] = err
		}
	}
	return out
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// customizationsCheck warns about local changes the upgrade would lose.
func customizationsCheck(files []string) preflight.Checker {
	return preflight.Func(preflight.NameCustomizations, func(context.Context) ([]error, []error) {
		if len(files) == 0 {
			return nil, nil
		}
		shown := files
		if len(shown) > 10 {
			shown = append(append([]string(nil), shown[:10]...), fmt.Sprintf("and %d more", len(files)-10))
		}
		return []error{fmt.Errorf("%d local change(s) the upgrade will replace or lose; save them first: %s", len(files), strings.Join(shown, ", "))}, nil
	})
}

// releaseCheck: every node is on the core's release, and the plan's path.
func releaseCheck(in PreflightInput) preflight.Checker {
	return preflight.Func(preflight.NameReleaseVersion, func(context.Context) ([]error, []error) {
		var errs []error
		for _, np := range in.Plan.Nodes {
			if np.From != in.Plan.From {
				errs = append(errs, fmt.Errorf("node %s is on %s while the core node is on %s: bring every node to the core's release first", np.Node, np.From, in.Plan.From))
			}
		}
		return nil, errs
	})
}

// deaCapacityCheck: before each DEA is retired, its instances must fit on
// the DEAs that stay (first-fit decreasing over their free memory).
func deaCapacityCheck(in PreflightInput, probes map[string]*steps.ProbeFacts) preflight.Checker {
	return preflight.Func(preflight.NameDEACapacity, func(context.Context) (warns, errs []error) {
		caps := map[string]*steps.DEACapacity{}
		var deas []string
		for _, n := range in.Inventory.Nodes {
			if !n.HasRole(release.RoleDEA) {
				continue
			}
			p := probes[n.Name]
			switch {
			case p == nil:
				warns = append(warns, fmt.Errorf("node %s: no capacity figures (the node could not be probed)", n.Name))
			case p.Capacity == nil:
				warns = append(warns, fmt.Errorf("node %s: no capacity figures: %s", n.Name, p.CapacityErr))
			default:
				caps[n.Name] = p.Capacity
				deas = append(deas, n.Name)
			}
		}
		sort.Strings(deas)
		for _, retiring := range deas {
			if missing, biggest := fitElsewhere(retiring, deas, caps); missing > 0 {
				errs = append(errs, fmt.Errorf("when DEA %s is retired, its instances need %d MB more than the other DEAs have free (largest instance %d MB): add a DEA node to the cluster first",
					retiring, missing, biggest))
			}
		}
		return warns, errs
	})
}

// fitElsewhere places the retiring DEA's instances, largest first, on the
// first other DEA with room, and returns the memory of those that fit
// nowhere.
func fitElsewhere(retiring string, deas []string, caps map[string]*steps.DEACapacity) (missing, biggest int64) {
	free := map[string]int64{}
	for _, d := range deas {
		if d != retiring {
			free[d] = caps[d].MemoryTotalMB - caps[d].MemoryUsedMB
		}
	}
	insts := append([]steps.AppInstance(nil), caps[retiring].Instances...)
	sort.Slice(insts, func(i, j int) bool { return insts[i].MemoryMB > insts[j].MemoryMB })
	for _, inst := range insts {
		placed := false
		for _, d := range deas {
			if d != retiring && free[d] >= inst.MemoryMB {
				free[d] -= inst.MemoryMB
				placed = true
				break
			}
		}
		if !placed {
			missing += inst.MemoryMB
			if inst.MemoryMB > biggest {
				biggest = inst.MemoryMB
			}
		}
	}
	return missing, biggest
}

func runLockCheck(in PreflightInput) preflight.Checker {
	return preflight.Func(preflight.NameRunLock, func(context.Context) ([]error, []error) {
		if in.DownloadOnly {
			return nil, nil // it changes no node: it may run beside a run
		}
		if !in.LockHeldByUs {
			held, holder, err := in.Runs.LockHeld()
			if err != nil {
				return nil, []error{fmt.Errorf("reading the run lock: %v", err)}
			}
			if held {
				return nil, []error{fmt.Errorf("another sentinel run holds the lock (%s): wait for it to finish", holder)}
			}
		}
		last, _, err := in.Runs.Latest()
		if err != nil {
			return nil, []error{fmt.Errorf("reading the last run: %v", err)}
		}
		if last != nil && !last.Finished() {
			return nil, []error{fmt.Errorf("run %s did not finish (it stopped at %s): finish it with `sentinel upgrade --resume`", last.ID, last.Where())}
		}
		return nil, nil
	})
}

// maintenanceCheck asks the cluster's maintenance hook whether the cluster
// is in maintenance mode, as the product's docs advise before an upgrade.
func maintenanceCheck(in PreflightInput) preflight.Checker {
	return preflight.Func(preflight.NameMaintenanceMode, func(ctx context.Context) ([]error, []error) {
		if in.DownloadOnly {
			return nil, nil // download-only runs while the cluster works normally
		}
		hook := in.Inventory.MaintenanceHook
		if hook == "" {
			return []error{errors.New("no maintenance_hook in the cluster file, so sentinel cannot tell: put the cluster in maintenance mode first (kato config set cloud_controller_ng maintenance_mode true)")}, nil
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", hook).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return nil, nil
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return []error{errors.New("the cluster is not in maintenance mode: API requests keep changing it during the upgrade; turn it on first (kato config set cloud_controller_ng maintenance_mode true)")}, nil
		default:
			return []error{fmt.Errorf("the maintenance_hook %q failed: %v %s", hook, err, strings.TrimSpace(string(out)))}, nil
		}
	})
}
