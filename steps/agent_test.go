package steps

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// Every operation is in the agent's table once, and an unknown one is
// refused with the list, before the agent takes its lock.
func TestOps(t *testing.T) {
	seen := map[string]bool{}
	for _, op := range Ops {
		if seen[op] {
			t.Errorf("%q listed twice", op)
		}
		seen[op] = true
	}
	for _, op := range []string{OpFacts, OpFetch, OpBackup, OpInstall, OpStop, OpMigrate, OpSwitch, OpStart, OpHealth, OpCommit,
		OpRestart, OpPrune, OpPruneCache, OpCheckCache, OpProbe, OpRetire, OpUnretire, OpRecordPatch} {
		if !seen[op] {
			t.Errorf("%q is not in Ops", op)
		}
	}
	root := t.TempDir()
	a := &Agent{Node: "n", Layout: Layout{Root: root}}
	_, err := a.Do(t.Context(), "frobnicate", Request{})
	if err == nil || !strings.Contains(err.Error(), `unknown operation "frobnicate" (known: facts, fetch,`) {
		t.Errorf("unknown operation: %v", err)
	}
	if _, err := os.Stat(a.Layout.AgentLock()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an unknown operation took the lock: %v", err)
	}
}
