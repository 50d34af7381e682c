package release

import (
	"fmt"
	"sort"
	"strings"
)

// Index is the channel's table of contents: the releases it offers and the
// direct upgrade paths between them.
type Index struct {
	Channel      string        `json:"channel"`
	Releases     []IndexEntry  `json:"releases"`
	UpgradePaths []UpgradePath `json:"upgrade_paths"`
}

// IndexEntry points at one release's manifest, relative to the index.
type IndexEntry struct {
	Version  string `json:"version"`
	Manifest string `json:"manifest"`
	// Patches, when set, points at the release's patch catalog.
	Patches string `json:"patches,omitempty"`
}

// UpgradePath is one supported direct hop.
type UpgradePath struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ParseIndex decodes and validates a channel index.
func ParseIndex(name string, data []byte) (*Index, error) {
	var ix Index
	if err := decodeStrict(data, &ix); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	if err := ix.validate(); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	return &ix, nil
}

func (ix *Index) validate() error {
	if len(ix.Releases) == 0 {
		return fieldErr("releases", fmt.Errorf("no releases"))
	}
	seen := map[string]bool{}
	for i, r := range ix.Releases {
		if _, err := ParseVersion(r.Version); err != nil {
			return fieldErr(fmt.Sprintf("releases[%d].version", i), err)
		}
		if seen[r.Version] {
			return fieldErr(fmt.Sprintf("releases[%d].version", i), fmt.Errorf("release %s listed twice", r.Version))
		}
		seen[r.Version] = true
		if r.Manifest == "" {
			return fieldErr(fmt.Sprintf("releases[%d].manifest", i), fmt.Errorf("missing"))
		}
	}
	for i, p := range ix.UpgradePaths {
		for _, v := range []string{p.From, p.To} {
			if !seen[v] {
				return fieldErr(fmt.Sprintf("upgrade_paths[%d]", i), fmt.Errorf("release %q is not listed in releases", v))
			}
		}
		if MustVersion(p.From).Compare(MustVersion(p.To)) >= 0 {
			return fieldErr(fmt.Sprintf("upgrade_paths[%d]", i), fmt.Errorf("%s -> %s does not go forward", p.From, p.To))
		}
	}
	return nil
}

// Entry returns the index entry of version v.
func (ix *Index) Entry(v string) (IndexEntry, bool) {
	for _, r := range ix.Releases {
		if r.Version == v {
			return r, true
		}
	}
	return IndexEntry{}, false
}

// Latest returns the newest release the channel offers.
func (ix *Index) Latest() string {
	vs := ix.Versions()
	return vs[len(vs)-1]
}

// Versions lists the offered releases, oldest first.
func (ix *Index) Versions() []string {
	out := make([]string, 0, len(ix.Releases))
	for _, r := range ix.Releases {
		out = append(out, r.Version)
	}
	sort.Slice(out, func(i, j int) bool { return MustVersion(out[i]).Compare(MustVersion(out[j])) < 0 })
	return out
}

// Path returns the releases to install, in order, to go from one release to
// another: the shortest chain of direct hops, preferring newer intermediate
// releases on ties. from itself is not included.
func (ix *Index) Path(from, to string) ([]string, error) {
	if _, ok := ix.Entry(to); !ok {
		return nil, &UnknownReleaseError{Version: to, Offered: ix.Versions()}
	}
	next := map[string][]string{}
	for _, p := range ix.UpgradePaths {
		next[p.From] = append(next[p.From], p.To)
	}
	for k := range next {
		sort.Slice(next[k], func(i, j int) bool { return MustVersion(next[k][i]).Compare(MustVersion(next[k][j])) > 0 })
	}
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var hops []string
			for v := to; v != from; v = prev[v] {
				hops = append([]string{v}, hops...)
			}
			return hops, nil
		}
		for _, n := range next[cur] {
			if _, done := prev[n]; !done {
				prev[n] = cur
				queue = append(queue, n)
			}
		}
	}
	return nil, &NoPathError{From: from, To: to}
}

// UnknownReleaseError: the channel does not offer the requested release.
type UnknownReleaseError struct {
	Version string
	Offered []string
}

func (e *UnknownReleaseError) Error() string {
	return fmt.Sprintf("release %s is not offered by the channel (it offers %s): check the version, or whether the publisher has released it yet", e.Version, strings.Join(e.Offered, ", "))
}

// NoPathError: no chain of supported upgrades leads from one release to the other.
type NoPathError struct{ From, To string }

func (e *NoPathError) Error() string {
	return fmt.Sprintf("the channel lists no upgrade path from %s to %s", e.From, e.To)
}
