package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Manifest describes one release: its components in upgrade order.
type Manifest struct {
	Version    string      `json:"version"`
	Components []Component `json:"components"`
}

// Component is one unit the upgrade installs, switches and restarts as a whole.
type Component struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Roles    []string `json:"roles"`
	Artifact Artifact `json:"artifact"`
	Hooks    Hooks    `json:"hooks"`
}

// Artifact is the archive a component is installed from. In a document,
// URL is the artifact's target, relative to the document; once the
// channel resolved it (Channel.Manifest), the target's URL, and
// UnpackedSize the size the channel's signed targets give it unpacked.
type Artifact struct {
	URL          string `json:"url"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	UnpackedSize int64  `json:"unpacked_size,omitempty"`
}

// Hooks holds the limits of the hook scripts shipped inside the artifact
// (hooks/stop, hooks/start, hooks/health, hooks/migrate). A hook that the
// artifact does not ship is skipped.
type Hooks struct {
	Stop    HookLimits   `json:"stop"`
	Start   HookLimits   `json:"start"`
	Migrate HookLimits   `json:"migrate"`
	Health  HealthLimits `json:"health"`
}

// HookLimits bound one hook run.
type HookLimits struct {
	Timeout Duration `json:"timeout,omitempty"`
}

// HealthLimits: the health hook is retried until it passes, up to Retries
// extra attempts spaced by Interval, each attempt bounded by Timeout.
type HealthLimits struct {
	Timeout  Duration `json:"timeout,omitempty"`
	Retries  int      `json:"retries,omitempty"`
	Interval Duration `json:"interval,omitempty"`
}

// Defaults applied where the manifest is silent.
const (
	DefaultHookTimeout    = 2 * time.Minute
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 5
	DefaultHealthInterval = 2 * time.Second
)

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Or returns d, or def when d is unset.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// AppliesTo reports whether the component runs on a node with the given
// roles. Every node has the base role.
func (c Component) AppliesTo(nodeRoles []string) bool {
	for _, r := range c.Roles {
		if r == RoleBase {
			return true
		}
		for _, nr := range nodeRoles {
			if nr == r {
				return true
			}
		}
	}
	return false
}

// Compiled on first use: a `sentinel node` call that never validates
// one does not pay for it (a bounded repetition compiles to a large program).
var (
	sha256Hex     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{64}$`) })
	componentName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`) })
)

// ValidComponentName reports whether name is a component's name as a
// manifest may give it: also one path element of a node's code directory.
func ValidComponentName(name string) bool { return componentName().MatchString(name) }

// ParseManifest decodes and validates a manifest. name identifies the
// document in errors (its URL or path).
func ParseManifest(name string, data []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(data, &m); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	if err := m.validate(); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	if _, err := ParseVersion(m.Version); err != nil {
		return fieldErr("version", err)
	}
	if len(m.Components) == 0 {
		return fieldErr("components", fmt.Errorf("no components"))
	}
	seen := map[string]bool{}
	for i, c := range m.Components {
		at := fmt.Sprintf("components[%d]", i)
		if !componentName().MatchString(c.Name) {
			return fieldErr(at+".name", fmt.Errorf("%q is not a component name (lowercase letters, digits, _ and -)", c.Name))
		}
		at = fmt.Sprintf("components[%d] (%s)", i, c.Name)
		if seen[c.Name] {
			return fieldErr(at+".name", fmt.Errorf("component listed twice"))
		}
		seen[c.Name] = true
		if _, err := ParseVersion(c.Version); err != nil {
			return fieldErr(at+".version", err)
		}
		if len(c.Roles) == 0 {
			return fieldErr(at+".roles", fmt.Errorf("no roles"))
		}
		for _, r := range c.Roles {
			if !KnownRole(r) {
				return fieldErr(at+".roles", fmt.Errorf("unknown role %q", r))
			}
		}
		if strings.TrimSpace(c.Artifact.URL) == "" {
			return fieldErr(at+".artifact.url", fmt.Errorf("missing"))
		}
		if !sha256Hex().MatchString(c.Artifact.SHA256) {
			return fieldErr(at+".artifact.sha256", fmt.Errorf("%q is not 64 lowercase hex digits", c.Artifact.SHA256))
		}
		if c.Artifact.Size <= 0 {
			return fieldErr(at+".artifact.size", fmt.Errorf("must be a positive byte count, got %d", c.Artifact.Size))
		}
		if c.Hooks.Health.Retries < 0 {
			return fieldErr(at+".hooks.health.retries", fmt.Errorf("must not be negative"))
		}
	}
	return nil
}

// Component returns the named component, or false.
func (m *Manifest) Component(name string) (Component, bool) {
	for _, c := range m.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// MetadataError says which document is malformed and why.
type MetadataError struct {
	Doc string
	Err error
}

func (e *MetadataError) Error() string {
	return fmt.Sprintf("release metadata %s is invalid: %v", e.Doc, e.Err)
}
func (e *MetadataError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) error { return fmt.Errorf("field %s: %w", field, err) }

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("malformed JSON: trailing data after the document")
	}
	return nil
}
