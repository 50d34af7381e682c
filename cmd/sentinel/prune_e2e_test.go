package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sentinel-paas/sentinel/steps"
)

// After a node's upgrade succeeds, its old unpacked releases are pruned:
// each component keeps the release it runs and the one before it (for a
// rollback), nothing older.
func TestOldReleasesPrunedKeepingThePrevious(t *testing.T) {
	longScenario(t)
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	core := lab.core()
	layout := steps.Layout{Root: core.Root}
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	lab.mustSucceed("upgrade", "3.4.3", "--yes")
	before, after := lab.manifest("3.4.2"), lab.manifest("3.4.3")
	checked := 0
	for _, c := range after.Components {
		if !c.AppliesTo(core.Roles) {
			continue
		}
		want := []string{c.Version}
		for _, p := range before.Components {
			if p.Name == c.Name && p.Version != c.Version {
				want = append(want, p.Version)
			}
		}
		entries, err := os.ReadDir(layout.ReleasesDir(c.Name))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: releases %v in %s, want %v", c.Name, got, filepath.Dir(layout.ReleaseDir(c.Name, c.Version)), want)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no component of the core node checked")
	}
}
