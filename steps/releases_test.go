package steps

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The prune step removes only the old releases sentinel installed: never
// the current one, never those kept, never a directory it did not make,
// and a read-only tree goes too.
func TestPruneReleases(t *testing.T) {
	a := &Agent{Node: "n", Layout: Layout{Root: t.TempDir()}}
	dir := a.Layout.ReleasesDir("nats")
	for _, v := range []string{"3.4.0", "3.4.1", "3.4.2", "3.4.3", "custom"} {
		if err := os.MkdirAll(filepath.Join(dir, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if v != "custom" {
			os.WriteFile(filepath.Join(dir, v, installedMarker), []byte("x\n"), 0o444)
		}
	}
	os.Chmod(filepath.Join(dir, "3.4.0", "bin"), 0o555)
	if err := os.Symlink("releases/3.4.1", a.Layout.Current("nats")); err != nil {
		t.Fatal(err)
	}
	removed, err := a.pruneReleases(map[string][]string{"nats": {"3.4.3", "3.4.2"}, "absent": {"1.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"nats 3.4.0"}) {
		t.Errorf("removed %v, want [nats 3.4.0]", removed)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"3.4.1", "3.4.2", "3.4.3", "custom"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
