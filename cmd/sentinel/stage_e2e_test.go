package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/runctl"
)

// Staging puts every node's artifacts in its node cache and changes
// nothing else; then, with every source gone (the upstream and the cache
// daemon stopped), the window's upgrade runs from the node caches on the
// channel metadata verified at staging, and fetches nothing.
func TestStageThenWindowWithoutSources(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLabWith(t, fixtures.LabOptions{Layout: "twenty", Release: "3.4.1"})
	if len(lab.Nodes) != 20 {
		t.Fatalf("the twenty-node layout has %d nodes", len(lab.Nodes))
	}
	lab.startCache(nil)
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	filled := lab.upstream.ArtifactBytes()
	// The cluster file names the cache node: staging reads from its daemon.
	out := lab.mustSucceed("upgrade", "3.4.2", "--stage", "--yes")
	if !strings.Contains(out.stdout, "Staged 3.4.2 on 20 nodes") {
		t.Errorf("staging output:\n%s", out.stdout)
	}
	for _, n := range lab.Nodes {
		t.Run("staged/"+n.Name, func(t *testing.T) { everyComponentOn(t, n.Root, "3.4.1") })
	}
	if n := lab.upstream.ArtifactBytes() - filled; n != 0 {
		t.Errorf("staging from the cache daemon took %d artifact bytes from the upstream", n)
	}

	// Every source gone: nothing listens on the upstream's or the cache
	// daemon's address.
	lab.stopCache()
	if err := lab.upstream.Close(); err != nil {
		t.Fatal(err)
	}
	// A numbered build, which looks for a newer build of itself first.
	win := lab.mustRun(numberedBuild(t, "0.1.0"), nil, "upgrade", "3.4.2", "--max-in-flight", "4", "--yes")
	if !strings.Contains(win.stderr, "self-update skipped") {
		t.Errorf("the window does not warn that its self-update was skipped:\n%s", win.stderr)
	}
	if !strings.Contains(win.stdout, "Nothing fetched") {
		t.Errorf("the window's summary does not say nothing was fetched:\n%s", win.stdout)
	}
	if !strings.Contains(win.stderr, "no source of the channel answers") || !strings.Contains(win.stderr, "valid until") {
		t.Errorf("the window does not say it runs on the metadata kept at staging:\n%s", win.stderr)
	}
	checkAllOn(t, lab, "3.4.2")
}

// kill -9 during staging, then --resume: what was staged is not
// transferred again, and what was in flight costs at most one checkpoint
// (here less than an artifact) per transfer in flight.
func TestStageKilledThenResumed(t *testing.T) {
	longScenario(t)
	t.Parallel()
	const payload = 8 << 20
	opt := fixtures.LabOptions{Nodes: 5, Release: "3.4.1"}
	opt.Channel.PayloadBytes = map[string]int64{}
	for _, c := range fixtures.Components() {
		opt.Channel.PayloadBytes[c.Name] = payload
	}
	lab := newLabWith(t, opt)
	const parallel = 2
	b := startSentinel(t, lab, "upgrade", "3.4.2", "--stage", "--stage-parallel", "2", "--yes")
	waitForLine(t, b.stdout, "[run] fleet:") // a tenth of the fleet's bytes moved
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	if ws, ok := b.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("staging ended before the kill: %v", b.cmd.ProcessState)
	}
	before := lab.upstream.ArtifactBytes()
	// What the operator is told: what the run was and how to finish it.
	if st := lab.sentinel(nil, "status"); st.code != 75 || !strings.Contains(st.stdout, "staging of 3.4.2 (3.4.1 -> 3.4.2), INTERRUPTED") || !strings.Contains(st.stdout, "`sentinel upgrade --resume` continues") {
		t.Errorf("status after the kill:\n%s", st.stdout)
	}
	if rec := lab.mustSucceed("recover", "--dry-run"); !strings.Contains(rec.stdout, "upgrade --resume") {
		t.Errorf("recover --dry-run after the kill: %s", rec.stdout)
	}

	res := lab.mustSucceed("upgrade", "--resume")
	served := lab.upstream.ArtifactBytes()
	// The resume counts what the killed process staged: the fleet's bytes
	// reach the whole, and the summary says what was fetched before.
	if m := regexp.MustCompile(`fleet ([0-9.]+ [KMG]iB) of ([0-9.]+ [KMG]iB)`).FindAllStringSubmatch(res.stdout, -1); len(m) == 0 || m[len(m)-1][1] != m[len(m)-1][2] {
		t.Errorf("the resume's last fleet line is not the whole (%v):\n%s", m, res.stdout)
	}
	if !strings.Contains(res.stdout, "before this resume") {
		t.Errorf("the resume's summary does not count what the killed process fetched:\n%s", res.stdout)
	}
	for _, n := range lab.Nodes {
		everyComponentOn(t, n.Root, "3.4.1")
	}
	checkAuditOfKilledRun(t, lab)

	// The same staging, never killed, on a lab just like it: what the
	// upstream must send at least (nodes may also take artifacts from
	// each other, so the node caches' sum is no measure).
	clean := newLabWith(t, opt)
	clean.mustSucceed("upgrade", "3.4.2", "--stage", "--stage-parallel", "2", "--yes")
	once := clean.upstream.ArtifactBytes()
	if before >= once {
		t.Fatalf("the kill came after everything was staged (%d of %d bytes): nothing was left to resume", before, once)
	}
	// Each node fetches one artifact at a time, each smaller than a
	// checkpoint (64 MiB): at most the artifacts in flight at the kill
	// are sent again, one per node fetching.
	if limit := once + parallel*int64(payload+1<<20); served > limit {
		t.Errorf("the upstream sent %d bytes over the killed and resumed staging, %d for the same staging once: more than the transfers in flight were sent again", served, once)
	}
	t.Logf("the upstream sent %d bytes before the kill, %d in all; %d for one clean staging", before, served, once)
}

// checkAuditOfKilledRun: the last run's audit gives the killed process an
// end of its own (interrupted, saying what happened), then the resume's
// start and end.
func checkAuditOfKilledRun(t *testing.T, lab *testLab) {
	t.Helper()
	var list struct {
		Runs []runctl.Summary `json:"runs"`
	}
	if err := json.Unmarshal([]byte(lab.mustSucceed("runs", "-o", "json").stdout), &list); err != nil || len(list.Runs) == 0 {
		t.Fatalf("sentinel runs -o json: %v", err)
	}
	id := list.Runs[len(list.Runs)-1].ID
	audit, err := runctl.For(lab.inventory().State()).ReadAudit(id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range audit {
		got = append(got, e.Event+" "+e.Result)
	}
	want := []string{"run-start ", "run-end interrupted", "run-start ", "run-end succeeded"}
	if !slices.Equal(got, want) || !strings.Contains(audit[1].Error, fmt.Sprintf("process %d", audit[0].PID)) || !audit[2].Resumed {
		t.Errorf("run %s's audit: %q (%+v); want %q, the killed process's end saying so", id, got, audit, want)
	}
}
