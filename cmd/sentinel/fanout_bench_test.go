package main

// BenchmarkFanOut: one release fanned out to every node cache of a lab by
// `sentinel upgrade VERSION --stage`, from each source in turn, the node
// caches emptied between sources, all measured in one run so the ratios
// compare like with like on whatever else the machine is doing.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// The benchmark's size, from the environment: quick development runs take
// SENTINEL_BENCH_FANOUT_NODES=10 SENTINEL_BENCH_FANOUT_MIB=8.
const (
	fanoutNodesEnv    = "SENTINEL_BENCH_FANOUT_NODES"    // default 100
	fanoutMiBEnv      = "SENTINEL_BENCH_FANOUT_MIB"      // default 64
	fanoutParallelEnv = "SENTINEL_BENCH_FANOUT_PARALLEL" // default rollout.DefaultStageParallel
)

const (
	fanoutFrom = "3.4.1"
	fanoutTo   = "3.4.2"
	// fanoutBig is the component whose artifact carries the payload: its
	// role is base, so every node needs it.
	fanoutBig  = "logyard"
	fanoutRepo = "/sentinel/stable"
	fanoutCurl = "curl-from-daemon"
)

type fanoutSize struct{ nodes, mib, parallel int }

func fanoutSizeFromEnv(b *testing.B) fanoutSize {
	get := func(name string, def, max int) int { return benchEnvInt(b, name, def, max) }
	// 254 nodes at most: each has an address of its own in 127.0.0.0/24.
	return fanoutSize{nodes: get(fanoutNodesEnv, 100, 254), mib: get(fanoutMiBEnv, 64, 4096),
		parallel: get(fanoutParallelEnv, rollout.DefaultStageParallel, 256)}
}

// fanout is the benchmark's lab and its sources: the cache daemon (filled
// with --download-only), the registry with bearer tokens the channel was
// pushed to (regs.Origin), and two pull-through mirrors of it.
type fanout struct {
	b       *testing.B
	size    fanoutSize
	lab     *testLab
	regs    *fixtures.RegistrySet
	mirrors [2]*fixtures.Registry
	big     string // the payload artifact's sha256
	setup   time.Duration
	served  string // the mirrors the payload went through
}

func newFanout(b *testing.B, sz fanoutSize) *fanout {
	opt := fixtures.LabOptions{Nodes: sz.nodes, Release: fanoutFrom}
	// Only the target release's artifact is large: the lab installs the
	// starting release on every node, which stays small.
	opt.Channel.PayloadBytes = map[string]int64{fanoutBig: int64(sz.mib) << 20}
	opt.Channel.PayloadReleases = []string{fanoutTo}
	f := &fanout{b: b, size: sz, lab: newLabWith(b, opt)}
	for _, c := range f.lab.manifest(fanoutTo).Components {
		if c.Name == fanoutBig {
			f.big = c.Artifact.SHA256
		}
	}

	// The daemon's request log goes to a file, not the benchmark's output.
	f.lab.startCache(nil, "--log-file", filepath.Join(f.lab.Dir, "cache-daemon.log"))
	f.lab.mustSucceed("upgrade", fanoutTo, "--download-only", "--cache-ip", f.lab.cacheIP)

	regs, err := fixtures.StartRegistrySet(b.TempDir(), "operator", "registry-pass")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(regs.Close)
	f.regs = regs
	f.mirrors[0] = regs.Mirror
	f.mirrors[1], err = fixtures.StartRegistry(b.TempDir(), fixtures.RegistrySpec{Cert: regs.Cert,
		Proxy: regs.Origin.URL, ProxyUser: regs.User, ProxyPassword: regs.Password, ProxyCA: regs.Cert})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.mirrors[1].Stop() })
	f.lab.mustSucceed("channel", "push", f.lab.UpstreamDir, f.oci(regs.Origin), "--registry-auth", regs.AuthFile, "--registry-ca", regs.CAFile)
	return f
}

func (f *fanout) oci(r *fixtures.Registry) string { return "oci://" + r.Addr + fanoutRepo }

// fanoutResult is one source's staging: its wall time and the bytes that
// landed in the node caches.
type fanoutResult struct {
	wall  time.Duration
	bytes int64
}

func (r fanoutResult) mibps() float64 { return float64(r.bytes) / (1 << 20) / r.wall.Seconds() }

// stage runs staging with these arguments, timed: it must succeed, fill
// every node cache and take nothing from the lab's HTTP upstream.
func (f *fanout) stage(args ...string) fanoutResult {
	f.b.Helper()
	f.emptyNodeCaches()
	upstream := f.lab.upstream.ArtifactBytes()
	start := time.Now()
	f.lab.mustSucceed(args...)
	wall := time.Since(start)
	if n := f.lab.upstream.ArtifactBytes() - upstream; n != 0 {
		f.b.Fatalf("staging %v took %d artifact bytes from the lab's HTTP upstream: it did not read the source under test", args, n)
	}
	return fanoutResult{wall: wall, bytes: f.stagedBytes()}
}

// emptyNodeCaches removes every entry of every node cache, with the
// cache's own prune.
func (f *fanout) emptyNodeCaches() {
	for _, n := range f.lab.Nodes {
		st := &cache.Store{Dir: steps.Layout{Root: n.Root}.CacheDir()}
		if _, err := st.PruneExcept(nil, false); err != nil {
			f.b.Fatalf("emptying the node cache of %s: %v", n.Name, err)
		}
	}
}

// stagedBytes sums the target release's artifacts in the node caches,
// and fails unless every node holds all of its own.
func (f *fanout) stagedBytes() (total int64) {
	m := f.lab.manifest(fanoutTo)
	for _, n := range f.lab.Nodes {
		st := &cache.Store{Dir: steps.Layout{Root: n.Root}.CacheDir()}
		for _, c := range m.Components {
			if !c.AppliesTo(n.Roles) {
				continue
			}
			info, err := os.Stat(st.Path(c.Artifact.SHA256))
			if err != nil || info.Size() != c.Artifact.Size {
				f.b.Fatalf("node %s: %s %s is not in its node cache after staging (%v)", n.Name, c.Name, c.Version, err)
			}
			total += info.Size()
		}
	}
	return total
}

// stageArgs are the arguments of one staging run.
func (f *fanout) stageArgs(parallel int, extra ...string) []string {
	return append([]string{"upgrade", fanoutTo, "--stage", "--yes", "--stage-parallel", strconv.Itoa(parallel)}, extra...)
}

// fromDaemon stages from the cache daemon the cluster file names.
func (f *fanout) fromDaemon() fanoutResult {
	return f.stage(f.stageArgs(f.size.parallel)...)
}

// fromRegistry stages from the registry itself (bearer tokens).
func (f *fanout) fromRegistry() fanoutResult {
	return f.stage(f.stageArgs(f.size.parallel, "--no-cache", "--mirror", f.oci(f.regs.Origin),
		"--registry-auth", f.regs.AuthFile, "--registry-ca", f.regs.CAFile)...)
}

// fromMirrors stages through the two pull-through mirrors, listed in
// order as an operator lists them. A run sends every node to the first
// mirror that answers (the second is its fallback), and one run at a time
// holds the cluster's lease, so the fleet cannot be split between them;
// mirrorsServed says which one served.
func (f *fanout) fromMirrors() fanoutResult {
	args := f.stageArgs(f.size.parallel, "--no-cache", "--mirror", f.oci(f.mirrors[0]), "--mirror", f.oci(f.mirrors[1]),
		"--registry-auth", f.regs.AuthFile, "--registry-ca", f.regs.CAFile)
	return f.stage(args...)
}

// mirrorsServed says which mirrors hold the payload artifact.
func (f *fanout) mirrorsServed() string {
	var out []string
	for i, m := range f.mirrors {
		if _, err := m.BlobPath(f.big); err == nil {
			out = append(out, fmt.Sprintf("mirror %d", i+1))
		}
	}
	if len(out) == 0 {
		return "neither mirror"
	}
	return strings.Join(out, " and ")
}

// coldMirrors empties both mirrors' storage, so the next pass pulls the
// release through them from the registry, as a new release does.
func (f *fanout) coldMirrors() {
	for _, m := range f.mirrors {
		if err := m.Stop(); err != nil {
			f.b.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(m.Dir, "storage", "docker")); err != nil {
			f.b.Fatal(err)
		}
		if err := m.Start(); err != nil {
			f.b.Fatal(err)
		}
	}
}

// withCurl is the reference: curl fetching the payload artifact (no
// verification, no fsync) from the cache daemon into every node's
// directory, parallel at once.
func (f *fanout) withCurl() (fanoutResult, error) {
	crt, _ := f.lab.CacheTLSFiles()
	url := cache.ArtifactURL("https://"+f.lab.cacheIP, f.big)
	work := make(chan string)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	for range f.size.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dst := range work {
				out, err := exec.Command("curl", "-sS", "--fail", "--cacert", crt, "-o", dst, url).CombinedOutput()
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("curl %s: %v: %s", url, err, out)
				}
				mu.Unlock()
			}
		}()
	}
	var files []string
	for _, n := range f.lab.Nodes {
		dst := filepath.Join(n.Root, "fanout-reference.bin")
		files = append(files, dst)
		work <- dst
	}
	close(work)
	wg.Wait()
	r := fanoutResult{wall: time.Since(start)}
	if first != nil {
		return r, first
	}
	for _, p := range files {
		info, err := os.Stat(p)
		if err != nil {
			return r, err
		}
		r.bytes += info.Size()
		if err := os.Remove(p); err != nil {
			return r, err
		}
	}
	return r, nil
}

// BenchmarkFanOut stages one release (a payload of SENTINEL_BENCH_FANOUT_MIB
// in the base component's artifact, which every node needs, plus each
// node's few small artifacts) on SENTINEL_BENCH_FANOUT_NODES nodes with
// `sentinel upgrade --stage`, SENTINEL_BENCH_FANOUT_PARALLEL transfers at
// once, from: the cache daemon; the registry (docker-registry, bearer
// tokens) the channel was pushed to; two pull-through mirrors of it,
// listed as --mirror twice, first cold (emptied, so they pull the release
// through from the registry) and then warm; the cache daemon again. The
// node caches are emptied before each. The reference is curl taking the payload alone from the
// cache daemon into every node's directory, as many at once.
func BenchmarkFanOut(b *testing.B) {
	if err := fixtures.CheckRegistry(); err != nil {
		b.Skip(err)
	}
	sz := fanoutSizeFromEnv(b)
	setup := time.Now()
	f := newFanout(b, sz)
	f.setup = time.Since(setup)
	names := []string{"daemon", "registry", "mirrors-cold", "mirrors-warm", "daemon-again", fanoutCurl}
	_, nocurl := exec.LookPath("curl")
	if nocurl != nil {
		b.Logf("no curl reference: %v", nocurl)
		names = names[:len(names)-1]
	}
	sum := map[string]fanoutResult{}
	add := func(name string, r fanoutResult) {
		s := sum[name]
		s.wall += r.wall
		s.bytes += r.bytes
		sum[name] = s
	}
	b.ResetTimer()
	for range b.N {
		add("daemon", f.fromDaemon())
		add("registry", f.fromRegistry())
		f.coldMirrors()
		add("mirrors-cold", f.fromMirrors())
		f.served = f.mirrorsServed()
		add("mirrors-warm", f.fromMirrors())
		add("daemon-again", f.fromDaemon())
		if nocurl == nil {
			f.emptyNodeCaches()
			ref, err := f.withCurl()
			if err != nil {
				b.Fatal(err)
			}
			add(fanoutCurl, ref)
		}
	}
	b.StopTimer()
	f.emptyNodeCaches()
	f.report(names, sum)
}

// report prints the table and reports each source's wall time per pass,
// aggregate MiB/s, and its wall time over the daemon's. The daemon's is
// the mean of its passes first and last, which bracket the others: on a
// shared machine the load drifts during a run, and the two tell by how
// much.
func (f *fanout) report(names []string, sum map[string]fanoutResult) {
	b, n := f.b, time.Duration(f.b.N)
	daemon := fanoutResult{wall: (sum["daemon"].wall + sum["daemon-again"].wall) / 2,
		bytes: (sum["daemon"].bytes + sum["daemon-again"].bytes) / 2}
	var tab strings.Builder
	// The testing package keeps ten lines of a benchmark's log: the table
	// and one line before it.
	fmt.Fprintf(&tab, "fan-out of %d MiB to %d nodes, %d transfers at once, %d pass(es) (set-up %.0f s; the payload went through %s):\n",
		f.size.mib, f.size.nodes, f.size.parallel, f.b.N, f.setup.Seconds(), f.served)
	fmt.Fprintf(&tab, "| source | wall (s) | MiB moved | aggregate MiB/s | wall / daemon's (mean of both) | MiB/s / daemon's |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, name := range names {
		r := sum[name]
		wall, rate := (r.wall / n).Seconds(), r.mibps()
		fmt.Fprintf(&tab, "| %s | %.2f | %.0f | %.0f | %.2f | %.2f |\n", name, wall, float64(r.bytes)/float64(n)/(1<<20), rate,
			r.wall.Seconds()/daemon.wall.Seconds(), rate/daemon.mibps())
		b.ReportMetric(wall, "s/fanout-"+name)
		b.ReportMetric(rate, "MiB/s-"+name)
		switch name {
		case "daemon", "daemon-again":
		case fanoutCurl: // the payload alone: compare throughputs
			b.ReportMetric(daemon.mibps()/rate, "daemon-MiB/s/curl-MiB/s")
		default:
			b.ReportMetric(r.wall.Seconds()/daemon.wall.Seconds(), name+"-wall/daemon-wall")
		}
	}
	b.Log(tab.String())
}
