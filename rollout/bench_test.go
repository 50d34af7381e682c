package rollout

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// benchCluster scales the docs' larger cluster to n nodes: a core, and of
// the others about 60% DEAs, 10% routers, 5% controllers, the rest data
// services on nodes of their own.
func benchCluster(n int) []cluster.Node {
	nodes := []cluster.Node{{Name: "core", Roles: []string{"primary", "controller", "router"}}}
	deas, routers, controllers := (n-1)*6/10, max((n-1)/10, 1), max((n-1)/20, 1)
	for i := 1; i < n; i++ {
		var roles []string
		switch {
		case i <= deas:
			roles = []string{release.RoleDEA}
		case i <= deas+routers:
			roles = []string{release.RoleRouter}
		case i <= deas+routers+controllers:
			roles = []string{release.RoleController}
		default:
			roles = []string{[]string{"mysql", "postgresql", "redis", "rabbit", "filesystem", "mongodb"}[i%6]}
		}
		nodes = append(nodes, cluster.Node{Name: fmt.Sprintf("%s-%d", roles[0], i), Roles: roles})
	}
	return nodes
}

// benchPlan gives every node the shape of a real node plan: DEAs retire
// first and unretire last.
func benchPlan(nodes []cluster.Node, stepsPerNode, maxInFlight int) *Plan {
	p := &Plan{From: "3.4.1", To: "3.4.2", MaxInFlight: maxInFlight}
	ops := []string{steps.OpFetch, steps.OpBackup, steps.OpInstall, steps.OpStop, steps.OpMigrate, steps.OpSwitch, steps.OpStart, steps.OpHealth}
	for _, n := range OrderBy(nodes, nil) {
		np := NodePlan{Node: n.Name, Roles: n.Roles, From: "3.4.1"}
		dea := n.HasRole(release.RoleDEA)
		if dea {
			np.Steps = append(np.Steps, Step{ID: "retire", Op: steps.OpRetire})
		}
		for len(np.Steps) < stepsPerNode-1 {
			op := ops[len(np.Steps)%len(ops)]
			np.Steps = append(np.Steps, Step{ID: fmt.Sprintf("%d/%s", len(np.Steps), op), Op: op})
		}
		last := Step{ID: "commit", Op: steps.OpCommit}
		if dea {
			last = Step{ID: "unretire", Op: steps.OpUnretire}
		}
		np.Steps = append(np.Steps, last)
		p.Nodes = append(p.Nodes, np)
	}
	return p
}

// BenchmarkRollout measures the orchestrator's own cost: every node is
// in-process and each step takes a fixed hook time, so what the run takes
// beyond the critical path the role rules allow (DEAs one at a time, the
// core last) is the journal, the scheduling and the capacity checks.
//
//	wall/critical   the run's wall time over the critical path, every
//	                hook counted at what a 5 ms sleep takes here with
//	                nothing else running, measured before and after the
//	                run (goal: <= 1.05)
//	wall/critical-per-call  the same, each node counted at what its own
//	                calls took in this run: more lenient, it takes a host's
//	                noise during the run off the run, but also any lateness
//	                in taking up an answer that the orchestrator's own load
//	                causes; it tells the two apart only beside the other
//	wall/nominal-critical  the same with hooks at their nominal duration
//	hook-ms         what a 5 ms hook took on average in the run
//	calibrated-ms   what it took before and after the run
//	overhead-µs/node (wall - critical path) / nodes
//	peak-RSS-MiB    the process's high-water mark after the run
//	fsyncs/record   journal fsyncs per record: below 1 as steps that
//	                finish together share one (group commit), and as a
//	                step's success rides with the next record's fsync
func BenchmarkRollout(b *testing.B) {
	const hook = 5 * time.Millisecond
	const stepsPerNode = 12
	for _, n := range []int{20, 100, 500} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			nodes := benchCluster(n)
			var deas []string
			tr := map[string]cluster.Transport{}
			calls := &benchCalls{}
			for _, nd := range nodes {
				if nd.HasRole(release.RoleDEA) {
					deas = append(deas, nd.Name)
				}
				tr[nd.Name] = benchNode{name: nd.Name, hook: hook, calls: calls}
			}
			var wall, perCall, calibrated, nominal, hookTook, calib time.Duration
			var syncs, records float64
			for i := 0; i < b.N; i++ {
				plan := benchPlan(nodes, stepsPerNode, 8)
				runs := Runs{Dir: b.TempDir()}
				j, run, err := runs.Start(fmt.Sprint("bench-", i), nil, "bench", plan)
				if err != nil {
					b.Fatal(err)
				}
				x := &Executor{Journal: j, Progress: quietProgress{}, Transports: tr, DEAs: deas}
				before := calibrate(hook)
				calls.reset()
				start := time.Now()
				if err := x.Execute(context.Background(), run); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				syncs += float64(j.Syncs())
				records += float64(run.Records)
				j.Close()
				// The critical path is counted in what a hook takes here
				// when idle, so that only the orchestrator's own time is
				// measured against it; and, beside it, in what each call
				// really took.
				idle := (before + calibrate(hook)) / 2
				perCall += criticalPath(plan, calls.costs(plan))
				calibrated += criticalPath(plan, benchCost(idle))
				nominal += criticalPath(plan, benchCost(hook))
				hookTook += calls.mean()
				calib += idle
			}
			b.ReportMetric(float64(wall)/float64(calibrated), "wall/critical")
			b.ReportMetric(float64(wall)/float64(perCall), "wall/critical-per-call")
			b.ReportMetric(float64(wall)/float64(nominal), "wall/nominal-critical")
			b.ReportMetric(float64(wall-calibrated)/float64(b.N)/float64(n)/1e3, "overhead-µs/node")
			b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
			b.ReportMetric(float64(hookTook)/float64(b.N)/1e6, "hook-ms")
			b.ReportMetric(float64(calib)/float64(b.N)/1e6, "calibrated-ms")
			b.ReportMetric(syncs/records, "fsyncs/record")
		})
	}
}

// criticalPath is how long the plan takes under the scheduling rules with
// no overhead at all, each node taking cost.
func criticalPath(plan *Plan, cost func(NodePlan) float64) time.Duration {
	var end float64
	for _, sl := range Simulate(plan, cost) {
		end = max(end, sl.End)
	}
	return time.Duration(end)
}

// calibrate measures how long a hook of d takes here with nothing else
// running.
func calibrate(d time.Duration) time.Duration {
	const n = 100
	start := time.Now()
	for i := 0; i < n; i++ {
		hookWait(d)
	}
	return time.Since(start) / n
}

// hookWait is a node taking d to answer. A node's answer wakes the
// orchestrator through a file descriptor (its agent's pipe, its SSH
// channel) as soon as it comes; a Go timer would instead wake through the
// runtime's poller, whose wait is rounded to whole milliseconds and is
// late when another thread's syscall (a journal fsync) ends meanwhile:
// lateness of the benchmark's own, not the orchestrator's. A kernel sleep
// on the goroutine's thread ends on time.
func hookWait(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

// benchCalls keeps when each call of a run began and ended, on which node.
type benchCalls struct {
	mu    sync.Mutex
	calls []benchCall
}

type benchCall struct {
	node, op   string
	start, end time.Time
}

func (c *benchCalls) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = c.calls[:0]
}

func (c *benchCalls) add(node, op string, start, end time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, benchCall{node, op, start, end})
}

func (c *benchCalls) mean() time.Duration {
	var total time.Duration
	for _, call := range c.calls {
		total += call.end.Sub(call.start)
	}
	return total / time.Duration(max(len(c.calls), 1))
}

// costs is each node's share of the critical path at what its calls took
// in the run: its steps, and for a DEA its capacity check, which is its
// own probe and then the first answer of the others' (every DEA in the
// benchmark has room for another's instances, so the first answer ends
// the check).
func (c *benchCalls) costs(plan *Plan) func(NodePlan) float64 {
	took := map[string]time.Duration{}
	var ownProbe, retire = map[string]benchCall{}, map[string]benchCall{}
	var probes []benchCall
	for _, call := range c.calls {
		switch call.op {
		case steps.OpProbe:
			probes = append(probes, call)
		case steps.OpRetire:
			retire[call.node] = call
		}
		if call.op != steps.OpProbe {
			took[call.node] += call.end.Sub(call.start)
		}
	}
	// A DEA's own probe is the last one it answered before its
	// retirement: other DEAs' checks probed it earlier.
	for _, p := range probes {
		if rt, ok := retire[p.node]; ok && p.end.Before(rt.start) && p.start.After(ownProbe[p.node].start) {
			ownProbe[p.node] = p
		}
	}
	for node, own := range ownProbe {
		rt := retire[node]
		first := time.Duration(0)
		for _, p := range probes {
			if p.node != node && !p.start.Before(own.end) && p.end.Before(rt.start) && (first == 0 || p.end.Sub(p.start) < first) {
				first = p.end.Sub(p.start)
			}
		}
		took[node] += own.end.Sub(own.start) + first
	}
	return func(np NodePlan) float64 { return float64(took[np.Node]) }
}

// benchCost is a node's share of the critical path: its steps, and for a
// DEA the two capacity probes of its retirement (its own, then the others'
// at once), each taking the hook time.
func benchCost(hook time.Duration) func(NodePlan) float64 {
	return func(np NodePlan) float64 {
		n := len(np.Steps)
		if slices.Contains(np.Roles, release.RoleDEA) {
			n += 2
		}
		return float64(n) * float64(hook)
	}
}

// benchNode answers every call, capacity probes too, after the fixed hook
// time.
type benchNode struct {
	name  string
	hook  time.Duration
	calls *benchCalls
}

func (n benchNode) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	hookWait(n.hook)
	n.calls.add(n.name, op, start, time.Now())
	{
		if op == steps.OpProbe {
			// Every DEA half full of 256 MB instances: a retiring DEA's
			// instances fit on the next one.
			insts := make([]steps.AppInstance, 8)
			for i := range insts {
				insts[i] = steps.AppInstance{App: fmt.Sprint("app-", i), MemoryMB: 256}
			}
			out.(*steps.Result).Probe = &steps.ProbeFacts{Capacity: &steps.DEACapacity{MemoryTotalMB: 4096, MemoryUsedMB: 2048, Instances: insts}}
		}
		return nil
	}
}

// peakRSSMiB reads the process's resident-memory high-water mark.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
