package rollout

import (
	"strings"
	"testing"
)

// Rollback messages read as sentences whatever is empty: no double
// spaces, no stray commas or full stops. On the commit where the issue was
// filed a failure before any component was replaced read "rolled back  to
// 3.4.1, node.json unchanged."
func TestStepFailedMessages(t *testing.T) {
	for _, e := range []*StepFailedError{
		{Node: "core", Step: "3.4.2/nats/install", Err: "unpacking failed.\n", RolledTo: "3.4.1"},
		{Node: "core", Step: "3.4.2/nats/install", Err: "unpacking failed", RolledBack: []string{""}, RolledTo: "3.4.1"}, // a DEA's unretire
		{Node: "core", Step: "3.4.2/nats/start", Err: "hook exited 1", RolledBack: []string{"nats", "router"}, RolledTo: "3.4.1"},
		{Node: "core", Step: "3.4.2/nats/start", Err: "hook exited 1", RolledBack: []string{"nats"}, RolledTo: "3.4.1", Kept: "the patch is not recorded on that node"},
		{Node: "core", Step: "3.4.2/nats/start", Err: "hook  exited 1,", RollbackErr: "rollback/3.4.2/nats/start: hook exited 2.", RolledTo: "3.4.1"},
		{Node: "core", Step: "3.4.2/nats/start", Err: "hook exited 1", RolledBack: []string{"nats"}},
		{Node: "core", Step: "3.4.2/nats/fetch", Err: "connection refused", Resumable: true},
	} {
		msg := e.Error()
		for _, bad := range []string{"  ", " ,", ",,", ", .", ".;", "..", ". .", ";;", " .", "\n"} {
			if strings.Contains(msg, bad) {
				t.Errorf("%q in %q", bad, msg)
			}
		}
		if !strings.HasPrefix(msg, "node core: step "+e.Step+" failed: ") || !strings.Contains(msg, "sentinel upgrade") {
			t.Errorf("message %q", msg)
		}
	}
}
