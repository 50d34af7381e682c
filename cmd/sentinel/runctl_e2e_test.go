package main

// Run control (issue 15, first half): a run survives its terminal (SIGHUP,
// a closed output pipe), goes to the background with --detach, is followed
// with attach and stopped with stop; status's exit codes, the run-start
// and run-end events, `sentinel runs` and the notify command.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/runctl"
)

// gate holds the core's nats migrate hook of 3.4.2 until released: the
// run is mid-step while the test acts.
type gate struct {
	t       *testing.T
	root    string
	reached chan error
	opened  bool // a WaitGate is waiting or was
	arrived bool // the hook is at the gate
	done    bool
}

func gateMigrate(t *testing.T, lab *testLab) *gate {
	t.Helper()
	g := &gate{t: t, root: lab.core().Root, reached: make(chan error, 1)}
	if err := fixtures.InjectFault(g.root, "nats", fixtures.HookMigrate, fixtures.FaultGate, "3.4.2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.release)
	return g
}

// wait returns once the hook is at the gate; it fails the test if ended
// (the run's end, when the test has it) comes first.
func (g *gate) wait(ended <-chan error) {
	g.t.Helper()
	g.opened = true
	go func() {
		_, err := fixtures.WaitGate(g.root, "nats", fixtures.HookMigrate)
		g.reached <- err
	}()
	select {
	case err := <-g.reached:
		if err != nil {
			g.t.Fatal(err)
		}
		g.arrived = true
	case err := <-ended:
		g.t.Fatalf("the run ended before it reached nats migrate: %v", err)
	}
}

// release lets the hook go on; at the test's end it also frees a WaitGate
// still waiting for a hook that never came.
func (g *gate) release() {
	if g.done {
		return
	}
	g.done = true
	if !g.arrived {
		if g.opened { // nobody came: give the waiting reader its EOF
			if f, err := os.OpenFile(filepath.Join(g.root, "fixture-faults", "nats.migrate.reached"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
		return
	}
	if err := fixtures.ReleaseGate(g.root, "nats", fixtures.HookMigrate); err != nil {
		g.t.Error(err)
	}
}

// startRun starts sentinel in a process group of its own, as a shell
// starts a job: a hangup of the terminal reaches the whole group (the
// node agents and hooks it started too).
func startRun(t *testing.T, lab *testLab, args ...string) (*exec.Cmd, io.ReadCloser, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(sentinelBin, args...)
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
	return cmd, out, errOut
}

func logHas(t *testing.T, lab *testLab, s string) {
	t.Helper()
	if data := mustRead(t, lifecycle.LogPath(lab.inventory())); !strings.Contains(string(data), s) {
		t.Errorf("sentinel-cli.log has no %q", s)
	}
}

// Must-show 1: SIGHUP to the run's process group in the middle of a step
// (the gated hook is running): the run goes on to success.
func TestRunSurvivesHangup(t *testing.T) {
	lab := newLab(t, 1, "3.4.1")
	g := gateMigrate(t, lab)
	cmd := exec.Command(sentinelBin, "upgrade", "3.4.2", "--yes")
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a job of its own, as a shell starts it
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second // bounds a failure: a killed run's leftovers may hold its output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	g.wait(ended)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.release()
	if err := <-ended; err != nil {
		t.Fatalf("upgrade after SIGHUP: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	checkAllOn(t, lab, "3.4.2")
	if !strings.Contains(stdout.String(), "Cluster upgraded to 3.4.2") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	logHas(t, lab, "run succeeded")
}

// Must-show 1: the reader of the run's output goes away after three lines
// (`| head -3`), and stderr's too: the run goes on to success, its log
// has all of it.
func TestRunSurvivesClosedPipe(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	g := gateMigrate(t, lab)
	cmd, out, errOut := startRun(t, lab, "upgrade", "3.4.2", "--yes")
	errOut.Close()
	r := bufio.NewReader(out)
	for range 3 {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	out.Close() // what the run writes from now on fails with EPIPE
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	g.wait(ended)
	g.release()
	if err := <-ended; err != nil {
		t.Fatalf("upgrade with its output closed: %v (%v)", err, cmd.ProcessState)
	}
	checkAllOn(t, lab, "3.4.2")
	logHas(t, lab, "step done\t{\"node\": \"core\", \"step\": \"3.4.2/nats/health\"")
	logHas(t, lab, "run succeeded")
}

var detachedLine = regexp.MustCompile(`Run (\S+) goes on in the background \(pid (\d+)\)`)

// Must-show 1: --detach, attach, stop and --resume end to end. The run is
// handed to the background once confirmed; attach follows it; stop asks
// it to halt after the step under way: it ends interrupted (75), and
// --resume finishes it.
func TestDetachAttachStopResume(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	g := gateMigrate(t, lab)
	r := lab.mustSucceed("upgrade", "3.4.2", "--yes", "--detach")
	m := detachedLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("--detach printed no run id:\n%s\n%s", r.stdout, r.stderr)
	}
	id := m[1]
	runs := rollout.Runs{Dir: lab.inventory().State()}
	t.Cleanup(func() { // the detached process is no child of ours
		if cur, _ := runctl.Current(runs); cur != nil && cur.PID > 0 {
			syscall.Kill(-cur.PID, syscall.SIGKILL)
		}
	})
	if !strings.Contains(r.stdout, "sentinel attach "+id) || !strings.Contains(r.stdout, "sentinel stop "+id) {
		t.Errorf("--detach does not say how to attach and stop:\n%s", r.stdout)
	}
	g.wait(nil) // the detached run is in the middle of nats migrate

	if st := lab.sentinel(nil, "status"); st.code != 75 || !strings.Contains(st.stdout, "RUNNING") {
		t.Errorf("status of a running run: exit %d\n%s", st.code, st.stdout)
	}
	// Ctrl-C while attached only detaches: exit 0, the run goes on.
	first := startSentinel(t, lab, "attach")
	waitForLine(t, first.stdout, "Run "+id+" started by ")
	first.cmd.Process.Signal(syscall.SIGINT)
	waitForLine(t, first.stdout, "Detached from run "+id+"; it goes on")
	if err := first.cmd.Wait(); err != nil {
		t.Errorf("attach after Ctrl-C: %v, want exit 0", err)
	}
	if st := lab.sentinel(nil, "status"); st.code != 75 || !strings.Contains(st.stdout, "RUNNING") {
		t.Errorf("status after detaching from the run: exit %d\n%s", st.code, st.stdout)
	}

	att := startSentinel(t, lab, "attach", id)
	waitForLine(t, att.stdout, "Run "+id+" started by ")
	waitForLine(t, att.stdout, "3.4.2/nats/stop")
	if s := lab.mustSucceed("stop", id, "--no-wait"); !strings.Contains(s.stdout, "Asked run "+id) {
		t.Errorf("stop:\n%s", s.stdout)
	}
	waitForLine(t, att.stdout, "stop requested")
	g.release()
	waitForLine(t, att.stdout, "Run "+id+" ended: interrupted (exit 75)")
	if err := att.cmd.Wait(); att.cmd.ProcessState.ExitCode() != 75 {
		t.Errorf("attach to a run that stopped: %v, want exit 75", err)
	}

	st := lab.sentinel(nil, "status")
	if st.code != 75 || !strings.Contains(st.stdout, "INTERRUPTED") {
		t.Errorf("status after stop: exit %d\n%s", st.code, st.stdout)
	}
	if s := lab.sentinel(nil, "stop"); s.code != 2 || !strings.Contains(s.stderr, "no run is running") {
		t.Errorf("stop with nothing running: exit %d\n%s", s.code, s.stderr)
	}
	fixtures.ClearFault(lab.core().Root, "nats", fixtures.HookMigrate)
	lab.mustSucceed("upgrade", "--resume")
	checkAllOn(t, lab, "3.4.2")
	if st := lab.sentinel(nil, "status"); st.code != 0 {
		t.Errorf("status after the resume: exit %d\n%s", st.code, st.stdout)
	}
	out := mustRead(t, runctl.For(lab.inventory().State()).Output(id))
	if !strings.Contains(string(out), "stopping after the current step") {
		t.Errorf("the detached run's output:\n%s", out)
	}
	list := runsJSON(t, lab)
	if len(list) != 1 || list[0].ID != id || list[0].Result != "succeeded" || list[0].Resumes != 1 || list[0].ExitCode == nil || *list[0].ExitCode != 0 {
		t.Errorf("runs: %+v", list)
	}
}

func runsJSON(t *testing.T, lab *testLab) []runctl.Summary {
	t.Helper()
	var doc struct{ Runs []runctl.Summary }
	if err := json.Unmarshal([]byte(lab.mustSucceed("runs", "--output", "json").stdout), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Runs
}

// jsonEvents decodes a --output json stream.
func jsonEvents(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		out = append(out, e)
	}
	return out
}

// eventOf is the first event named name (an empty one when none is).
func eventOf(ev []map[string]any, name string) map[string]any {
	for _, e := range ev {
		if e["event"] == name {
			return e
		}
	}
	return map[string]any{}
}

// Must-show 5: the run-start and run-end events, status's exit codes
// (0 succeeded, 1 failed, 75 interrupted: see TestDetachAttachStopResume),
// `sentinel runs`, `status RUN-ID`, and the notify command told the result.
func TestRunsStatusCodesAndEvents(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	told := filepath.Join(t.TempDir(), "told")
	appendCluster(t, lab, "notify:\n  command: [sh, -c, 'env | grep ^SENTINEL_ | sort >> "+told+"; echo --- >> "+told+"']\n")

	r := lab.mustSucceed("upgrade", "3.4.2", "--yes", "--output", "json")
	ev := jsonEvents(t, r.stdout)
	start, end := eventOf(ev, "run-start"), ev[len(ev)-1]
	host, _ := os.Hostname()
	if start["event"] != "run-start" || start["id"] == nil || start["user"] == "" || start["host"] != host || start["time"] == "" || start["command"] == nil {
		t.Errorf("first event: %v", start)
	}
	first := start["id"].(string)
	if end["event"] != "run-end" || end["id"] != first || end["result"] != "succeeded" || end["exit_code"] != 0.0 || end["notify"] != "ok" {
		t.Errorf("last event: %v", end)
	}
	if st := lab.sentinel(nil, "status"); st.code != 0 {
		t.Errorf("status after success: exit %d", st.code)
	}

	fixtures.InjectFault(lab.core().Root, "router", fixtures.HookHealth, fixtures.FaultFail, "3.4.3")
	r = lab.sentinel(nil, "upgrade", "3.4.3", "--yes", "--output", "json")
	ev = jsonEvents(t, r.stdout)
	end = ev[len(ev)-1]
	if r.code != 1 || end["event"] != "run-end" || end["result"] != "failed" || end["exit_code"] != 1.0 || !strings.Contains(end["error"].(string), "router") {
		t.Errorf("failed run: exit %d, last event %v", r.code, end)
	}
	if nodes, _ := end["failed_nodes"].([]any); len(nodes) != 1 || nodes[0] != "core" {
		t.Errorf("failed nodes: %v", end["failed_nodes"])
	}
	second := end["id"].(string)
	if st := lab.sentinel(nil, "status"); st.code != 1 || !strings.Contains(st.stdout, "FAILED") {
		t.Errorf("status after a failed run: exit %d\n%s", st.code, st.stdout)
	}
	if st := lab.sentinel(nil, "status", first); st.code != 0 || !strings.Contains(st.stdout, first) {
		t.Errorf("status %s: exit %d\n%s", first, st.code, st.stdout)
	}
	if st := lab.sentinel(nil, "status", "20990101T000000.000000000Z-0000"); st.code != 2 {
		t.Errorf("status of no such run: exit %d", st.code)
	}

	runs := runsJSON(t, lab)
	if len(runs) != 2 || runs[0].ID != first || runs[0].Result != "succeeded" || runs[1].ID != second || runs[1].Result != "failed" ||
		*runs[1].ExitCode != 1 || runs[1].User == "" || runs[1].Host != host || runs[1].To != "3.4.3" {
		t.Errorf("runs: %+v", runs)
	}
	text := lab.mustSucceed("runs").stdout
	for _, want := range []string{"RUN", first, second, "upgrade 3.4.1 -> 3.4.2", "succeeded", "failed", host} {
		if !strings.Contains(text, want) {
			t.Errorf("runs has no %q:\n%s", want, text)
		}
	}

	notes := strings.Split(string(mustRead(t, told)), "---\n")
	for i, want := range [][]string{
		{"SENTINEL_RUN_ID=" + first, "SENTINEL_RESULT=succeeded", "SENTINEL_EXIT_CODE=0"},
		{"SENTINEL_RUN_ID=" + second, "SENTINEL_RESULT=failed", "SENTINEL_EXIT_CODE=1", "SENTINEL_FAILED_NODES=core"},
	} {
		for _, w := range want {
			if !strings.Contains(notes[i], w+"\n") {
				t.Errorf("notify command %d was not told %s:\n%s", i+1, w, notes[i])
			}
		}
	}
}

// A notify command that fails or outlasts its timeout is reported; the
// run's result stands.
func TestNotifyFailureDoesNotChangeResult(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	appendCluster(t, lab, "notify:\n  command: [sh, -c, 'echo chat is down; sleep 60']\n  timeout: 1s\n")
	r := lab.mustSucceed("upgrade", "3.4.2", "--yes")
	if !strings.Contains(r.stderr, "did not finish within 1s") || !strings.Contains(r.stderr, "chat is down") || !strings.Contains(r.stderr, "the run's result (succeeded) stands") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	runs := runsJSON(t, lab)
	if len(runs) != 1 || runs[0].Result != "succeeded" || *runs[0].ExitCode != 0 {
		t.Errorf("runs: %+v", runs)
	}
}

// appendCluster adds YAML to the lab's cluster file.
func appendCluster(t *testing.T, lab *testLab, yaml string) {
	t.Helper()
	f, err := os.OpenFile(lab.ClusterFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(yaml); err != nil {
		t.Fatal(err)
	}
}
