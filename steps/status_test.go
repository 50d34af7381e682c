package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// statusComponent is a component "svc" release 2 whose hooks keep its state
// in a file, log every run, and report through a status hook.
func statusComponent(t *testing.T, a *Agent, status string) (runs string) {
	t.Helper()
	rel := a.Layout.ReleaseDir("svc", "2")
	runs = filepath.Join(t.TempDir(), "runs")
	state := filepath.Join(t.TempDir(), "state")
	schema := filepath.Join(t.TempDir(), "schema")
	writeHook(t, rel, "start", "echo start >> "+runs+"\necho 2 > "+state+"\n")
	writeHook(t, rel, "stop", "echo stop >> "+runs+"\nrm -f "+state+"\n")
	writeHook(t, rel, "migrate", "echo migrate >> "+runs+"\necho 2 > "+schema+"\n")
	if status != "" {
		writeHook(t, rel, "status", strings.NewReplacer("STATE", state, "SCHEMA", schema).Replace(status))
	}
	if err := os.Symlink("releases/2", a.Layout.Current("svc")); err != nil {
		t.Fatal(err)
	}
	return runs
}

const clearStatus = `if [ -f STATE ]; then printf 'state=running\nversion=%s\n' "$(cat STATE)"; else echo state=stopped; fi
if [ -f SCHEMA ]; then echo "schema=$(cat SCHEMA)"; fi
`

// A step repeated after its effect took place (a retry: the journal shows
// it started and never finished) (a crash came between the
// hook and the journal) does not run its hook again when the component
// can say what runs; without a status hook, or with an unclear answer, the
// hook runs again as before.
func TestStatusHookAvoidsRepeatedHooks(t *testing.T) {
	cases := []struct {
		name, status string
		want         string // the hooks that ran for start, start, stop, stop, migrate, migrate
	}{
		{"clear status", clearStatus, "start stop migrate"},
		{"no status hook", "", "start start stop stop migrate migrate"},
		{"unclear status", "echo fine\n", "start start stop stop migrate migrate"},
		{"failing status", "exit 3\n", "start start stop stop migrate migrate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := testAgent(t)
			runs := statusComponent(t, a, c.status)
			req := Request{Component: "svc", Version: "2", FromVersion: "1", Retry: true}
			ctx := context.Background()
			for _, op := range []func(context.Context, Request) (Result, error){a.start, a.start, a.stop, a.stop} {
				if _, err := op(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.migrate(ctx, req); err != nil {
				t.Fatal(err)
			}
			// The hook ran, the mark did not make it to disk: only the
			// status hook can tell.
			os.Remove(a.Layout.Migrated("svc", "2"))
			if _, err := a.migrate(ctx, req); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(runs)
			if got := strings.Join(strings.Fields(string(data)), " "); got != c.want {
				t.Errorf("hook runs: %q, want %q", got, c.want)
			}
		})
	}
}

// On a first run (not a retry) the hooks always run, whatever the status
// hook says: a supervisor may have restarted the component, or a stop hook
// returned before the process was gone.
func TestStatusHookNotAskedOnFirstRun(t *testing.T) {
	a := testAgent(t)
	runs := statusComponent(t, a, clearStatus)
	req := Request{Component: "svc", Version: "2", FromVersion: "1"}
	ctx := context.Background()
	for _, op := range []func(context.Context, Request) (Result, error){a.start, a.start, a.stop, a.stop} {
		if _, err := op(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(runs)
	if got := strings.Join(strings.Fields(string(data)), " "); got != "start start stop stop" {
		t.Errorf("hook runs: %q, want every hook run", got)
	}
}
