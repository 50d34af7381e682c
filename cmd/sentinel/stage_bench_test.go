package main

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// The staging benchmark's size: SENTINEL_BENCH_STAGE_NODES nodes (20) and
// every artifact SENTINEL_BENCH_STAGE_MIB MiB of payload (64), so that a
// quick run during development can say 4 and 8.
const (
	stageBenchNodesEnv = "SENTINEL_BENCH_STAGE_NODES"
	stageBenchMiBEnv   = "SENTINEL_BENCH_STAGE_MIB"
	// The link staging is measured behind too, in Mbit/s (1000: the
	// issue's 1 GbE LAN); 0 leaves that measure out.
	stageBenchLinkEnv = "SENTINEL_BENCH_STAGE_LINK_MBIT"
	// A directory for a perf profile of each window (unset: none).
	stageBenchPerfEnv = "SENTINEL_BENCH_PERF_DIR"
)

// BenchmarkStageThenWindow measures, side by side in one run, on labs of
// identical nodes whose artifacts come from the cache daemon on loopback:
//
//	(a) `sentinel upgrade 3.4.2 --stage` (DefaultStageParallel nodes at once);
//	(d) the daemon's aggregate throughput: the same artifacts, as many at
//	    once as staging fetches, by plain GETs read to nothing;
//	(e) the same transfers done by sentinel's own fetch (cache.Store:
//	    sha256 while streaming, checkpoints, fsync, rename) into a store
//	    per node, as many at once, with no orchestrator, journal or agent:
//	    what verifying and keeping the bytes costs on this machine, where
//	    every node's disk and CPU are the daemon's too;
//	(h) the same transfers by hand with the usual tools: per artifact,
//	    `curl -o` into a directory per node, `openssl dgst -sha256` (SHA-NI,
//	    unlike coreutils' sha256sum) and `sync` of the file, as many at
//	    once: what a script of curl costs for the same keeping and
//	    verifying (left out without curl or openssl);
//	(i) the disk alone: the same bytes written from memory to a file per
//	    artifact and node and fsynced, as many at once, with no source,
//	    TLS or hashing: the floor any staging on this machine's disk meets;
//	(j) the GETs of (d), each hashed with sha256 and checked against its
//	    digest, kept nowhere: the least any staging that verifies does,
//	    with no disk at all;
//	(b) the window, `sentinel upgrade 3.4.2 --yes`, after that staging;
//	(c) the same window on a second lab whose node caches were filled by
//	    copying each verified artifact to where the node cache keeps it
//	    (<root>/cache/sha256/<hex>), with no run of sentinel at all.
//
// It reports window (b)/(c) (target <= 1.05: staging leaves the window
// nothing more to do than artifacts placed by hand) and staging's wall
// time over total bytes / aggregate throughput (target <= 1.2: staging
// costs little beyond moving the bytes). Beside each wall time, the CPU
// seconds the part took (sentinel and the agents it ran, or the GETs,
// plus the cache daemon's): in the lab every node shares this machine's
// cores, so CPU is what the parts compete for.
func BenchmarkStageThenWindow(b *testing.B) {
	// 254 nodes at most: each has an address of its own in 127.0.0.0/24.
	nodes, mib := benchEnvInt(b, stageBenchNodesEnv, 20, 254), benchEnvInt(b, stageBenchMiBEnv, 64, 4096)
	opt := fixtures.LabOptions{Nodes: nodes, Release: "3.4.1"}
	opt.Channel.Versions = []string{"3.4.1", "3.4.2"}
	opt.Channel.PayloadBytes = map[string]int64{}
	for _, c := range fixtures.Components() {
		opt.Channel.PayloadBytes[c.Name] = int64(mib) << 20
	}
	parallel := rollout.DefaultStageParallel
	link := 1000
	if os.Getenv(stageBenchLinkEnv) != "0" {
		link = benchEnvInt(b, stageBenchLinkEnv, link, 100000)
	} else {
		link = 0
	}
	var m stageBenchFigures
	for i := 0; i < b.N; i++ {
		f := stageThenWindowOnce(b, opt, parallel, link, i%2 == 1)
		first := "staged"
		if i%2 == 1 {
			first = "placed"
		}
		b.Logf("run %d, the %s lab first: staging %.2f s (%.1f CPU s); window after staging %.2f s (%.1f CPU s), placed by hand %.2f s (%.1f CPU s), ratio %.3f",
			i+1, first, f.stage.wall, f.stage.cpu, f.windowStaged.wall, f.windowStaged.cpu, f.windowPlaced.wall, f.windowPlaced.cpu, f.windowStaged.wall/f.windowPlaced.wall)
		m.add(f)
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(m.stagedMiB/n, "MiB-staged")
	b.ReportMetric(m.stage.wall/n, "s/stage")
	b.ReportMetric(m.gets.wall/n, "s/plain-GETs-same-bytes")
	b.ReportMetric(m.stagedMiB/m.gets.wall, "MiB/s-daemon-aggregate")
	b.ReportMetric(m.windowStaged.wall/n, "s/window-after-stage")
	b.ReportMetric(m.windowPlaced.wall/n, "s/window-preplaced")
	b.ReportMetric(m.stage.cpu/n, "cpu-s/stage")
	b.ReportMetric(m.gets.cpu/n, "cpu-s/plain-GETs")
	b.ReportMetric(m.windowStaged.cpu/n, "cpu-s/window-after-stage")
	b.ReportMetric(m.windowPlaced.cpu/n, "cpu-s/window-preplaced")
	b.ReportMetric(m.windowStaged.wall/m.windowPlaced.wall, "x-window-staged/preplaced")
	b.ReportMetric(m.stage.wall/m.gets.wall, "x-stage/(bytes/throughput)")
	b.ReportMetric(m.fetches.wall/n, "s/verified-fetches-same-bytes")
	b.ReportMetric(m.fetches.cpu/n, "cpu-s/verified-fetches")
	b.ReportMetric(m.stage.wall/m.fetches.wall, "x-stage/verified-fetches")
	if m.curl.wall > 0 {
		b.ReportMetric(m.curl.wall/n, "s/curl-openssl-sync")
		b.ReportMetric(m.curl.cpu/n, "cpu-s/curl-openssl-sync")
		b.ReportMetric(m.stage.wall/m.curl.wall, "x-stage/curl-openssl-sync")
	}
	b.ReportMetric(m.disk.wall/n, "s/disk-alone-same-bytes")
	b.ReportMetric(m.disk.cpu/n, "cpu-s/disk-alone")
	b.ReportMetric(m.stage.wall/m.disk.wall, "x-stage/disk-alone")
	b.ReportMetric(m.hashedGets.wall/n, "s/verified-GETs-no-disk")
	b.ReportMetric(m.hashedGets.cpu/n, "cpu-s/verified-GETs-no-disk")
	b.ReportMetric(m.hashedGets.wall/m.gets.wall, "x-verified-GETs-no-disk/(bytes/throughput)")
	if sh := m.shaped; sh.mbit > 0 {
		b.ReportMetric(sh.gets.wall/n, "s/plain-GETs-behind-link")
		b.ReportMetric(sh.stage.wall/n, "s/stage-behind-link")
		b.ReportMetric(sh.stage.cpu/n, "cpu-s/stage-behind-link")
		b.ReportMetric(m.stagedMiB/sh.gets.wall, "MiB/s-daemon-behind-link")
		b.ReportMetric(sh.stage.wall/sh.gets.wall, "x-stage/(bytes/link-throughput)")
		b.Logf("behind a %.0f Mbit/s link (%.1f MiB/s): plain GETs %.2f s, staging %.2f s, ratio %.3f",
			sh.mbit, sh.mbit*1e6/8/(1<<20), sh.gets.wall/n, sh.stage.wall/n, sh.stage.wall/sh.gets.wall)
	}
}

// part is one measured part: wall seconds and CPU seconds.
type part struct{ wall, cpu float64 }

func (p *part) add(o part) { p.wall += o.wall; p.cpu += o.cpu }

// stageBenchFigures are one run's measures (summed over runs).
type stageBenchFigures struct {
	stagedMiB                                                                float64
	stage, gets, fetches, curl, disk, hashedGets, windowStaged, windowPlaced part
	shaped                                                                   shapedFigures
}

// shapedFigures are the GETs and staging with the daemon behind a link of
// mbit megabits a second (mbit 0: not measured).
type shapedFigures struct {
	mbit        float64
	gets, stage part
}

func (f *stageBenchFigures) add(o stageBenchFigures) {
	f.stagedMiB += o.stagedMiB
	f.stage.add(o.stage)
	f.gets.add(o.gets)
	f.fetches.add(o.fetches)
	f.curl.add(o.curl)
	f.disk.add(o.disk)
	f.hashedGets.add(o.hashedGets)
	f.windowStaged.add(o.windowStaged)
	f.windowPlaced.add(o.windowPlaced)
	f.shaped.mbit = max(f.shaped.mbit, o.shaped.mbit)
	f.shaped.gets.add(o.shaped.gets)
	f.shaped.stage.add(o.shaped.stage)
}

// benchEnvInt reads a benchmark's size from the environment: def when
// unset, a whole number from 1 to max otherwise.
func benchEnvInt(b *testing.B, name string, def, max int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		b.Fatalf("%s=%q: want a whole number from 1 to %d", name, v, max)
	}
	return n
}

// stageThenWindowOnce makes both labs in turn (one removed before the
// other is made, to halve the disk needed), in turn order from one run to
// the next (-benchtime=2x measures both orders), and measures each part.
// On the staged lab the parts that repeat staging's transfers come first,
// and the staging the window follows last: the window then comes right
// after its staging, as an operator's does, not after the tens of GB
// those parts write and remove.
func stageThenWindowOnce(b *testing.B, opt fixtures.LabOptions, parallel, linkMbit int, placedFirst bool) stageBenchFigures {
	var f stageBenchFigures
	if placedFirst {
		f.windowPlaced = windowPreplaced(b, opt)
	}
	lab := newStageBenchLab(b, opt)
	want := artifactsPerNode(b, lab)
	sizes := map[string]int64{}
	for _, c := range lab.manifest("3.4.2").Components {
		sizes[c.Artifact.SHA256] = c.Artifact.Size
	}
	var staged []stagedArtifact
	for name, ds := range want {
		for _, d := range ds {
			staged = append(staged, stagedArtifact{node: name, digest: d, size: sizes[d]})
		}
	}
	all := make([]string, len(staged))
	for i, a := range staged {
		all[i] = a.digest
	}
	warmDaemonStore(b, lab)
	if linkMbit > 0 {
		f.shaped = measureShaped(b, lab, parallel, linkMbit, want, all)
	}
	var bytes int64
	f.gets = measure(lab, func() float64 {
		var cpu float64
		bytes, cpu = getAllAtOnce(b, lab, all, parallel)
		return cpu
	})
	f.stagedMiB = float64(bytes) / (1 << 20)
	f.fetches = measure(lab, func() float64 { return fetchAllAtOnce(b, lab, staged, parallel) })
	os.RemoveAll(filepath.Join(lab.Dir, "bench-fetches"))
	if err := hasTools("curl", "openssl"); err == nil {
		f.curl = measure(lab, func() float64 { return curlAllAtOnce(b, lab, staged, parallel) })
		os.RemoveAll(filepath.Join(lab.Dir, "bench-curl"))
	} else {
		b.Logf("leaving out the curl reference: %v", err)
	}
	f.disk = measure(lab, func() float64 { return writeAllAtOnce(b, lab, staged, parallel) })
	os.RemoveAll(filepath.Join(lab.Dir, "bench-disk"))
	f.hashedGets = measure(lab, func() float64 { return getAndHashAllAtOnce(b, lab, all, parallel) })
	warmDaemonStore(b, lab) // what the parts wrote may have pushed it out
	f.stage = measure(lab, func() float64 { return stageAndCheck(b, lab, parallel, want) })
	dropPageCache(b)
	f.windowStaged = measure(lab, func() float64 { return runWindow(b, lab, "after staging") })
	lab.stopCache()
	os.RemoveAll(lab.Dir)
	if !placedFirst {
		f.windowPlaced = windowPreplaced(b, opt)
	}
	return f
}

// stageAndCheck stages the lab's 3.4.2 and fails unless what staging put
// in each node cache is exactly that node's 3.4.2 artifacts (what the
// other lab gets by hand, and the transfers the other parts repeat). It
// returns the CPU staging took.
func stageAndCheck(b *testing.B, lab *testLab, parallel int, want map[string][]string) float64 {
	before := nodeCacheDigests(b, lab)
	out, cpu := sentinelWithCPU(b, lab, "upgrade", "3.4.2", "--stage", "--stage-parallel", strconv.Itoa(parallel), "--yes")
	if !strings.Contains(out, fmt.Sprintf("Staged 3.4.2 on %d nodes", len(lab.Nodes))) {
		b.Fatalf("staging output:\n%s", out)
	}
	for name, ds := range nodeCacheDigests(b, lab) {
		var got []string
		for _, d := range ds {
			if !slices.Contains(before[name], d) {
				got = append(got, d)
			}
		}
		if slices.Sort(got); !slices.Equal(got, want[name]) {
			b.Fatalf("staging put %v in node %s's cache, its 3.4.2 artifacts are %v", got, name, want[name])
		}
	}
	return cpu
}

// measureShaped measures the plain GETs (d) and staging (a) with the
// daemon's replies limited to linkMbit in all (shapeSource), and empties
// the node caches of what that staging put there after. It returns
// nothing, and says why, where loopback cannot be shaped.
func measureShaped(b *testing.B, lab *testLab, parallel, linkMbit int, want map[string][]string, all []string) (s shapedFigures) {
	lift, err := shapeSource(b, lab.cacheIP, linkMbit)
	if err != nil {
		b.Logf("leaving out staging behind a %d Mbit/s link: %v", linkMbit, err)
		return s
	}
	defer lift()
	s.gets = measure(lab, func() float64 {
		_, cpu := getAllAtOnce(b, lab, all, parallel)
		return cpu
	})
	s.stage = measure(lab, func() float64 { return stageAndCheck(b, lab, parallel, want) })
	s.mbit = float64(linkMbit)
	for _, n := range lab.Nodes {
		for _, d := range want[n.Name] {
			if err := os.Remove((&cache.Store{Dir: steps.Layout{Root: n.Root}.CacheDir()}).Path(d)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

// warmDaemonStore reads every file of the cache daemon's store once, so
// that staging and the parts that repeat its transfers all find them in
// memory: the store writes its files with O_DIRECT, so without this the
// first of them would read them from the daemon's disk.
func warmDaemonStore(b *testing.B, lab *testLab) {
	b.Helper()
	core, _ := lab.Node("core")
	err := filepath.WalkDir(filepath.Join(core.Root, "var", "sentinel-cache"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.Discard, f)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// dropPageCache writes back and drops the page cache, so that both windows
// read their artifacts from disk, as a window does hours after staging;
// otherwise whichever lab moved its bytes last would have them in memory.
func dropPageCache(b *testing.B) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Logf("the windows compare with what each lab left in the page cache: dropping it: %v", err)
		return
	}
	waitForFreePageReporting(b)
}

// freePageReported is where a kernel whose page_reporting module exposes
// its counters says how much free memory it has reported to the host.
const freePageReported = "/sys/module/page_reporting/parameters/reported_kib"

// waitForFreePageReporting waits, in a virtual machine whose kernel reports
// free pages to its host (virtio-balloon free page reporting), until the
// memory the dropped page cache freed has been reported: the host has then
// taken it back, and each page a window fills costs a fault in the host.
// Reporting goes on for tens of seconds after a large drop; a window that
// started meanwhile would find part of its pages still backed, more of
// them the more the drop freed, which differs from lab to lab. An
// operator's window, hours after its staging, finds it all reported.
// Without the counter it waits for nothing and says so.
func waitForFreePageReporting(b *testing.B) {
	first, err := freePageReportedKiB()
	if err != nil {
		b.Logf("not waiting for free page reporting (%v): the windows may find part of the memory the drop freed still backed by the host", err)
		return
	}
	// The kernel reports in passes two seconds apart (PAGE_REPORTING_DELAY):
	// three passes with nothing reported mean it has caught up.
	const quiet, limit = 6 * time.Second, 3 * time.Minute
	start, last, lastChange := time.Now(), first, time.Now()
	for time.Since(lastChange) < quiet {
		if time.Since(start) > limit {
			b.Logf("free page reporting still reporting %s after the drop: the window starts regardless", limit)
			return
		}
		time.Sleep(500 * time.Millisecond)
		if cur, err := freePageReportedKiB(); err == nil && cur != last {
			last, lastChange = cur, time.Now()
		}
	}
	b.Logf("waited %.0f s for free page reporting to give the host the %d MiB the drop freed", lastChange.Sub(start).Seconds(), (last-first)>>10)
}

// freePageReportedKiB is what the kernel has reported free to the host so
// far, in KiB.
func freePageReportedKiB() (int64, error) {
	data, err := os.ReadFile(freePageReported)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// windowPreplaced makes a lab, places each node's 3.4.2 artifacts in its
// node cache by hand and measures the window.
func windowPreplaced(b *testing.B, opt fixtures.LabOptions) part {
	lab := newStageBenchLab(b, opt)
	placeArtifacts(b, lab, artifactsPerNode(b, lab))
	dropPageCache(b)
	p := measure(lab, func() float64 { return runWindow(b, lab, "placed by hand") })
	lab.stopCache()
	os.RemoveAll(lab.Dir)
	return p
}

// artifactsPerNode is, by node, the sorted digests of the 3.4.2 artifacts
// of the components its roles run.
func artifactsPerNode(b *testing.B, lab *testLab) map[string][]string {
	out := map[string][]string{}
	m := lab.manifest("3.4.2")
	for _, n := range lab.Nodes {
		for _, c := range m.Components {
			if c.AppliesTo(n.Roles) && !slices.Contains(out[n.Name], c.Artifact.SHA256) {
				out[n.Name] = append(out[n.Name], c.Artifact.SHA256)
			}
		}
		slices.Sort(out[n.Name])
	}
	return out
}

// newStageBenchLab is a lab with the cache daemon on its core node, filled
// with 3.4.2 (the operator's --download-only), so that staging and the
// window read from it.
func newStageBenchLab(b *testing.B, opt fixtures.LabOptions) *testLab {
	b.Helper()
	lab := newLabWith(b, opt)
	log, err := os.Create(filepath.Join(lab.Dir, "cache-daemon.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	lab.cacheLog = log
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	return lab
}

// measure runs fn, after flushing what earlier parts left dirty so that
// each part starts from the same state of the disk: its wall time, and the
// CPU fn reports for its own processes plus the cache daemon's meanwhile.
func measure(lab *testLab, fn func() (cpu float64)) part {
	syscall.Sync()
	daemon := lab.cacheCmd.Process.Pid
	d0 := procCPU(daemon)
	start := time.Now()
	own := fn()
	wall := time.Since(start).Seconds()
	return part{wall: wall, cpu: own + procCPU(daemon) - d0}
}

// procCPU is the user and system CPU seconds of a running process.
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func rusageCPU(ru *syscall.Rusage) float64 {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sentinelWithCPU runs sentinel against the lab, fails unless it exits 0,
// and returns its output and the CPU it took with the agents it ran
// (wait4's usage counts the children a process waited for).
func sentinelWithCPU(b *testing.B, lab *testLab, args ...string) (string, float64) {
	out, ru := sentinelWithUsage(b, lab, args...)
	return out, rusageCPU(ru)
}

// sentinelWithUsage is sentinelWithCPU with the whole of wait4's usage.
func sentinelWithUsage(b *testing.B, lab *testLab, args ...string) (string, *syscall.Rusage) {
	b.Helper()
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("sentinel %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String(), cmd.ProcessState.SysUsage().(*syscall.Rusage)
}

// runWindow runs the window's upgrade, checks it found every artifact in
// the node caches, and returns its CPU seconds. It logs where they went
// and what the window asked of the disk and of memory, to tell work of
// sentinel's own from what the host makes the same work cost.
func runWindow(b *testing.B, lab *testLab, which string) float64 {
	stopProfile := profileMachine(b, which)
	mem0 := memoryEvents()
	out, ru := sentinelWithUsage(b, lab, "upgrade", "3.4.2", "--yes")
	mem1 := memoryEvents()
	stopProfile()
	b.Logf("window %s, the machine's memory: %s", which, memoryDelta(mem0, mem1))
	if !strings.Contains(out, "Nothing fetched") {
		b.Fatalf("the window fetched something:\n%s", out)
	}
	b.Logf("window %s: %.1f s user, %.1f s system; %d MiB read and %d MiB written from and to the disk; %d major and %d minor page faults; %d voluntary and %d involuntary context switches; %s",
		which, time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(),
		ru.Inblock*512>>20, ru.Oublock*512>>20, ru.Majflt, ru.Minflt, ru.Nvcsw, ru.Nivcsw, windowExtents(b, lab))
	return rusageCPU(ru)
}

// memoryEvents reads the kernel's memory counters a window's copies into
// and out of the page cache depend on: /proc/vmstat's, MemFree, and what
// free page reporting (a guest telling its host which free pages it may
// take back) has reported, where the kernel has it.
func memoryEvents() map[string]int64 {
	m := map[string]int64{}
	if data, err := os.ReadFile("/proc/vmstat"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, " "); ok {
				m[k], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemFree:" {
				m["memfree_kib"], _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if kib, err := freePageReportedKiB(); err == nil {
		m["page_reporting_reported_kib"] = kib
	}
	return m
}

// memoryDelta says what the window's counters moved by, and the free
// memory it started with.
func memoryDelta(before, after map[string]int64) string {
	var out []string
	out = append(out, fmt.Sprintf("MemFree %d MiB before", before["memfree_kib"]>>10))
	// Pages the window took from the free lists, what reclaim took back
	// (none, with the page cache dropped before), and what the kernel
	// reported free to the host meanwhile.
	for _, k := range []string{"pgalloc_normal", "pgsteal_kswapd", "pgsteal_direct", "page_reporting_reported_kib"} {
		if _, ok := after[k]; ok {
			out = append(out, fmt.Sprintf("%s %+d", k, after[k]-before[k]))
		}
	}
	return strings.Join(out, ", ")
}

// profileMachine records, when SENTINEL_BENCH_PERF_DIR names a directory,
// a `perf record -a -g` of the whole machine into <dir>/window-<which>.data
// until the returned function is called: the window's system time is the
// kernel's, which only a profile of every process and kernel thread
// attributes (see docs/development.md).
func profileMachine(b *testing.B, which string) (stop func()) {
	dir := os.Getenv(stageBenchPerfEnv)
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatalf("%s: %v", stageBenchPerfEnv, err)
	}
	out := filepath.Join(dir, "window-"+strings.ReplaceAll(which, " ", "-")+".data")
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	// Events start disabled and perf acknowledges each command on fd 4, so
	// the profile holds exactly the window, with no guess at perf's start-up.
	cmd := exec.Command("perf", "record", "-a", "-g", "-F", "499", "-D", "-1", "--control", "fd:3,4", "-o", out)
	cmd.ExtraFiles = []*os.File{ctlR, ackW}
	var errb strings.Builder
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s=%s: starting perf: %v", stageBenchPerfEnv, dir, err)
	}
	ctlR.Close()
	ackW.Close()
	ack := make([]byte, 5) // perf writes the C string "ack\n" with its NUL
	_, err = ctlW.WriteString("enable\n")
	if err == nil {
		_, err = io.ReadFull(ackR, ack)
	}
	if err != nil || string(ack) != "ack\n\x00" {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("perf record did not start recording (%q, %v): %s", ack, err, errb.String())
	}
	return func() {
		// Not "disable": perf 6.1 then fails on its next poll ("Thread and
		// evlist pollfd index mismatch") and leaves the file unfinished.
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		ctlW.Close()
		ackR.Close()
		// Interrupted, perf record writes its file, then exits 128+SIGINT or
		// raises SIGINT again.
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if ws.ExitStatus() != 128+int(syscall.SIGINT) && !(ws.Signaled() && ws.Signal() == syscall.SIGINT) {
			b.Fatalf("perf record: %v: %s", err, errb.String())
		}
		b.Logf("profile of the window %s: %s", which, out)
	}
}

// windowExtents says in how many extents on the disk lie the node-cache
// artifacts a window read and the files it unpacked (3.4.2's release
// directories), as filefrag counts them: beside the window's system time,
// it tells a scattered layout from other causes.
func windowExtents(b *testing.B, lab *testLab) string {
	if err := hasTools("filefrag"); err != nil {
		return fmt.Sprintf("extents not counted: %v", err)
	}
	var read, written []string
	for name, ds := range artifactsPerNode(b, lab) {
		n, _ := lab.Node(name)
		for _, d := range ds {
			read = append(read, (&cache.Store{Dir: steps.Layout{Root: n.Root}.CacheDir()}).Path(d))
		}
	}
	for _, n := range lab.Nodes {
		dirs, _ := filepath.Glob(filepath.Join(n.Root, "code", "*", "releases", "3.4.2"))
		for _, dir := range dirs {
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					written = append(written, p)
				}
				return nil
			})
		}
	}
	return fmt.Sprintf("read %d artifacts in %s extents, unpacked %d files in %s extents",
		len(read), countExtents(read), len(written), countExtents(written))
}

// countExtents is the sum of filefrag's extent counts over files, or why
// there is none.
func countExtents(files []string) string {
	if len(files) == 0 {
		return "no"
	}
	out, err := exec.Command("filefrag", files...).Output()
	if err != nil {
		return fmt.Sprintf("(filefrag: %v)", err)
	}
	total := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line[strings.LastIndexByte(line, ':')+1:])
		if len(f) == 0 {
			return fmt.Sprintf("(filefrag said %q)", line)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return fmt.Sprintf("(filefrag said %q)", line)
		}
		total += n
	}
	return strconv.Itoa(total)
}

// nodeCacheDigests lists the verified artifacts in each node cache.
func nodeCacheDigests(b *testing.B, lab *testLab) map[string][]string {
	b.Helper()
	out := map[string][]string{}
	for _, n := range lab.Nodes {
		entries, err := os.ReadDir(filepath.Join(steps.Layout{Root: n.Root}.CacheDir(), "sha256"))
		if err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
		for _, e := range entries {
			out[n.Name] = append(out[n.Name], e.Name())
		}
	}
	return out
}

// getAllAtOnce GETs every digest from the lab's cache daemon, parallel at
// a time, reading each body to nothing, and returns the bytes and the CPU
// seconds this process took meanwhile.
func getAllAtOnce(b *testing.B, lab *testLab, digests []string, parallel int) (int64, float64) {
	b.Helper()
	client := cacheClient(b, lab)
	base := "https://" + lab.cacheIP
	var total atomic.Int64
	cpu, err := atOnceWithCPU(digests, parallel, func(d string) error {
		n, err := getInto(client, cache.ArtifactURL(base, d), io.Discard)
		total.Add(n)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return total.Load(), cpu
}

// getAndHashAllAtOnce is getAllAtOnce with each body hashed with sha256
// and checked against its digest instead of read to nothing.
func getAndHashAllAtOnce(b *testing.B, lab *testLab, digests []string, parallel int) float64 {
	b.Helper()
	client := cacheClient(b, lab)
	base := "https://" + lab.cacheIP
	cpu, err := atOnceWithCPU(digests, parallel, func(d string) error {
		h := sha256.New()
		if _, err := getInto(client, cache.ArtifactURL(base, d), h); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != d {
			return fmt.Errorf("GET %s: the body's sha256 is %s", d, got)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// stagedArtifact is one artifact staging puts in one node's cache.
type stagedArtifact struct {
	node, digest string
	size         int64
}

// fetchAllAtOnce fetches what staging fetches with the node cache's own
// transfer, into a fresh store per node beside the lab's, parallel at a
// time, and returns the CPU seconds this process took meanwhile.
func fetchAllAtOnce(b *testing.B, lab *testLab, staged []stagedArtifact, parallel int) float64 {
	b.Helper()
	client := cacheClient(b, lab)
	base := "https://" + lab.cacheIP
	dir := filepath.Join(lab.Dir, "bench-fetches") // removed by the caller, untimed
	cpu, err := atOnceWithCPU(staged, parallel, func(a stagedArtifact) error {
		store := &cache.Store{Dir: filepath.Join(dir, a.node), HTTP: client}
		_, err := store.Fetch(b.Context(), cache.ArtifactURL(base, a.digest), a.digest, a.size)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// writeAllAtOnce writes as many bytes as each staged artifact holds, from
// memory, to a file per artifact in a directory per node beside the
// lab's, and fsyncs it, parallel at a time: what keeping the bytes alone
// costs on this disk. It returns the CPU seconds this process took.
func writeAllAtOnce(b *testing.B, lab *testLab, staged []stagedArtifact, parallel int) float64 {
	b.Helper()
	dir := filepath.Join(lab.Dir, "bench-disk") // removed by the caller, untimed
	for _, n := range lab.Nodes {
		if err := os.MkdirAll(filepath.Join(dir, n.Name), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, cache.DefaultBufferSize)
	rand.Read(buf)
	cpu, err := atOnceWithCPU(staged, parallel, func(a stagedArtifact) error {
		f, err := os.Create(filepath.Join(dir, a.node, a.digest))
		if err != nil {
			return err
		}
		defer f.Close()
		for left := a.size; left > 0; {
			n, err := f.Write(buf[:min(left, int64(len(buf)))])
			if err != nil {
				return err
			}
			left -= int64(n)
		}
		return f.Sync()
	})
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// curlAllAtOnce does what staging does with curl, openssl and sync per
// artifact, into a directory per node beside the lab's, parallel at a
// time, fails unless every sum is the artifact's digest, and returns the
// CPU seconds those processes took.
func curlAllAtOnce(b *testing.B, lab *testLab, staged []stagedArtifact, parallel int) float64 {
	b.Helper()
	crt, _ := lab.CacheTLSFiles()
	base := "https://" + lab.cacheIP
	dir := filepath.Join(lab.Dir, "bench-curl") // removed by the caller, untimed
	for _, n := range lab.Nodes {
		if err := os.MkdirAll(filepath.Join(dir, n.Name), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	const script = `curl -sS --fail --cacert "$1" -o "$2" "$3" && openssl dgst -sha256 -r "$2" && sync "$2"`
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru0)
	_, err := atOnceWithCPU(staged, parallel, func(a stagedArtifact) error {
		dst := filepath.Join(dir, a.node, a.digest)
		out, err := exec.Command("sh", "-c", script, "sh", crt, dst, cache.ArtifactURL(base, a.digest)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("curl, openssl, sync of %s: %v: %s", a.digest, err, out)
		}
		if sum, _, _ := strings.Cut(string(out), " "); sum != a.digest {
			return fmt.Errorf("curl fetched %s with sha256 %s", a.digest, sum)
		}
		return nil
	})
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru1)
	if err != nil {
		b.Fatal(err)
	}
	return rusageCPU(&ru1) - rusageCPU(&ru0)
}

func hasTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return err
		}
	}
	return nil
}

// atOnceWithCPU runs fn on every item, parallel at a time, and returns the
// CPU seconds this process took meanwhile and the first error.
func atOnceWithCPU[T any](items []T, parallel int, fn func(T) error) (float64, error) {
	queue := make(chan T, len(items))
	for _, it := range items {
		queue <- it
	}
	close(queue)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for range parallel {
		wg.Go(func() {
			for it := range queue {
				if err := fn(it); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	return rusageCPU(&ru1) - rusageCPU(&ru0), first
}

// getInto copies the body of a GET of url into w.
func getInto(c *http.Client, url string, w io.Writer) (int64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.Copy(w, resp.Body)
}

// cacheClient trusts the lab daemon's own certificate, as the nodes do.
func cacheClient(b *testing.B, lab *testLab) *http.Client {
	crt, _ := lab.CacheTLSFiles()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(b, crt)) {
		b.Fatalf("no certificate in %s", crt)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
}

// placeArtifacts puts each node's artifacts in its node cache as staging
// would have: the channel's own files (the bytes staging fetches, Generate
// being deterministic), copied to <root>/cache/sha256/<hex>.
func placeArtifacts(b *testing.B, lab *testLab, perNode map[string][]string) {
	b.Helper()
	files := map[string]string{}
	for _, c := range lab.manifest("3.4.2").Components {
		files[c.Artifact.SHA256] = lab.source("artifacts/" + c.Name + "-3.4.2.tar.gz")
	}
	for _, n := range lab.Nodes {
		for _, d := range perNode[n.Name] {
			src, ok := files[d]
			if !ok {
				b.Fatalf("node %s needs %s, which is no artifact of this lab's 3.4.2", n.Name, d)
			}
			dst := filepath.Join(steps.Layout{Root: n.Root}.CacheDir(), "sha256", d)
			if err := copyFile(src, dst); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
