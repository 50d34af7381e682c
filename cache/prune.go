package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sentinel-paas/sentinel/release"
)

// Usage says which releases of a channel directory use each artifact.
type Usage map[string][]string // digest -> "3.4.2 router", ...

// ChannelUsage reads every manifest under channelDir/releases/*/ and maps
// artifact digests to the releases and components that use them.
func ChannelUsage(channelDir string) (Usage, map[string]*release.Manifest, error) {
	u := Usage{}
	manifests := map[string]*release.Manifest{}
	paths, err := channelDocs(channelDir, "manifest.json")
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
	// The releases' patches: their artifacts belong to the release too.
	catalogs, err := channelDocs(channelDir, "patches.json")
	if err != nil {
		return nil, nil, err
	}
	for _, p := range catalogs {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		cat, err := release.ParsePatchCatalog(p, data)
		if err != nil {
			return nil, nil, err
		}
		for _, pt := range cat.Patches {
			for _, c := range pt.Components {
				u[c.Artifact.SHA256] = append(u[c.Artifact.SHA256], cat.Release+" patch "+pt.Name+" "+c.Name)
			}
		}
	}
	for d := range u {
		sort.Strings(u[d])
	}
	return u, manifests, nil
}

// channelDocs lists a release document of every release the channel
// directory holds: a TUF repository's targets/releases/<v>/<sha256>.name
// (every version of it the repository keeps).
func channelDocs(channelDir, name string) ([]string, error) {
	return filepath.Glob(filepath.Join(channelDir, "targets", "releases", "*", "*."+name))
}

// Prune removes the artifacts of the releases older than keepFrom that no
// release from keepFrom on uses, per the manifests under channelDir, and
// those releases' manifests. An artifact that no manifest names is kept (it
// may belong to a download still under way, or to another cluster) unless
// unreferenced is set. A digest being downloaded is never touched. It
// returns what it removed (or would remove, with dryRun).
func (s *Store) Prune(channelDir, keepFrom string, unreferenced, dryRun bool) ([]Entry, error) {
	usage, manifests, err := ChannelUsage(channelDir)
	if err != nil {
		return nil, err
	}
	if len(manifests) == 0 && unreferenced {
		return nil, fmt.Errorf("no release manifest under %s: refusing to treat every cached artifact as unused (is the channel directory right?)", channelDir)
	}
	var floor release.Version
	if keepFrom != "" {
		if floor, err = release.ParseVersion(keepFrom); err != nil {
			return nil, fmt.Errorf("keep-from: %w", err)
		}
	}
	kept := func(v string) bool { return keepFrom == "" || release.MustVersion(v).Compare(floor) >= 0 }
	var dropReleases []string
	for v := range manifests {
		if !kept(v) {
			dropReleases = append(dropReleases, v)
		}
	}
	// An artifact stays while a kept release, or one of its patches, uses it
	// (every usage label begins with the release).
	keep := map[string]bool{}
	for d, labels := range usage {
		for _, l := range labels {
			if v, _, _ := strings.Cut(l, " "); kept(v) {
				keep[d] = true
			}
		}
	}
	entries, err := s.List()
	if err != nil {
		return nil, err
	}
	var drop []string
	for _, e := range entries {
		if keep[e.Digest] || (len(usage[e.Digest]) == 0 && !unreferenced) {
			continue
		}
		drop = append(drop, e.Digest)
	}
	removed, err := s.remove(entries, drop, dryRun)
	if err != nil || dryRun {
		return removed, err
	}
	for _, v := range dropReleases {
		if err := os.RemoveAll(filepath.Join(channelDir, "targets", "releases", v)); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// PruneExcept removes every stored artifact whose digest is not in keep,
// and the partial downloads of such digests: for a node's own cache, which
// holds nothing but what sentinel put there.
func (s *Store) PruneExcept(keep []string, dryRun bool) ([]Entry, error) {
	set := map[string]bool{}
	for _, d := range keep {
		set[d] = true
	}
	entries, err := s.List()
	if err != nil {
		return nil, err
	}
	var drop []string
	for _, e := range entries {
		if !set[e.Digest] {
			drop = append(drop, e.Digest)
		}
	}
	removed, err := s.remove(entries, drop, dryRun)
	if err != nil || dryRun {
		return removed, err
	}
	partials, err := os.ReadDir(filepath.Join(s.Dir, "partial"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, err
	}
	for _, p := range partials {
		name := p.Name()
		if len(name) < 64 || !isDigestName(name[:64]) || set[name[:64]] || strings.HasSuffix(name, ".lock") {
			continue
		}
		unlock, ok, err := tryLockFile(filepath.Join(s.Dir, "partial", name[:64]+".lock"))
		if err != nil || !ok {
			continue // being downloaded: not ours to touch
		}
		err = os.RemoveAll(filepath.Join(s.Dir, "partial", name))
		unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
	}
	return removed, nil
}

// remove deletes the listed digests, skipping any being downloaded.
func (s *Store) remove(entries []Entry, digests []string, dryRun bool) ([]Entry, error) {
	byDigest := map[string]Entry{}
	for _, e := range entries {
		byDigest[e.Digest] = e
	}
	var removed []Entry
	for _, d := range digests {
		if dryRun {
			removed = append(removed, byDigest[d])
			continue
		}
		if err := os.MkdirAll(filepath.Join(s.Dir, "partial"), 0o755); err != nil {
			return removed, err
		}
		unlock, ok, err := tryLockFile(filepath.Join(s.Dir, "partial", d+".lock"))
		if err != nil {
			return removed, err
		}
		if !ok {
			continue
		}
		err = s.Remove(d)
		unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, byDigest[d])
	}
	return removed, nil
}
