package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
)

// A first Ctrl-C during a rollback does not stop it half-way: the rollback
// is what makes the node whole again.
func TestInterruptDoesNotStopRollback(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	if err := fixtures.InjectFault(core.Root, "router", "health", "fail", "3.4.2"); err != nil {
		t.Fatal(err)
	}
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "3.4.2/router/health") // printed when it failed; the rollback begins
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	run.cmd.Wait()
	if code := run.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d, want 1 (failed and rolled back)", code)
	}
	fixtures.ClearFaults(core.Root)
	everyComponentOn(t, core.Root, "3.4.1")
}

// A stop hook that fails is not run again by the rollback; every other
// component is still brought back.
func TestStopFailureRollsBackTheRest(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	fourth := fixtures.Components()[3].Name
	if err := fixtures.InjectFault(core.Root, fourth, "stop", "fail", "3.4.1"); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "3.4.2/"+fourth+"/stop failed") || !strings.Contains(r.stderr, "rolled back") {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	fixtures.ClearFaults(core.Root)
	everyComponentOn(t, core.Root, "3.4.1")
}

// A component that cannot come back during the restart after the commit
// does not keep the others down, and the run stays resumable: once the
// cause is fixed, --resume finishes it.
func TestRestartFailureIsResumable(t *testing.T) {
	longScenario(t)
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)
	rep, err := resume.Read(ref.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	commitDone := 0
	for _, rec := range rep.Records {
		var v struct{ Step string }
		json.Unmarshal(rec.Data, &v)
		if rec.Type == "step-done" && v.Step == "3.4.2/commit" {
			commitDone = int(rec.Seq)
		}
	}
	if commitDone == 0 {
		t.Fatal("reference run has no commit record")
	}

	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	lab.crashAt(commitDone, "upgrade", "3.4.2", "--yes")
	if err := fixtures.InjectFault(core.Root, "router", "start", "fail", "3.4.2"); err != nil {
		t.Fatal(err)
	}
	r := lab.sentinel(nil, "upgrade", "--resume")
	if r.code != 1 || !strings.Contains(r.stderr, "step restart failed") || !strings.Contains(r.stderr, "sentinel upgrade --resume") {
		t.Fatalf("resume with a broken start: exit %d\n%s", r.code, r.stderr)
	}
	for _, c := range fixtures.Components() {
		v, _ := fixtures.RunningVersion(core.Root, c.Name)
		if c.Name == "router" {
			if v != "" {
				t.Errorf("router runs %q although its start fails", v)
			}
		} else if v != "3.4.2" {
			t.Errorf("%s runs %q: one failed start kept it down", c.Name, v)
		}
	}
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "Pass --resume") {
		t.Errorf("a new upgrade over the open run: exit %d %s", r.code, r.stderr)
	}
	fixtures.ClearFaults(core.Root)
	lab.mustSucceed("upgrade", "--resume")
	if got := nodeState(t, core.Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after fixing and resuming:\n got %v\nwant %v", got, want)
	}
}

// An artifact damaged in the node cache after it was verified is caught:
// between fetch and install, install refuses it (the node is rolled back and
// the file dropped); before a fetch, the fetch verifies it again and
// downloads it anew. Either way the next run succeeds.
func TestDamagedCacheFileIsFetchedAgain(t *testing.T) {
	longScenario(t)
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)

	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	digest := map[string]string{}
	for _, c := range lab.manifest("3.4.2").Components {
		digest[c.Name] = c.Artifact.SHA256
	}
	damage := func(component string) {
		t.Helper()
		p := filepath.Join(core.Root, "cache", "sha256", digest[component])
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s is not in the node cache: %v", component, err)
		}
		data[len(data)-3] ^= 0xff
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	fetches := 1 + 2*len(fixtures.Components()) // run-start, then start and done per fetch
	lab.crashAt(fetches, "upgrade", "3.4.2", "--yes")
	damage("router") // after its fetch, before its install
	r := lab.sentinel(nil, "upgrade", "--resume")
	if r.code != 1 || !strings.Contains(r.stderr, "damaged on disk after it was verified") {
		t.Fatalf("resume over a damaged cache file: exit %d\n%s", r.code, r.stderr)
	}
	everyComponentOn(t, core.Root, "3.4.1")

	damage("nats") // before the next run's fetch
	out := lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(out.stdout, "downloading it again") {
		t.Errorf("the damaged nats artifact was not noticed by fetch:\n%s", out.stdout)
	}
	if got := nodeState(t, core.Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after re-fetch:\n got %v\nwant %v", got, want)
	}
}
