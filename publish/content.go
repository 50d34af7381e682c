package publish

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

// The targets of a channel's documents.
const (
	IndexTarget  = "index.json"
	ArtifactsDir = "artifacts"
)

// ManifestTarget is the target of release v's manifest.
func ManifestTarget(v string) string { return "releases/" + v + "/manifest.json" }

// CatalogTarget is the target of release v's patch catalog.
func CatalogTarget(v string) string { return "releases/" + v + "/patches.json" }

// maxDescriptionBytes bounds a description file.
const maxDescriptionBytes = 1 << 20

// ReleaseDescription is the small file a publisher writes for a release
// (release.json): the rest of the manifest (digests, sizes, URLs) is
// computed from the artifacts.
type ReleaseDescription struct {
	Version string `json:"version"`
	// Channel names the channel in the index (its first release sets it).
	Channel string `json:"channel,omitempty"`
	// UpgradeFrom lists the releases with a direct upgrade path to this one.
	UpgradeFrom []string               `json:"upgrade_from,omitempty"`
	Components  []ComponentDescription `json:"components"`
}

// ComponentDescription is one component of a release description.
type ComponentDescription struct {
	Name string `json:"name"`
	// Version defaults to the release's.
	Version  string        `json:"version,omitempty"`
	Roles    []string      `json:"roles"`
	Artifact string        `json:"artifact"` // file name in the artifacts directory
	Hooks    release.Hooks `json:"hooks"`
}

// componentName is what release manifests accept as a component name.
// (compiled on first use, as release's).
var componentName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`) })

// ParseReleaseDescription decodes and checks a release description.
func ParseReleaseDescription(name string, data []byte) (*ReleaseDescription, error) {
	var d ReleaseDescription
	if err := decodeStrict(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := release.ParseVersion(d.Version); err != nil {
		return nil, fmt.Errorf("%s: field version: %w", name, err)
	}
	if len(d.Components) == 0 {
		return nil, fmt.Errorf("%s: field components: no components", name)
	}
	for i, c := range d.Components {
		at := fmt.Sprintf("%s: components[%d] (%s)", name, i, c.Name)
		if !componentName().MatchString(c.Name) {
			return nil, fmt.Errorf("%s.name: %q is not a component name (lowercase letters, digits, '_' and '-')", at, c.Name)
		}
		if !artifactFile(c.Artifact) {
			return nil, fmt.Errorf("%s.artifact: %q is not a file name of [a-zA-Z0-9._+-]", at, c.Artifact)
		}
		if len(c.Roles) == 0 {
			return nil, fmt.Errorf("%s.roles: no roles", at)
		}
		for _, r := range c.Roles {
			if !release.KnownRole(r) {
				return nil, fmt.Errorf("%s.roles: unknown role %q", at, r)
			}
		}
	}
	return &d, nil
}

func artifactFile(name string) bool {
	return name != "" && !strings.Contains(name, "/") && validTarget(name)
}

func decodeStrict(data []byte, v any) error {
	if len(data) > maxDescriptionBytes {
		return fmt.Errorf("larger than %d bytes", maxDescriptionBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// Archive is what Inspect found in a component's .tar.gz.
type Archive struct {
	UnpackedSize int64
	Hooks        map[string]bool // hook name -> executable
}

// requiredHooks must be in every component's archive, executable.
var requiredHooks = []string{"stop", "start", "health"}

// Inspect reads a .tar.gz: the bytes it unpacks to, and its hooks/.
func Inspect(data []byte) (*Archive, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a gzip archive: %w", err)
	}
	a := &Archive{Hooks: map[string]bool{}}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		a.UnpackedSize += h.Size
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		if dir, hook := path.Split(name); dir == "hooks/" && h.Typeflag == tar.TypeReg {
			a.Hooks[hook] = h.Mode&0o111 != 0
		}
	}
	return a, nil
}

// checkHooks: the required hooks, and every hook in hooks/, executable;
// a DEA component also drains and reports its capacity.
func (a *Archive) checkHooks(roles []string) error {
	need := slices.Clone(requiredHooks)
	if slices.Contains(roles, release.RoleDEA) {
		need = append(need, "drain", "capacity")
	}
	for _, h := range need {
		if _, ok := a.Hooks[h]; !ok {
			return fmt.Errorf("hooks/%s is missing", h)
		}
	}
	for h, x := range a.Hooks {
		if !x {
			return fmt.Errorf("hooks/%s is not executable", h)
		}
	}
	return nil
}

// AddArtifact adds an artifact target (artifacts/<file>) with its signed
// unpacked size, and returns the manifest's entry for it, relative to a
// document in releases/<v>/.
func (r *Repo) AddArtifact(file string, data []byte, unpacked int64) (release.Artifact, error) {
	var cu channel.Custom
	cu.Sentinel.UnpackedSize = unpacked
	if err := r.AddTarget(ArtifactsDir+"/"+file, data, &cu); err != nil {
		return release.Artifact{}, err
	}
	sum := sha256.Sum256(data)
	return release.Artifact{URL: "../../" + ArtifactsDir + "/" + file, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}, nil
}

// AddRelease adds release d with the artifacts it names from dir: each
// archive's sha256, size and unpacked size computed, its hooks checked;
// then the manifest and the index (with d's upgrade paths). Publish
// makes it visible.
func (r *Repo) AddRelease(dir string, d *ReleaseDescription) error {
	m := release.Manifest{Version: d.Version}
	for _, c := range d.Components {
		data, err := os.ReadFile(filepath.Join(dir, c.Artifact))
		if err != nil {
			return err
		}
		arch, err := Inspect(data)
		if err == nil {
			err = arch.checkHooks(c.Roles)
		}
		if err != nil {
			return fmt.Errorf("component %s, artifact %s: %w", c.Name, c.Artifact, err)
		}
		a, err := r.AddArtifact(c.Artifact, data, arch.UnpackedSize)
		if err != nil {
			return err
		}
		v := c.Version
		if v == "" {
			v = d.Version
		}
		m.Components = append(m.Components, release.Component{Name: c.Name, Version: v, Roles: c.Roles, Artifact: a, Hooks: c.Hooks})
	}
	doc, err := marshal(&m)
	if err != nil {
		return err
	}
	if _, err := release.ParseManifest(ManifestTarget(d.Version), doc); err != nil {
		return err
	}
	ix, err := r.Index()
	if err != nil {
		return err
	}
	if ix == nil {
		ix = &release.Index{Channel: d.Channel}
	}
	if _, dup := ix.Entry(d.Version); dup {
		return fmt.Errorf("release %s is already in the channel: publish a new version instead of replacing one nodes may have installed", d.Version)
	}
	ix.Releases = append(ix.Releases, release.IndexEntry{Version: d.Version, Manifest: ManifestTarget(d.Version)})
	for _, from := range d.UpgradeFrom {
		ix.UpgradePaths = append(ix.UpgradePaths, release.UpgradePath{From: from, To: d.Version})
	}
	if err := r.AddTarget(ManifestTarget(d.Version), doc, nil); err != nil {
		return err
	}
	return r.putIndex(ix)
}

// Index is the channel's current index (nil before its first release).
func (r *Repo) Index() (*release.Index, error) {
	data, ok, err := r.Target(IndexTarget)
	if err != nil || !ok {
		return nil, err
	}
	return release.ParseIndex(IndexTarget, data)
}

func (r *Repo) putIndex(ix *release.Index) error {
	if ix.UpgradePaths == nil {
		ix.UpgradePaths = []release.UpgradePath{}
	}
	doc, err := marshal(ix)
	if err != nil {
		return err
	}
	if _, err := release.ParseIndex(IndexTarget, doc); err != nil {
		return fmt.Errorf("the index would not be valid: %w", err)
	}
	return r.AddTarget(IndexTarget, doc, nil)
}

func marshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

// PatchDescription is the small file a publisher writes for a patch
// (patch.json): a patch of the catalog whose components name artifact
// files instead of giving their digests.
type PatchDescription struct {
	Release     string   `json:"release"`
	ID          int      `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Severity    string   `json:"severity"`
	Roles       []string `json:"roles"`
	Components  []struct {
		Name     string        `json:"name"`
		Version  string        `json:"version"`
		Artifact string        `json:"artifact"`
		Restart  bool          `json:"restart"`
		Hooks    release.Hooks `json:"hooks"`
	} `json:"components"`
}

// ParsePatchDescription decodes a patch description; AddPatch checks it
// against its release's catalog and manifest.
func ParsePatchDescription(name string, data []byte) (*PatchDescription, error) {
	var d PatchDescription
	if err := decodeStrict(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i, c := range d.Components {
		if !artifactFile(c.Artifact) {
			return nil, fmt.Errorf("%s: components[%d].artifact: %q is not a file name", name, i, c.Artifact)
		}
	}
	return &d, nil
}

// AddPatch adds patch d of an existing release, with its artifacts from
// dir, to the release's catalog.
func (r *Repo) AddPatch(dir string, d *PatchDescription) error {
	ix, err := r.Index()
	if err != nil || ix == nil {
		return fmt.Errorf("the channel has no index yet: add release %s first (%v)", d.Release, err)
	}
	mdata, ok, err := r.Target(ManifestTarget(d.Release))
	if err != nil || !ok {
		return fmt.Errorf("the channel has no release %s (%v)", d.Release, err)
	}
	m, err := release.ParseManifest(ManifestTarget(d.Release), mdata)
	if err != nil {
		return err
	}
	cat := &release.Catalog{Release: d.Release, Patches: []release.Patch{}}
	if data, ok, err := r.Target(CatalogTarget(d.Release)); err != nil {
		return err
	} else if ok {
		if cat, err = release.ParsePatchCatalog(CatalogTarget(d.Release), data); err != nil {
			return err
		}
	}
	p := release.Patch{ID: d.ID, Name: d.Name, Description: d.Description, Severity: d.Severity, Roles: d.Roles}
	for _, c := range d.Components {
		data, err := os.ReadFile(filepath.Join(dir, c.Artifact))
		if err != nil {
			return err
		}
		arch, err := Inspect(data)
		if err != nil {
			return fmt.Errorf("patch %s, artifact %s: %w", d.Name, c.Artifact, err)
		}
		a, err := r.AddArtifact(c.Artifact, data, arch.UnpackedSize)
		if err != nil {
			return err
		}
		p.Components = append(p.Components, release.PatchComponent{Name: c.Name, Version: c.Version, Artifact: a, Hooks: c.Hooks, Restart: c.Restart})
	}
	cat.Patches = append(cat.Patches, p)
	return r.PutCatalog(ix, m, cat)
}

// PutCatalog checks cat against its release's manifest and writes it,
// naming it in the index.
func (r *Repo) PutCatalog(ix *release.Index, m *release.Manifest, cat *release.Catalog) error {
	doc, err := marshal(cat)
	if err != nil {
		return err
	}
	name := CatalogTarget(cat.Release)
	parsed, err := release.ParsePatchCatalog(name, doc)
	if err != nil {
		return err
	}
	if err := parsed.Check(name, m); err != nil {
		return err
	}
	if err := r.AddTarget(name, doc, nil); err != nil {
		return err
	}
	for i := range ix.Releases {
		if ix.Releases[i].Version == cat.Release {
			ix.Releases[i].Patches = name
		}
	}
	return r.putIndex(ix)
}

// AddSentinelBuild adds a sentinel executable (tools/sentinel-V-OS-ARCH)
// and lists it in tools/sentinel.json, replacing a build of the same
// platform and version.
func (r *Repo) AddSentinelBuild(file, version, goos, goarch string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("sentinel-%s-%s-%s", version, goos, goarch)
	if err := r.AddTarget(path.Join("tools", name), data, nil); err != nil {
		return err
	}
	var doc release.SentinelBuilds
	if cur, ok, err := r.Target(release.SentinelBuildsPath); err != nil {
		return err
	} else if ok {
		parsed, err := release.ParseSentinelBuilds(release.SentinelBuildsPath, cur)
		if err != nil {
			return err
		}
		doc = *parsed
	}
	doc.Builds = slices.DeleteFunc(doc.Builds, func(b release.SentinelBuild) bool {
		return b.Version == version && b.OS == goos && b.Arch == goarch
	})
	sum := sha256.Sum256(data)
	doc.Builds = append(doc.Builds, release.SentinelBuild{Version: version, OS: goos, Arch: goarch,
		Artifact: release.Artifact{URL: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}})
	out, err := marshal(&doc)
	if err != nil {
		return err
	}
	if _, err := release.ParseSentinelBuilds(release.SentinelBuildsPath, out); err != nil {
		return err
	}
	return r.AddTarget(release.SentinelBuildsPath, out, nil)
}
