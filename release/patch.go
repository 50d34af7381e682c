package release

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Catalog lists the patches published for one release: small fixes applied
// in place between releases (`sentinel patch`). The index names it in the
// release's entry ("patches": "releases/3.4.2/patches.json").
type Catalog struct {
	Release string  `json:"release"`
	Patches []Patch `json:"patches"`
}

// Patch is one fix: the components it replaces with a patch level of their
// release version (aok 3.4.2 -> 3.4.2-p1), on the nodes of its roles.
type Patch struct {
	ID          int              `json:"id"`   // shown as "patch id", unique in the catalog
	Name        string           `json:"name"` // what operators type: aok-endpoint-fix
	Description string           `json:"description"`
	Severity    string           `json:"severity"` // low, medium, high or critical
	Roles       []string         `json:"roles"`
	Components  []PatchComponent `json:"components"`
}

// PatchComponent is one component a patch replaces. Restart says whether
// the component's processes must be restarted for the fix to take effect
// (stop, switch, start, health); without it the new files are switched in
// and the running processes pick them up at their next restart.
type PatchComponent struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Artifact Artifact `json:"artifact"`
	Hooks    Hooks    `json:"hooks"`
	Restart  bool     `json:"restart"`
}

// Severities a patch may have.
var Severities = []string{"low", "medium", "high", "critical"}

var patchName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`) })

// ParsePatchCatalog decodes and validates a patch catalog on its own; Check
// then holds it against its release's manifest.
func ParsePatchCatalog(name string, data []byte) (*Catalog, error) {
	var c Catalog
	if err := decodeStrict(data, &c); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	if err := c.validate(); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	return &c, nil
}

func (c *Catalog) validate() error {
	if _, err := ParseVersion(c.Release); err != nil {
		return fieldErr("release", err)
	}
	names, ids := map[string]bool{}, map[int]bool{}
	type level struct {
		v     Version
		patch string
		index int
	}
	highest := map[string]level{} // component -> highest level so far
	for i, p := range c.Patches {
		at := fmt.Sprintf("patches[%d]", i)
		if !patchName().MatchString(p.Name) {
			return fieldErr(at+".name", fmt.Errorf("%q is not a patch name (lowercase letters, digits, '.', '_' and '-')", p.Name))
		}
		at = fmt.Sprintf("patches[%d] (patch %s)", i, p.Name)
		if names[p.Name] {
			return fieldErr(at+".name", fmt.Errorf("patch listed twice"))
		}
		names[p.Name] = true
		if p.ID <= 0 {
			return fieldErr(at+".id", fmt.Errorf("must be a positive number, got %d", p.ID))
		}
		if ids[p.ID] {
			return fieldErr(at+".id", fmt.Errorf("id %d used by another patch", p.ID))
		}
		ids[p.ID] = true
		if strings.TrimSpace(p.Description) == "" || strings.ContainsAny(p.Description, "\n\r") {
			return fieldErr(at+".description", fmt.Errorf("must be one non-empty line"))
		}
		if !contains(Severities, p.Severity) {
			return fieldErr(at+".severity", fmt.Errorf("%q is not one of %s", p.Severity, strings.Join(Severities, ", ")))
		}
		if len(p.Roles) == 0 {
			return fieldErr(at+".roles", fmt.Errorf("no roles"))
		}
		for j, r := range p.Roles {
			if !KnownRole(r) {
				return fieldErr(fmt.Sprintf("%s.roles[%d]", at, j), fmt.Errorf("unknown role %q", r))
			}
		}
		if len(p.Components) == 0 {
			return fieldErr(at+".components", fmt.Errorf("no components"))
		}
		seen := map[string]bool{}
		for j, pc := range p.Components {
			cat := fmt.Sprintf("%s.components[%d]", at, j)
			if !componentName().MatchString(pc.Name) {
				return fieldErr(cat+".name", fmt.Errorf("%q is not a component name", pc.Name))
			}
			if seen[pc.Name] {
				return fieldErr(cat+".name", fmt.Errorf("component %s listed twice", pc.Name))
			}
			seen[pc.Name] = true
			cat = fmt.Sprintf("%s.components[%d] (%s)", at, j, pc.Name)
			if _, err := ParseVersion(pc.Version); err != nil {
				return fieldErr(cat+".version", err)
			}
			if strings.TrimSpace(pc.Artifact.URL) == "" {
				return fieldErr(cat+".artifact.url", fmt.Errorf("missing"))
			}
			if !sha256Hex().MatchString(pc.Artifact.SHA256) {
				return fieldErr(cat+".artifact.sha256", fmt.Errorf("%q is not 64 lowercase hex digits", pc.Artifact.SHA256))
			}
			if pc.Artifact.Size <= 0 {
				return fieldErr(cat+".artifact.size", fmt.Errorf("must be a positive byte count, got %d", pc.Artifact.Size))
			}
			if pc.Hooks.Health.Retries < 0 {
				return fieldErr(cat+".hooks.health.retries", fmt.Errorf("must not be negative"))
			}
			// Patch levels are cumulative (p2 includes p1): a component's
			// levels rise in catalog order, so installing the patches in
			// that order ends each component on its highest level.
			v, _ := ParseVersion(pc.Version)
			if prev, ok := highest[pc.Name]; ok && sameBase(prev.v, v) && v.Compare(prev.v) < 0 {
				return fieldErr(cat+".version", fmt.Errorf("%s is lower than %s of patch %s (patches[%d]), listed before it: list each component's patch levels in rising order", pc.Version, prev.v, prev.patch, prev.index))
			}
			if prev, ok := highest[pc.Name]; !ok || v.Compare(prev.v) > 0 {
				highest[pc.Name] = level{v, p.Name, i}
			}
		}
	}
	return nil
}

// sameBase reports whether two versions differ at most in their suffix.
func sameBase(a, b Version) bool {
	return Version{parts: a.parts}.Compare(Version{parts: b.parts}) == 0
}

// Check holds the catalog against the manifest of its release: each patched
// component is one of the release's, its version a patch level of the
// release's version (3.4.2-p1 after 3.4.2), and it runs on one of the
// patch's roles.
func (c *Catalog) Check(name string, m *Manifest) error {
	if c.Release != m.Version {
		return &MetadataError{Doc: name, Err: fieldErr("release", fmt.Errorf("the catalog is for %s, the manifest it is listed with is %s", c.Release, m.Version))}
	}
	for i, p := range c.Patches {
		for j, pc := range p.Components {
			at := fmt.Sprintf("patches[%d] (patch %s).components[%d] (%s)", i, p.Name, j, pc.Name)
			mc, ok := m.Component(pc.Name)
			if !ok {
				return &MetadataError{Doc: name, Err: fieldErr(at+".name", fmt.Errorf("release %s has no component %s", m.Version, pc.Name))}
			}
			base, suffix, hasSuffix := strings.Cut(pc.Version, "-")
			if _, isLevel := PatchNumber(suffix); !hasSuffix || !isLevel || base != mc.Version {
				return &MetadataError{Doc: name, Err: fieldErr(at+".version", fmt.Errorf("%q is not a patch level of %s %s (expected %s-pN)", pc.Version, pc.Name, mc.Version, mc.Version))}
			}
			if !mc.AppliesTo(p.Roles) && !contains(mc.Roles, RoleBase) {
				return &MetadataError{Doc: name, Err: fieldErr(at, fmt.Errorf("%s runs on roles %s, none of the patch's roles %s", pc.Name, strings.Join(mc.Roles, ","), strings.Join(p.Roles, ",")))}
			}
		}
	}
	return nil
}

// Patch returns the named patch, or false.
func (c *Catalog) Patch(name string) (Patch, bool) {
	for _, p := range c.Patches {
		if p.Name == name {
			return p, true
		}
	}
	return Patch{}, false
}

// AppliesTo reports whether the patch concerns a node with these roles.
func (p Patch) AppliesTo(nodeRoles []string) bool {
	for _, r := range p.Roles {
		if r == RoleBase || contains(nodeRoles, r) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Patches reads and validates the patch catalog of release v, checked
// against the release's manifest. A release without a catalog has no
// patches: an empty catalog, no error. Artifacts in the result are
// resolved as Manifest's are.
func (c *Channel) Patches(ctx context.Context, v string) (*Catalog, error) {
	e, ok := c.Index.Entry(v)
	if !ok {
		return nil, &UnknownReleaseError{Version: v, Offered: c.Index.Versions()}
	}
	if e.Patches == "" {
		return &Catalog{Release: v}, nil
	}
	name, err := targetName(e.Patches)
	if err != nil {
		return nil, &MetadataError{Doc: "index.json", Err: fieldErr("releases.patches", err)}
	}
	data, err := c.docs.Read(ctx, name)
	if err != nil {
		return nil, err
	}
	cat, err := ParsePatchCatalog(name, data)
	if err != nil {
		return nil, err
	}
	m, err := c.Manifest(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := cat.Check(name, m); err != nil {
		return nil, err
	}
	for i := range cat.Patches {
		for j := range cat.Patches[i].Components {
			field := fmt.Sprintf("patches[%d] (patch %s).components[%d].artifact", i, cat.Patches[i].Name, j)
			if err := c.resolve(name, field, &cat.Patches[i].Components[j].Artifact); err != nil {
				return nil, err
			}
		}
	}
	return cat, nil
}
