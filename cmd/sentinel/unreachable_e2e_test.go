package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// awayWhile makes a node's agent unreachable while the flag file exists:
// the agent does not start, as when the node is down.
func awayWhile(t *testing.T, lab *testLab, node string) string {
	t.Helper()
	flag := filepath.Join(t.TempDir(), node+".away")
	if err := lab.SetPrefix(node, []string{"/bin/sh", "-c", `[ -e "$0" ] && exit 255; exec "$@"`, flag}); err != nil {
		t.Fatal(err)
	}
	return flag
}

// A node that cannot be reached for a moment is tried again with backoff,
// and the run goes on once it is back.
func TestUnreachableNodeRetried(t *testing.T) {
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "dea-2")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes")
	waitForLine(t, run.stdout, "[dea-1] 3.4.2/dea_ng/fetch")
	os.WriteFile(flag, nil, 0o644)
	waitForLine(t, run.stdout, "cannot reach node dea-2")
	os.Remove(flag)
	waitForLine(t, run.stdout, "Cluster upgraded to 3.4.2")
	if err := run.cmd.Wait(); err != nil {
		t.Fatalf("upgrade with a node away for a moment: %v", err)
	}
	n, _ := lab.Node("dea-2")
	everyComponentOn(t, n.Root, "3.4.2")
}

// A node that stays away stops the run after its retries, with exit code
// 75 naming it; once it is back, --resume finishes.
func TestUnreachableNodeStopsRunResumable(t *testing.T) {
	lab := newLab(t, 5, "3.4.1")
	lab.SetMaintenanceHook("true")
	flag := awayWhile(t, lab, "router-3")
	run := startSentinel(t, lab, "upgrade", "3.4.2", "--yes", "--node-retries", "1")
	waitForLine(t, run.stdout, "[dea-1] 3.4.2/dea_ng/fetch")
	os.WriteFile(flag, nil, 0o644)
	run.cmd.Wait()
	if code := run.cmd.ProcessState.ExitCode(); code != 75 {
		t.Fatalf("node away for good: exit %d, want 75", code)
	}
	st := lab.sentinel(nil, "status")
	if st.code != 75 || !strings.Contains(st.stdout, "INTERRUPTED") || !strings.Contains(st.stdout, "router-3") {
		t.Errorf("status after losing router-3:\n%s", st.stdout)
	}
	os.Remove(flag)
	lab.mustSucceed("upgrade", "--resume")
	for _, n := range lab.Nodes {
		everyComponentOn(t, n.Root, "3.4.2")
	}
}
