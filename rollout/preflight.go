package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/cache"
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
	// CacheURL is the cache daemon --cache-ip names, for download-only
	// (an upgrade's plan carries its own).
	CacheURL string
	// CachePeer verifies the cache daemon, from each node as its fetches
	// will (see cluster.Inventory.CachePeer).
	CachePeer cache.Peer
	// LockHeldByUs: the caller holds the run lock for this run.
	LockHeldByUs bool
	Runs         Runs
	// Proxy is the operator's proxy settings, sent to every node's probe
	// (nil: each node's own environment).
	Proxy  *release.ProxySettings
	Ignore preflight.IgnoreSet
}

// Preflight checks every node, all at once, before anything changes.
func Preflight(ctx context.Context, in PreflightInput) *preflight.Report {
	cacheNode := in.cacheNode()
	probes, clocks, probeErrs := probeAll(ctx, in, cacheNode)
	checks := map[string][]preflight.Checker{}
	th := in.Inventory.Thresholds()
	var cacheProblems map[string]error
	if in.Plan.Offline {
		cacheProblems = nodeCacheProblems(ctx, in)
	}
	for _, n := range in.Inventory.Nodes {
		name := n.Name
		if in.DownloadOnly && name != cacheNode {
			continue // download-only changes no node: only the cache node works
		}
		p, perr := probes[name], probeErrs[name]
		if perr != nil && in.outsideRun(name) {
			checks[name] = []preflight.Checker{warning(preflight.NameNodeReachable,
				fmt.Errorf("could not probe the node (%v); the run leaves it as it is, so it need not answer", perr))}
			continue
		}
		if perr != nil {
			checks[name] = []preflight.Checker{failing(preflight.NameNodeReachable,
				preflight.Unignorable(fmt.Errorf("could not probe the node, so nothing is known about it: %v", perr)))}
			continue
		}
		isCache := name == cacheNode
		cached := map[string]bool{}
		for _, d := range p.Cached {
			cached[d] = true
		}
		var np *NodePlan
		if !in.DownloadOnly {
			np = in.Plan.nodePlan(name)
		}
		need, why, staged := diskNeed(th, isCache, np, cached)
		if p.DiskErr != "" {
			checks[name] = append(checks[name], failing(preflight.NameDiskSpace, errors.New("measuring free disk: "+p.DiskErr)))
		}
		for _, d := range p.Disk {
			isCacheDir := isCache && in.Inventory.Cache != nil && strings.HasPrefix(in.Inventory.Cache.Dir, d.Mount)
			checks[name] = append(checks[name], preflight.DiskCheck{Facts: d, Need: need, Why: why, Staged: staged, CacheDir: isCacheDir})
		}
		if p.MemoryErr != "" {
			checks[name] = append(checks[name], failing(preflight.NameMemory, errors.New("measuring free memory: "+p.MemoryErr)))
		} else {
			checks[name] = append(checks[name], preflight.MemoryCheck{Facts: p.Memory, Need: th.MemoryNeed(n.Roles, isCache), Roles: n.Roles})
		}
		if len(p.Reach) > 0 {
			checks[name] = append(checks[name], preflight.ReachCheck{Facts: p.Reach})
		}
		checks[name] = append(checks[name], clocks[name])
		if in.DownloadOnly {
			continue
		}
		checks[name] = append(checks[name], customizationsCheck(p.Customized))
		if in.Plan.Offline {
			cerr := cacheProblems[name]
			checks[name] = append(checks[name], preflight.Func(preflight.NameArtifactsPresent, func(context.Context) ([]error, []error) {
				if cerr != nil {
					// --skip-download promises to refuse before any change.
					return nil, []error{preflight.Unignorable(cerr)}
				}
				return nil, nil
			}))
		}
	}
	if in.DownloadOnly {
		checks[""] = []preflight.Checker{cacheNodeKnown(in, cacheNode)}
	} else {
		checks[""] = []preflight.Checker{
			releaseCheck(in),
			deaCapacityCheck(in, probes),
			runLockCheck(in),
			maintenanceCheck(in),
		}
	}
	return preflight.Run(ctx, checks, in.Ignore)
}

// cacheNode is the node the cache daemon runs on: the one --cache-ip names,
// else the cluster file's cache node.
func (in PreflightInput) cacheNode() string {
	if in.CacheURL != "" {
		if u, err := url.Parse(in.CacheURL); err == nil {
			for _, n := range in.Inventory.Nodes {
				if n.Address == u.Hostname() {
					return n.Name
				}
			}
		}
		return ""
	}
	if in.Inventory.Cache != nil {
		return in.Inventory.Cache.Node
	}
	return ""
}

// cacheNodeKnown warns when --cache-ip names no node of the cluster: its
// disk and memory then go unchecked.
func cacheNodeKnown(in PreflightInput, node string) preflight.Checker {
	return preflight.Func(preflight.NameDiskSpace, func(context.Context) ([]error, []error) {
		if node != "" {
			return nil, nil
		}
		return []error{fmt.Errorf("the cache daemon %s is on no node of this cluster: its free disk (10 GiB) and memory are not checked", in.CacheURL)}, nil
	})
}

func failing(name string, err error) preflight.Checker {
	return preflight.Func(name, func(context.Context) ([]error, []error) { return nil, []error{err} })
}

func warning(name string, err error) preflight.Checker {
	return preflight.Func(name, func(context.Context) ([]error, []error) { return []error{err}, nil })
}

// probeAll asks every node for its facts, and then its clock, at once.
func probeAll(ctx context.Context, in PreflightInput, cacheNode string) (map[string]*steps.ProbeFacts, map[string]preflight.Checker, map[string]error) {
	// A node that cannot answer in time is reported, not waited for.
	ctx, cancel := context.WithTimeout(ctx, probeDeadline)
	defer cancel()
	var mu sync.Mutex
	probes, errs := map[string]*steps.ProbeFacts{}, map[string]error{}
	clocks := map[string]preflight.Checker{}
	upstream := upstreamTargets(in.ChannelURL, in.Plan)
	var g errgroup.Group
	g.SetLimit(32)
	for _, n := range in.Inventory.Nodes {
		isCache := n.Name == cacheNode
		if in.DownloadOnly && !isCache {
			continue
		}
		req := &steps.ProbeRequest{Capacity: n.HasRole(release.RoleDEA) && !in.DownloadOnly, MemoryCgroup: n.MemoryCgroup, Proxy: in.Proxy}
		if !in.DownloadOnly {
			req.Artifacts = in.Plan.nodePlan(n.Name).fetchDigests()
		}
		if isCache && in.Inventory.Cache != nil {
			req.CacheDir = in.Inventory.Cache.Dir
		}
		switch {
		case in.DownloadOnly:
			req.Reach = upstream // only the cache node downloads
		case in.Plan.Offline:
		case in.Plan.CacheURL != "":
			// Fetches from the cluster's cache daemon go direct: so does this.
			req.ReachDirect = []string{cache.HealthURL(in.Plan.CacheURL)}
			if in.CachePeer.TLS() {
				req.CachePeer = &in.CachePeer
			}
		default:
			req.Reach = upstream
		}
		g.Go(func() error {
			var res steps.Result
			err := in.Transports[n.Name].Call(ctx, steps.OpProbe, steps.Request{Probe: req}, &res, nil)
			if err == nil && res.Probe == nil {
				err = errors.New("the agent sent no probe")
			}
			var clock preflight.Checker
			if err == nil {
				clock = readClock(ctx, in.Transports[n.Name])
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[n.Name] = err
			} else {
				probes[n.Name], clocks[n.Name] = res.Probe, clock
			}
			return nil
		})
	}
	_ = g.Wait()
	return probes, clocks, errs
}

// readClock compares the node's clock with ours, in a call of its own so
// that the round trip, whose half bounds the error, is short.
func readClock(ctx context.Context, tr cluster.Transport) preflight.Checker {
	var res steps.Result
	sent := time.Now()
	err := tr.Call(ctx, steps.OpClock, steps.Request{}, &res, nil)
	received := time.Now()
	if err == nil && res.Clock == 0 {
		err = errors.New("the agent sent no time")
	}
	if err != nil {
		return failing(preflight.NameClockSkew, fmt.Errorf("reading the node's clock: %w", err))
	}
	return preflight.ClockCheck{Facts: preflight.ClockSkew(sent, received, time.Unix(0, res.Clock))}
}

// probeDeadline bounds the probe of one node (reachability targets run at
// once on the node, each within its own timeout).
const probeDeadline = 90 * time.Second

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
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if origin := u.Scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port; !seen[origin] {
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

// outsideRun reports whether the plan leaves the node as it is.
func (in PreflightInput) outsideRun(node string) bool {
	for _, np := range in.Plan.Nodes {
		if np.Node == node {
			return np.Skip != ""
		}
	}
	return false
}

// leftBehind says why the cluster's last run, done, left node behind (the
// operator excluded it, or it failed within the budget), or "".
func (in PreflightInput) leftBehind(node string) string {
	last, _, err := in.Runs.Latest()
	if err != nil || last == nil || !last.Done() {
		return ""
	}
	for _, x := range last.Excluded {
		if x.Node == node {
			return fmt.Sprintf("excluded from run %s by %s@%s (%s)", last.ID, x.By, x.Host, x.Reason)
		}
	}
	if slices.Contains(last.FailedNodes, node) {
		return fmt.Sprintf("failed in run %s and rolled back", last.ID)
	}
	return ""
}

// releaseCheck: every node is on the core's release, and the plan's path;
// a node the last run left behind is caught up.
func releaseCheck(in PreflightInput) preflight.Checker {
	return preflight.Func(preflight.NameReleaseVersion, func(context.Context) ([]error, []error) {
		var warns, errs []error
		core := release.MustVersion(in.Plan.From)
		for _, np := range in.Plan.Nodes {
			if in.Plan.Kind != "" && np.Skip != "" {
				continue // a patch run leaves a node on another release alone
			}
			// A node already on the target (a run that failed on another
			// node) is fine; one behind the core is not.
			v, err := release.ParseVersion(np.From)
			if err != nil || v.Compare(core) >= 0 {
				continue
			}
			if why := in.leftBehind(np.Node); why != "" {
				does := "this run catches it up"
				if np.Skip != "" {
					does = "this run leaves it so"
				}
				warns = append(warns, fmt.Errorf("node %s is on %s, behind the core node's %s: %s; %s", np.Node, np.From, in.Plan.From, why, does))
				continue
			}
			errs = append(errs, fmt.Errorf("node %s is on %s, behind the core node's %s: a cluster moves from one release, so bring that node to %s first", np.Node, np.From, in.Plan.From, in.Plan.From))
		}
		return warns, errs
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
		retires := map[string]bool{}
		for _, np := range in.Plan.Nodes {
			// Only DEAs the run retires move their apps (a patch that does
			// not restart the DEA component retires none).
			retires[np.Node] = slices.ContainsFunc(np.Steps, func(s Step) bool { return s.Op == steps.OpRetire })
		}
		incomplete := ""
		if len(warns) > 0 {
			incomplete = " (some DEAs gave no figures, so they were not counted)"
		}
		for _, retiring := range deas {
			if !retires[retiring] {
				continue // not upgraded by this run
			}
			missing, biggest := fitElsewhere(retiring, deas, caps)
			switch {
			case missing == 0:
			case len(deas) == 1:
				warns = append(warns, fmt.Errorf("DEA %s is the only DEA: its %d MB of app instances stop while it is upgraded; add a DEA node first to avoid downtime", retiring, caps[retiring].MemoryUsedMB))
			default:
				errs = append(errs, fmt.Errorf("when DEA %s is retired, its instances need %d MB more than the other DEAs have free (largest instance %d MB)%s: add a DEA node to the cluster first",
					retiring, missing, biggest, incomplete))
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

const maintenanceHookTimeout = 20 * time.Second

// maintenanceCheck asks the cluster's maintenance hook whether the cluster
// is in maintenance mode, as the product's docs advise before an upgrade.
func maintenanceCheck(in PreflightInput) preflight.Checker {
	return preflight.Func(preflight.NameMaintenanceMode, func(ctx context.Context) ([]error, []error) {
		if in.DownloadOnly || in.Plan.Maintenance {
			return nil, nil // download-only runs while the cluster works normally; or the run switches it
		}
		hook := in.Inventory.MaintenanceHook
		if hook == "" {
			return []error{errors.New("no maintenance_hook in the cluster file, so sentinel cannot tell: put the cluster in maintenance mode first (kato config set cloud_controller_ng maintenance_mode true)")}, nil
		}
		// Shorter than the check's own limit, so a hung hook is a warning.
		ctx, cancel := context.WithTimeout(ctx, maintenanceHookTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			return []error{fmt.Errorf("the maintenance_hook %q did not answer within %s, so sentinel cannot tell whether maintenance mode is on", hook, maintenanceHookTimeout)}, nil
		case err == nil:
			return nil, nil
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return []error{errors.New("the cluster is not in maintenance mode: API requests keep changing it during the upgrade; turn it on first (kato config set cloud_controller_ng maintenance_mode true)")}, nil
		default:
			return []error{fmt.Errorf("the maintenance_hook %q failed: %v %s", hook, err, strings.TrimSpace(string(out)))}, nil
		}
	})
}
