package steps

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/release"
)

// waitForFile waits for a file a detached process writes.
func waitForFile(t *testing.T, p string) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(p); err == nil && len(data) > 0 {
			return data
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 10s", p)
		}
		time.Sleep(10 * time.Millisecond) // another process writes it: nothing to wait on
	}
}

// The action runs with the orchestrator's proxy in its environment, both
// cases, and its output is kept in the node's action log; a failure
// reports the output.
func TestActionEnvironmentAndOutput(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Node: "n1", Layout: Layout{Root: root}}
	proxy := &release.ProxySettings{HTTP: "http://proxy:3128", HTTPS: "http://proxy:3129", No: "10.0.0.1"}
	envFile := filepath.Join(root, "env")
	res, err := a.Do(t.Context(), OpAction, Request{Proxy: proxy, Action: &ActionRequest{Name: "up", Command: "env > " + envFile + "; echo updated 3 packages"}})
	if err != nil || !res.Changed {
		t.Fatalf("action: %+v, %v", res, err)
	}
	env := strings.Split(string(waitForFile(t, envFile)), "\n")
	for _, want := range []string{"http_proxy=http://proxy:3128", "HTTP_PROXY=http://proxy:3128", "https_proxy=http://proxy:3129", "no_proxy=10.0.0.1", "SENTINEL_NODE=n1", "SENTINEL_ROOT=" + root} {
		if !slices.Contains(env, want) {
			t.Errorf("the action's environment lacks %s", want)
		}
	}
	_, err = a.Do(t.Context(), OpAction, Request{Action: &ActionRequest{Name: "up", Command: "echo 'E: mirror unreachable' >&2; exit 100"}})
	var he *HookError
	if !errors.As(err, &he) || !strings.Contains(he.Output, "E: mirror unreachable") || !strings.Contains(he.Reason, "exit status 100") {
		t.Fatalf("failed action: %v (%+v)", err, he)
	}
	log, _ := os.ReadFile(a.Layout.ActionLog("up"))
	for _, want := range []string{"updated 3 packages", "E: mirror unreachable", "== failed: exit status 100"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the action log lacks %q:\n%s", want, log)
		}
	}
	_, err = a.Do(t.Context(), OpAction, Request{Action: &ActionRequest{Name: "slow", Command: "sleep 30", Timeout: release.Duration(100 * time.Millisecond)}})
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "timed out after 100ms") {
		t.Errorf("slow action: %v", err)
	}
}

// The reboot follows its policy; it marks the node as rebooting until
// var/run is emptied (a boot); tried again after the reboot happened, it
// does not reboot twice.
func TestRebootPolicyAndMarks(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Node: "n1", Layout: Layout{Root: root}}
	ran := filepath.Join(root, "rebooted")
	cmd := "echo $SENTINEL_NODE >> " + ran
	res, err := a.Do(t.Context(), OpReboot, Request{Reboot: &RebootRequest{Policy: RebootIfRequired, Command: cmd}})
	if err != nil || res.Changed || !strings.Contains(res.Note, "no reboot required") {
		t.Fatalf("if-required without the file: %+v, %v", res, err)
	}
	if res, _ := a.Do(t.Context(), OpBootState, Request{}); res.Rebooting {
		t.Error("no reboot asked for, yet the node says it is rebooting")
	}
	if err := os.MkdirAll(filepath.Dir(a.Layout.RebootRequired()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.Layout.RebootRequired(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Do(t.Context(), OpReboot, Request{Reboot: &RebootRequest{Policy: RebootNever, Command: cmd}}); err != nil || res.Changed {
		t.Fatalf("never: %+v, %v", res, err)
	}
	res, err = a.Do(t.Context(), OpReboot, Request{Reboot: &RebootRequest{Policy: RebootIfRequired, Command: cmd}})
	if err != nil || !res.Changed {
		t.Fatalf("if-required with the file: %+v, %v", res, err)
	}
	if got := strings.TrimSpace(string(waitForFile(t, ran))); got != "n1" {
		t.Errorf("the reboot command ran as %q", got)
	}
	if res, _ := a.Do(t.Context(), OpBootState, Request{}); !res.Rebooting {
		t.Error("after its reboot began the node does not say it is rebooting")
	}
	// The boot empties var/run.
	if err := os.RemoveAll(filepath.Join(root, "var", "run")); err != nil {
		t.Fatal(err)
	}
	if res, _ := a.Do(t.Context(), OpBootState, Request{}); res.Rebooting {
		t.Error("after the boot the node still says it is rebooting")
	}
	res, err = a.Do(t.Context(), OpReboot, Request{Retry: true, Reboot: &RebootRequest{Policy: RebootAlways, Command: cmd}})
	if err != nil || res.Changed || res.Note != "rebooted already" {
		t.Errorf("reboot tried again after the boot: %+v, %v", res, err)
	}
	if _, err := a.Do(t.Context(), OpReboot, Request{Reboot: &RebootRequest{Policy: "sometimes"}}); err == nil {
		t.Error("an unknown policy was accepted")
	}
}
