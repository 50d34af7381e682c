package main

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
)

// Staging puts every node's artifacts in its node cache and changes
// nothing else; then, with every source gone (the upstream stopped, no
// cache daemon), the window's upgrade runs from the node caches on the
// channel metadata verified at staging, and fetches nothing.
func TestStageThenWindowWithoutSources(t *testing.T) {
	longScenario(t)
	lab := newLab(t, 5, "3.4.1")
	out := lab.mustSucceed("upgrade", "3.4.2", "--stage", "--stage-parallel", "3", "--yes")
	if !strings.Contains(out.stdout, "Staged 3.4.2 on") {
		t.Errorf("staging output:\n%s", out.stdout)
	}
	for _, n := range lab.Nodes {
		t.Run("staged/"+n.Name, func(t *testing.T) { everyComponentOn(t, n.Root, "3.4.1") })
	}
	if lab.upstream.ArtifactBytes() == 0 {
		t.Fatal("staging took no artifact bytes from the upstream")
	}

	// Every source gone: nothing listens on the upstream's address.
	if err := lab.upstream.Close(); err != nil {
		t.Fatal(err)
	}
	win := lab.mustSucceed("upgrade", "3.4.2", "--yes")
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

	lab.mustSucceed("upgrade", "--resume")
	served := lab.upstream.ArtifactBytes()
	var staged int64
	for _, n := range lab.Nodes {
		filepath.WalkDir(filepath.Join(n.Root, "cache"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.Contains(p, "sha256") {
				if fi, err := d.Info(); err == nil {
					staged += fi.Size()
				}
			}
			return nil
		})
		everyComponentOn(t, n.Root, "3.4.1")
	}
	if before >= staged {
		t.Fatalf("the kill came after everything was staged (%d of %d bytes): nothing was left to resume", before, staged)
	}
	// Each node fetches one artifact at a time, each smaller than a
	// checkpoint: at most one artifact per node in flight is sent again.
	if limit := staged + parallel*int64(payload+1<<20); served > limit {
		t.Errorf("the upstream sent %d bytes for %d staged (%d before the kill): more than one artifact per transfer in flight again", served, staged, before)
	}
	t.Logf("staged %d bytes; the upstream sent %d before the kill, %d in all", staged, before, served)
}
