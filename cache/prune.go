package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/sentinel-paas/sentinel/release"
)

// Usage says which releases of a channel directory use each artifact.
type Usage map[string][]string // digest -> "3.4.2 router", ...

// ChannelUsage reads every manifest under channelDir/releases/*/ and maps
// artifact digests to the releases and components that use them.
func ChannelUsage(channelDir string) (Usage, map[string]*release.Manifest, error) {
	u := Usage{}
	manifests := map[string]*release.Manifest{}
	paths, err := filepath.Glob(filepath.Join(channelDir, "releases", "*", "manifest.json"))
	if err != nil {
		return nil, nil, err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		m, err := release.ParseManifest(p, data)
		if err != nil {
			return nil, nil, err
		}
		manifests[m.Version] = m
		for _, c := range m.Components {
			u[c.Artifact.SHA256] = append(u[c.Artifact.SHA256], m.Version+" "+c.Name)
		}
	}
	for d := range u {
		sort.Strings(u[d])
	}
	return u, manifests, nil
}

// Prune removes every stored artifact that no release from keepFrom on
// (all releases when keepFrom is "") uses, per the manifests under
// channelDir, and every partial download of such an artifact. It returns
// what it removed (or would remove, with dryRun).
func (s *Store) Prune(channelDir, keepFrom string, dryRun bool) ([]Entry, error) {
	_, manifests, err := ChannelUsage(channelDir)
	if err != nil {
		return nil, err
	}
	var floor release.Version
	if keepFrom != "" {
		if floor, err = release.ParseVersion(keepFrom); err != nil {
			return nil, fmt.Errorf("keep-from: %w", err)
		}
	}
	keep := map[string]bool{}
	for v, m := range manifests {
		if keepFrom != "" && release.MustVersion(v).Compare(floor) < 0 {
			continue
		}
		for _, c := range m.Components {
			keep[c.Artifact.SHA256] = true
		}
	}
	return s.pruneExcept(keep, dryRun)
}

// PruneExcept removes every stored artifact and partial download whose
// digest is not in keep.
func (s *Store) PruneExcept(keep []string, dryRun bool) ([]Entry, error) {
	set := map[string]bool{}
	for _, d := range keep {
		set[d] = true
	}
	return s.pruneExcept(set, dryRun)
}

func (s *Store) pruneExcept(keep map[string]bool, dryRun bool) ([]Entry, error) {
	entries, err := s.List()
	if err != nil {
		return nil, err
	}
	var removed []Entry
	for _, e := range entries {
		if keep[e.Digest] {
			continue
		}
		removed = append(removed, e)
		if !dryRun {
			if err := s.Remove(e.Digest); err != nil {
				return removed, err
			}
		}
	}
	partials, err := os.ReadDir(filepath.Join(s.Dir, "partial"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, err
	}
	for _, p := range partials {
		name := p.Name()
		if len(name) < 64 || !isDigestName(name[:64]) || keep[name[:64]] || dryRun {
			continue
		}
		if err := os.Remove(filepath.Join(s.Dir, "partial", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
	}
	return removed, nil
}
