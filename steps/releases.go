package steps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// pruneReleases removes, for each component listed, the unpacked releases
// sentinel installed (they hold its marker) other than those kept and the
// one current points at. It returns "component version" for each removed.
func (a *Agent) pruneReleases(keep map[string][]string) ([]string, error) {
	var removed []string
	for c, versions := range keep {
		if len(versions) == 0 {
			continue // never drop every release of a component
		}
		dir := a.Layout.ReleasesDir(c)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return removed, err
		}
		cur, err := a.currentVersion(c)
		if err != nil {
			continue // cannot tell which release runs: keep them all
		}
		for _, e := range entries {
			v := e.Name()
			if strings.HasPrefix(v, ".removing-") { // a removal a crash cut short
				removeTree(filepath.Join(dir, v))
				continue
			}
			if !e.IsDir() || strings.HasPrefix(v, ".") || v == cur || slices.Contains(versions, v) {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, v, installedMarker)); err != nil {
				continue // not sentinel's: left alone
			}
			if err := removeTree(filepath.Join(dir, v)); err != nil {
				return removed, fmt.Errorf("removing the old release %s of %s: %w", v, c, err)
			}
			removed = append(removed, c+" "+v)
		}
	}
	sort.Strings(removed)
	return removed, nil
}

// removeTree removes dir even where the archive made directories read-only.
func removeTree(dir string) error {
	// Out of the way first (atomic): a crash leaves a hidden leftover, never
	// a half-removed release under its version's name.
	tmp := dir
	if base := filepath.Base(dir); !strings.HasPrefix(base, ".removing-") {
		tmp = filepath.Join(filepath.Dir(dir), ".removing-"+base)
		if err := os.Rename(dir, tmp); err != nil {
			return err
		}
	}
	filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(tmp)
}
