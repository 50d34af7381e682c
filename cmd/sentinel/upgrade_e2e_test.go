package main

import (
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/rollout"

	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/steps"
)

// The micro cloud goes 3.4.1 -> 3.4.2, status shows every component on
// 3.4.2, and a later upgrade to 3.4.3 goes on from there.
func TestUpgradeMicroCloud(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()

	out := lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(out.stdout, "Cluster upgraded to 3.4.2") {
		t.Errorf("upgrade output lacks the summary:\n%s", out.stdout)
	}
	var st lifecycle.StatusReport
	if err := json.Unmarshal([]byte(lab.mustSucceed("status", "--output", "json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Run == nil || st.Run.Status != "succeeded" || st.Run.To != "3.4.2" {
		t.Fatalf("status run = %+v, want a succeeded run to 3.4.2", st.Run)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Release != "3.4.2" || len(st.Nodes[0].Current) != len(fixtures.Components()) {
		t.Fatalf("status nodes = %+v", st.Nodes)
	}
	for c, v := range st.Nodes[0].Current {
		if v != "3.4.2" || st.Nodes[0].Recorded[c] != "3.4.2" {
			t.Errorf("component %s: current %s, recorded %s, want 3.4.2", c, v, st.Nodes[0].Recorded[c])
		}
		if run, _ := fixtures.RunningVersion(core.Root, c); run != "3.4.2" {
			t.Errorf("component %s runs %q, want 3.4.2", c, run)
		}
	}
	text := lab.mustSucceed("status").stdout
	if !strings.Contains(text, "SUCCEEDED") || strings.Count(text, "3.4.2    3.4.2") < len(fixtures.Components()) {
		t.Errorf("status text does not show every component on 3.4.2:\n%s", text)
	}
	// The first line of the run in the log is the command, for manual recovery.
	logData, err := os.ReadFile(filepath.Join(core.Root, "logs", "sentinel-cli.log"))
	if err != nil || !strings.Contains(string(logData), "Running with command: "+sentinelBin+" upgrade 3.4.2 --yes") {
		t.Errorf("sentinel-cli.log lacks the command line (err %v):\n%.500s", err, logData)
	}

	// Already there: nothing to do, exit 0, no change.
	before := nodeDigest(t, core.Root)
	again := lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(again.stdout, "already on 3.4.2") || nodeDigest(t, core.Root) != before {
		t.Errorf("second upgrade to 3.4.2 was not a no-op:\n%s", again.stdout)
	}

	lab.mustSucceed("upgrade", "3.4.3", "--yes")
	rec, err := steps.ReadRecord(core.Root)
	if err != nil || rec.Release != "3.4.3" {
		t.Fatalf("after upgrade to 3.4.3 node.json = %+v, %v", rec, err)
	}
	for _, c := range fixtures.Components() {
		if v, _ := fixtures.RunningVersion(core.Root, c.Name); v != "3.4.3" {
			t.Errorf("%s runs %q after upgrade to 3.4.3", c.Name, v)
		}
	}
}

// --force reinstalls the current release: every component is stopped and
// started again, and the node ends where it was.
func TestForceReinstallsSameRelease(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.2")
	core := lab.core()
	before := nodeState(t, core.Root)
	lab.mustSucceed("upgrade", "3.4.2", "--force", "--yes")
	if after := nodeState(t, core.Root); !reflect.DeepEqual(before, after) {
		t.Errorf("forced reinstall changed the node:\nbefore %v\nafter  %v", before, after)
	}
	events, err := fixtures.Events(core.Root)
	if err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, e := range events {
		if e.Action == "start" && e.Component == "router" {
			starts++
		}
	}
	if starts < 2 {
		t.Errorf("router was not restarted by --force (starts: %d)", starts)
	}
}

// Health fails on the fourth component: the three before it and itself go
// back to 3.4.1, running and healthy; node.json is untouched; exit 1; status
// shows the failed step with the hook's output.
func TestHealthFailureRollsBack(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	fourth := fixtures.Components()[3].Name
	if err := fixtures.InjectFault(core.Root, fourth, "health", "fail", "3.4.2"); err != nil {
		t.Fatal(err)
	}
	recBefore, _ := os.ReadFile(steps.RecordPath(core.Root))

	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"node core", "3.4.2/" + fourth + "/health", "injected health failure"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error output lacks %q:\n%s", want, r.stderr)
		}
	}
	for i, c := range fixtures.Components() {
		link, _ := os.Readlink(filepath.Join(core.Root, "code", c.Name, "current"))
		running, _ := fixtures.RunningVersion(core.Root, c.Name)
		if i > 3 {
			if link != "releases/3.4.1" || running != "3.4.1" {
				t.Errorf("%s (after the failure) was touched: current %s, running %s", c.Name, link, running)
			}
			continue
		}
		if link != "releases/3.4.1" || running != "3.4.1" {
			t.Errorf("%s not rolled back: current %s, running %s", c.Name, link, running)
		}
	}
	if recAfter, _ := os.ReadFile(steps.RecordPath(core.Root)); string(recAfter) != string(recBefore) {
		t.Errorf("node.json changed by a failed run:\n%s", recAfter)
	}
	// Health of every rolled-back component passes: run the real hook.
	fixtures.ClearFaults(core.Root)

	st := lab.sentinel(nil, "status")
	if st.code != 1 {
		t.Errorf("status of a failed run: exit %d, want 1", st.code)
	}
	for _, want := range []string{"FAILED", "3.4.2/" + fourth + "/health", "injected health failure for " + fourth + " 3.4.2", "rollback/3.4.2/" + fourth + "/health"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	// A failed run is over: --resume says so, and a new upgrade may start.
	if r := lab.sentinel(nil, "upgrade", "--resume"); r.code != 2 || !strings.Contains(r.stderr, "cannot be resumed") {
		t.Errorf("--resume after a failed run: exit %d, %s", r.code, r.stderr)
	}
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
}

// A damaged artifact upstream is caught by its sha256 before anything is
// installed: code/ does not change.
func TestDigestMismatchCaughtBeforeInstall(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	art := lab.served("artifacts/router-3.4.2.tar.gz")
	data, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(art, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, filepath.Join(core.Root, "code"))
	running := nodeDigest(t, filepath.Join(core.Root, "var"))

	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, "router-3.4.2.tar.gz") {
		t.Fatalf("exit %d, want 1 naming the artifact and sha256:\n%s", r.code, r.stderr)
	}
	if treeDigest(t, filepath.Join(core.Root, "code")) != before {
		t.Error("code/ changed although an artifact failed verification")
	}
	if nodeDigest(t, filepath.Join(core.Root, "var")) != running {
		t.Error("running components changed although an artifact failed verification")
	}
	if _, err := os.Stat(filepath.Join(core.Root, "cache", "sha256")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(core.Root, "cache", "partial"))
		if len(entries) != 0 {
			t.Errorf("a partial download was left behind: %v", entries)
		}
	}
}

// Bad input: exit code 2 (usage) and a one-line reason, nothing changed.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.2")
	core := lab.core()
	before := nodeDigest(t, core.Root)

	malformed := newLab(t, 1, "3.4.1")
	manifest := malformed.source("releases/3.4.2/manifest.json")
	data, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, []byte(strings.Replace(string(data), `"sha256": "`, `"sha256": "zz`, 1)), 0o644)
	malformed.republish("releases/3.4.2/manifest.json") // signed as published: the parser must catch it
	malformedBefore := nodeDigest(t, malformed.core().Root)

	cases := []struct {
		name string
		lab  *testLab
		env  []string
		args []string
		want string
	}{
		{"unknown version", lab, nil, []string{"upgrade", "9.9.9", "--yes"}, "not offered by the channel"},
		{"not a version", lab, nil, []string{"upgrade", "latest-please", "--yes"}, "not a release version"},
		{"downgrade", lab, nil, []string{"upgrade", "3.4.1", "--yes"}, "does not downgrade"},
		{"downgrade with force", lab, nil, []string{"upgrade", "3.4.1", "--force", "--yes"}, "does not downgrade"},
		{"malformed manifest", malformed, nil, []string{"upgrade", "3.4.2", "--yes"}, "manifest.json is invalid: field components[0] (logyard).artifact.sha256"},
		{"missing cluster file", lab, []string{"SENTINEL_CLUSTER=/nonexistent/cluster.yaml"}, []string{"upgrade", "--yes"}, "/nonexistent/cluster.yaml: file does not exist"},
		{"unknown flag", lab, nil, []string{"upgrade", "--frobnicate"}, "unknown flag"},
		{"resume with version", lab, nil, []string{"upgrade", "3.4.3", "--resume"}, "takes no VERSION"},
		{"nothing to resume", lab, nil, []string{"upgrade", "--resume"}, "no run to resume"},
		{"no confirmation without terminal", lab, nil, []string{"upgrade", "3.4.3"}, "pass --yes"},
		{"bad output format", lab, nil, []string{"upgrade", "--output", "xml"}, "--output must be text or json"},
		{"download-only without cache", lab, nil, []string{"upgrade", "--download-only"}, "--download-only needs --cache-ip"},
		{"bad cache address", lab, nil, []string{"upgrade", "--cache-ip", "10.0.0.1:http", "--yes"}, "is not a port"},
		{"download-only and skip-download", lab, nil, []string{"upgrade", "--download-only", "--skip-download", "--cache-ip", "127.0.0.1"}, "contradict"},
		{"stage and resume", lab, nil, []string{"upgrade", "--stage", "--resume"}, "--stage starts a staging run"},
		{"stage and skip-download", lab, nil, []string{"upgrade", "3.4.3", "--stage", "--skip-download", "--yes"}, "--stage starts a staging run"},
		{"zero stage parallel", lab, nil, []string{"upgrade", "3.4.3", "--stage", "--stage-parallel", "0", "--yes"}, "--stage-parallel must be 1 or more"},
		{"stage parallel without stage", lab, nil, []string{"upgrade", "3.4.3", "--stage-parallel", "4", "--yes"}, "it goes with --stage"},
		// Values refused where they enter, by the rules that read them
		// back: none of them may reach a journal.
		{"negative drain timeout", lab, nil, []string{"upgrade", "3.4.3", "--drain-timeout", "-5m", "--yes"}, "--drain-timeout must be positive"},
		{"zero drain timeout", lab, nil, []string{"upgrade", "3.4.3", "--drain-timeout", "0s", "--yes"}, "--drain-timeout must be positive"},
		{"absurd drain timeout", lab, nil, []string{"upgrade", "3.4.3", "--drain-timeout", "100000h", "--yes"}, "longer than 24h0m0s"},
		{"negative patch drain timeout", lab, nil, []string{"patch", "install", "--drain-timeout", "-1s", "--yes"}, "--drain-timeout must be positive"},
		{"zero watch interval", lab, nil, []string{"status", "--watch", "--interval", "0s"}, "--interval must be positive"},
		{"cache host name", lab, nil, []string{"upgrade", "3.4.3", "--cache-ip", "cache.example.invalid:9077", "--yes"}, "is not IP[:PORT]"}, // refused before any lookup
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.lab.sentinel(tc.env, tc.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\nstderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
			if first := strings.SplitN(strings.TrimSpace(r.stderr), "\n", 2)[0]; !strings.HasPrefix(first, "sentinel: ") {
				t.Errorf("first line is not the reason: %q", first)
			}
		})
	}
	if nodeDigest(t, core.Root) != before {
		t.Error("a refused command changed the node")
	}
	if last, _, err := (rollout.Runs{Dir: lab.inventory().State()}).Latest(); last != nil || err != nil {
		t.Errorf("a refused command left a journal: %+v %v", last, err)
	}
	if nodeDigest(t, malformed.core().Root) != malformedBefore {
		t.Error("a malformed manifest changed the node")
	}
}

// A second upgrade while one holds the run lock is refused with exit 2.
func TestConcurrentUpgradeRefused(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	// The first upgrade hangs in a start hook; the test waits for the
	// hook itself to run, then starts the second.
	if err := fixtures.InjectFault(core.Root, "nats", "start", "hang", "3.4.2"); err != nil {
		t.Fatal(err)
	}
	first := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, first.stdout, "3.4.2/nats/switch") // next: the start hook, which hangs
	before := nodeDigest(t, core.Root)
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "another sentinel run holds the lock") {
		t.Errorf("second upgrade: exit %d, %s", r.code, r.stderr)
	}
	if nodeDigest(t, core.Root) != before {
		t.Error("the refused upgrade changed the node")
	}
	first.kill()
}

// --dry-run prints the plan, text or JSON, and touches nothing.
func TestDryRunTouchesNothing(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	before := treeDigest(t, core.Root)
	text := lab.mustSucceed("upgrade", "3.4.2", "--dry-run").stdout
	for _, want := range []string{"Plan: 3.4.1 -> 3.4.2", "node core", "router", "3.4.1    -> 3.4.2", "install, stop, migrate, switch, start, health", "record release 3.4.2 in node.json"} {
		if !strings.Contains(text, want) {
			t.Errorf("dry-run text lacks %q:\n%s", want, text)
		}
	}
	var plan struct {
		From, To string
		Nodes    []struct {
			Node  string
			Steps []struct{ ID, Op, Component, Version, From string }
		}
	}
	js := lab.mustSucceed("upgrade", "--dry-run", "--output", "json").stdout
	if err := json.Unmarshal([]byte(js), &plan); err != nil {
		t.Fatalf("dry-run JSON: %v\n%s", err, js)
	}
	if plan.From != "3.4.1" || plan.To != "3.4.3" || len(plan.Nodes) != 1 || len(plan.Nodes[0].Steps) == 0 {
		t.Errorf("dry-run JSON plan = %+v", plan)
	}
	// logs/ is the orchestrator's own log: everything else must be as it was.
	os.RemoveAll(filepath.Join(core.Root, "logs"))
	if treeDigest(t, core.Root) != before {
		t.Error("--dry-run changed the node")
	}
}

// Ctrl-C stops the run cleanly after the current step with exit code 75,
// and --resume finishes it.
func TestInterruptThenResume(t *testing.T) {
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)

	lab := newLab(t, 1, "3.4.1")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "3.4.2/nats/migrate")
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := run.cmd.Wait()
	if code := run.cmd.ProcessState.ExitCode(); code != 75 {
		t.Fatalf("interrupted upgrade: exit %d (%v), want 75", code, err)
	}
	st := lab.sentinel(nil, "status")
	if st.code != 75 || !strings.Contains(st.stdout, "INTERRUPTED") || !strings.Contains(st.stdout, "stopped by the operator") {
		t.Errorf("status after Ctrl-C: exit %d\n%s", st.code, st.stdout)
	}
	lab.mustSucceed("upgrade", "--resume")
	if got := nodeState(t, lab.core().Root); !reflect.DeepEqual(got, want) {
		t.Errorf("after interrupt and resume:\n got %v\nwant %v", got, want)
	}
}
