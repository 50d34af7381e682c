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

// A step request that does not name its component (the zero request an
// agent reads when its orchestrator died before sending one), or names it
// or its release with a path, is refused before the agent touches the
// node: once such an install made <root>/code/releases, a component
// called "releases" with no current link.
func TestAgentRefusesARequestWithoutItsSubject(t *testing.T) {
	bad := map[string]Request{
		"no component":          {Version: "3.4.2"},
		"component with a path": {Component: "../../etc", Version: "3.4.2"},
		"version with a path":   {Component: "nats", Version: "../3.4.1"},
		"version dot-dot":       {Component: "nats", Version: ".."},
	}
	ops := []string{OpInstall, OpStop, OpMigrate, OpSwitch, OpStart, OpHealth}
	for name, req := range bad {
		for _, op := range ops {
			root := t.TempDir()
			a := &Agent{Node: "n", Layout: Layout{Root: root}}
			_, err := a.Do(t.Context(), op, req)
			if err == nil || !strings.Contains(err.Error(), "bad "+op+" request") || !strings.Contains(err.Error(), "nothing was done") {
				t.Errorf("%s, %s: %v", name, op, err)
			}
			if left, _ := os.ReadDir(root); len(left) != 0 {
				t.Errorf("%s, %s: the refused request left %v in the node root", name, op, left)
			}
		}
	}
	// A commit records a release: it must name one.
	root := t.TempDir()
	_, err := (&Agent{Node: "n", Layout: Layout{Root: root}}).Do(t.Context(), OpCommit, Request{})
	if err == nil || !strings.Contains(err.Error(), "names no release to record") {
		t.Errorf("commit without a release: %v", err)
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("a refused commit left %v in the node root", left)
	}
	// A restart checks every item before it stops anything.
	_, err = (&Agent{Node: "n", Layout: Layout{Root: t.TempDir()}}).Do(t.Context(), OpRestart,
		Request{Restart: []RestartItem{{Component: "nats", Version: "3.4.2"}, {Component: "", Version: "3.4.2"}}})
	if err == nil || !strings.Contains(err.Error(), "bad restart request") {
		t.Errorf("restart with an item that names no component: %v", err)
	}
	// Install, migrate, start and health act on a release: they need its
	// version (a switch to none is a rollback's, and a stop takes the
	// current one).
	for _, op := range []string{OpInstall, OpMigrate, OpStart, OpHealth} {
		_, err := (&Agent{Node: "n", Layout: Layout{Root: t.TempDir()}}).Do(t.Context(), op, Request{Component: "nats"})
		if err == nil || !strings.Contains(err.Error(), `version "" is not a release version`) {
			t.Errorf("%s without a version: %v", op, err)
		}
	}
}
