// Package channel reads a channel: a TUF repository (specification 1.0,
// consistent snapshots) served over HTTP(S) or file://, laid out as
//
//	BASE/metadata/N.root.json, timestamp.json, N.snapshot.json, N.targets.json
//	BASE/targets/<dir>/<sha256>.<name>
//
// go-tuf's updater does the client workflow (root rotations, timestamp,
// snapshot, targets, with their signatures, thresholds, versions, expiry,
// lengths and hashes); this package gives it sentinel's HTTP client and
// bounded reads, keeps the trusted metadata per channel, names what it
// refuses, and reads targets by their verified length and hash.
package channel

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// Max lengths of the metadata whose length nothing signed gives (the
// root, the timestamp), and of the others when their announcement omits
// it: a server streaming more is cut off there.
const (
	MaxRootBytes      = 512 << 10
	MaxTimestampBytes = 16 << 10
	MaxSnapshotBytes  = 2 << 20
	MaxTargetsBytes   = 8 << 20
)

// Config says where a channel is and what to trust.
type Config struct {
	// URL is the repository's base: metadata/ and targets/ below it.
	URL string
	// Anchor is the root obtained out of band (trust.root): the first
	// trusted root when StateDir holds none, or a newer one.
	Anchor []byte
	// StateDir keeps the trusted metadata (<state_dir>/trust/<id>); ""
	// keeps nothing.
	StateDir string
	// ReadOnly verifies against StateDir's metadata but leaves it as it
	// was (--dry-run, preflight).
	ReadOnly bool
	// AllowExpired accepts expired metadata; every other check still
	// runs, and Expired lists what was accepted so.
	AllowExpired bool
	// HTTP reads the channel (nil: a client with the proxy from the
	// environment and no overall timeout).
	HTTP *http.Client
}

// Client is an opened channel: its metadata verified and trusted.
type Client struct {
	base    *url.URL // ends with "/"
	up      *updater.Updater
	f       *fetcher
	expired []Expired
	dir     string // the trusted metadata go-tuf keeps
	tmp     string // a ReadOnly client's scratch copy of it

	kept  bool                             // opened by OpenKept: no network
	local *trustedmetadata.TrustedMetadata // OpenKept's verified metadata
}

// Expired is a document accepted only because expired metadata was allowed.
type Expired struct {
	Doc     string
	Expires time.Time
}

// Target is a target as the verified targets metadata describes it.
type Target struct {
	Name   string
	Length int64
	SHA256 string
	// UnpackedSize is the signed size of an artifact once unpacked (0 when
	// the publisher gave none).
	UnpackedSize int64
	// URL is where its bytes are: its consistent-snapshot name.
	URL string
}

// Open verifies the channel's metadata at cfg.URL from the trusted state
// and the anchor, and persists what it trusts (unless ReadOnly).
func Open(ctx context.Context, cfg Config) (*Client, error) {
	base, err := BaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	c := &Client{base: base}
	dir, err := c.stateDir(cfg)
	if err != nil {
		return nil, err
	}
	c.dir = dir
	root, err := trustedRoot(cfg.Anchor, dir)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	c.f = &fetcher{ctx: ctx, http: hc, got: map[string][]byte{}, base: base.String()}
	uc, err := config.New(base.String()+"metadata", root)
	if err != nil {
		return nil, err
	}
	uc.RemoteTargetsURL = base.String() + "targets"
	uc.Fetcher = c.f
	uc.LocalMetadataDir, uc.LocalTargetsDir = dir, dir // targets are read by Read, never kept
	uc.DisableLocalCache = dir == ""
	uc.RootMaxLength, uc.TimestampMaxLength = MaxRootBytes, MaxTimestampBytes
	uc.SnapshotMaxLength, uc.TargetsMaxLength = MaxSnapshotBytes, MaxTargetsBytes
	if c.up, err = updater.New(uc); err != nil {
		c.Close()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("keeping the channel's trusted metadata: %w", err)
		}
		return nil, &Error{Doc: "trust.root", Check: CheckFormat, Err: err}
	}
	if cfg.AllowExpired {
		// Expiry is the only check a reference time changes: go-tuf still
		// checks signatures, thresholds, versions, lengths and hashes.
		c.up.UnsafeSetRefTime(time.Time{})
	}
	if err := c.up.Refresh(); err != nil {
		c.Close()
		return nil, c.explain(err, "")
	}
	if cfg.AllowExpired {
		c.expired = expiredIn(c.up.GetTrustedMetadataSet(), time.Now())
	}
	return c, nil
}

// Close removes the scratch copy of the trusted state of a ReadOnly client.
func (c *Client) Close() {
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
		c.tmp = ""
	}
}

// BaseURL checks a channel URL (http, https, file, or oci:// for a
// registry, read through an HTTP client that knows that scheme: see package
// oci) and returns it with a trailing slash. A URL naming an index.json is refused: the channel is
// the repository, not a document of it.
func BaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file" && u.Scheme != "oci") {
		return nil, &ConfigError{Msg: fmt.Sprintf("channel %q: want the http://, https:// or file:// URL of the channel's repository (the directory holding metadata/ and targets/), or oci://HOST[:PORT]/REPO for a registry", raw)}
	}
	if strings.HasSuffix(u.Path, "/index.json") || u.Path == "index.json" {
		return nil, &ConfigError{Msg: fmt.Sprintf("channel %q names an index.json: channels are TUF repositories now; write the repository's base URL instead (%q, the directory holding metadata/ and targets/)", raw, strings.TrimSuffix(raw, "index.json"))}
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// ConfigError is a channel setting that cannot be used: bad input.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// stateDir is where go-tuf keeps the trusted metadata: cfg.StateDir, or a
// scratch copy of it for a ReadOnly client.
func (c *Client) stateDir(cfg Config) (string, error) {
	if cfg.StateDir == "" {
		return "", nil
	}
	if !cfg.ReadOnly {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return "", &ConfigError{Msg: fmt.Sprintf("trusted state: %v", err)}
		}
		return cfg.StateDir, nil
	}
	tmp, err := os.MkdirTemp("", "sentinel-trust-")
	if err != nil {
		return "", err
	}
	c.tmp = tmp
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		data, err := os.ReadFile(filepath.Join(cfg.StateDir, role+".json"))
		if err == nil {
			err = os.WriteFile(filepath.Join(tmp, role+".json"), data, 0o600)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return tmp, nil
}

// trustedRoot is the root go-tuf starts from: the trusted state's, or the
// anchor when none is kept or the anchor is newer (an operator installs a
// new root out of band after a compromise).
func trustedRoot(anchor []byte, dir string) ([]byte, error) {
	a, err := metadata.Root().FromBytes(anchor)
	if err != nil {
		return nil, &Error{Doc: "trust.root", Check: CheckFormat, Err: fmt.Errorf("not a TUF root: %w", err)}
	}
	if dir == "" {
		return anchor, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return anchor, nil
	}
	s, err := metadata.Root().FromBytes(data)
	if err != nil || s.Signed.Version < a.Signed.Version {
		return anchor, nil
	}
	return data, nil
}

func expiredIn(t trustedmetadata.TrustedMetadata, now time.Time) []Expired {
	var out []Expired
	add := func(doc string, exp time.Time) {
		if now.After(exp) {
			out = append(out, Expired{Doc: doc, Expires: exp})
		}
	}
	add("metadata/root.json", t.Root.Signed.Expires)
	add("metadata/timestamp.json", t.Timestamp.Signed.Expires)
	add("metadata/snapshot.json", t.Snapshot.Signed.Expires)
	add("metadata/targets.json", t.Targets[metadata.TARGETS].Signed.Expires)
	return out
}

// Expired lists the documents accepted only because expired metadata was
// allowed.
func (c *Client) Expired() []Expired { return append([]Expired(nil), c.expired...) }

// URL is the repository's base URL.
func (c *Client) URL() string { return c.base.String() }

// Target describes a target of the verified targets metadata.
func (c *Client) Target(name string) (Target, error) {
	tf, ok := c.topTargets()[name]
	if !ok {
		return Target{}, &Error{Doc: name, Check: CheckNotListed, Err: errors.New("no such target in the signed targets metadata")}
	}
	return c.target(tf)
}

func (c *Client) target(tf *metadata.TargetFiles) (Target, error) {
	sum, ok := tf.Hashes["sha256"]
	if !ok {
		return Target{}, &Error{Doc: tf.Path, Check: CheckHash, Err: errors.New("the targets metadata gives no sha256 for it")}
	}
	t := Target{Name: tf.Path, Length: tf.Length, SHA256: hex.EncodeToString(sum)}
	if tf.Custom != nil {
		cu, err := ParseCustom(*tf.Custom)
		if err != nil {
			return Target{}, &Error{Doc: tf.Path, Check: CheckFormat, Err: err}
		}
		t.UnpackedSize = cu.Sentinel.UnpackedSize
	}
	t.URL = c.base.String() + "targets/" + HashedName(tf.Path, t.SHA256)
	return t, nil
}

// HashedName is a target's consistent-snapshot name below targets/:
// <dir>/<sha256>.<name>.
func HashedName(name, sha256Hex string) string {
	dir, file := path.Split(name)
	return dir + sha256Hex + "." + file
}

// Custom is what sentinel puts in a target's "custom" field.
type Custom struct {
	Sentinel struct {
		UnpackedSize int64 `json:"unpacked_size,omitempty"`
	} `json:"sentinel"`
}

// ParseCustom reads a target's custom field; fields it does not know are
// left alone (another tool may add its own).
func ParseCustom(raw []byte) (Custom, error) {
	var c Custom
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("custom: %w", err)
	}
	if c.Sentinel.UnpackedSize < 0 {
		return c, fmt.Errorf("custom.sentinel.unpacked_size: negative (%d)", c.Sentinel.UnpackedSize)
	}
	return c, nil
}

// Read returns the target's bytes, read from its consistent-snapshot name
// and checked against its signed length and sha256.
func (c *Client) Read(ctx context.Context, name string) ([]byte, error) {
	tf, ok := c.topTargets()[name]
	if !ok {
		return nil, &Error{Doc: name, Check: CheckNotListed, Err: errors.New("no such target in the signed targets metadata")}
	}
	t, err := c.target(tf)
	if err != nil {
		return nil, err
	}
	if c.kept {
		return c.readKept(tf, t)
	}
	c.f.ctx = ctx
	data, err := c.f.DownloadFile(t.URL, t.Length, 0)
	if err != nil {
		if errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
			return nil, &Error{Doc: name, Check: CheckLength, Err: err}
		}
		return nil, c.explain(err, name)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		check := CheckHash
		if int64(len(data)) != tf.Length {
			check = CheckLength
		}
		return nil, &Error{Doc: name, Check: check, Err: fmt.Errorf("%s: %w", t.URL, err)}
	}
	c.keep(t, data)
	return data, nil
}

// Has says whether the signed targets list name.
func (c *Client) Has(name string) bool {
	_, ok := c.topTargets()[name]
	return ok
}

// Files returns the channel's files as served, by their path below the
// base URL, for a cache to serve byte for byte: every root from version 1
// to the trusted one, the timestamp, snapshot and targets metadata
// trusted, and the targets read so far (documents, not artifacts).
func (c *Client) Files(ctx context.Context) (map[string][]byte, error) {
	c.f.ctx = ctx
	t := c.trusted()
	out := map[string][]byte{}
	for v := int64(1); v <= t.Root.Signed.Version; v++ {
		name := fmt.Sprintf("metadata/%d.root.json", v)
		data, ok := c.f.got[name]
		if !ok {
			var err error
			if data, err = c.f.DownloadFile(c.base.String()+name, MaxRootBytes, 0); err != nil {
				return nil, c.explain(err, name)
			}
		}
		out[name] = data
	}
	for name, data := range c.f.got {
		if strings.HasPrefix(name, "targets/") {
			out[name] = data
		}
	}
	snap := t.Timestamp.Signed.Meta["snapshot.json"].Version
	targ := t.Snapshot.Signed.Meta["targets.json"].Version
	for name, role := range map[string]string{
		"metadata/timestamp.json":                      "timestamp",
		fmt.Sprintf("metadata/%d.snapshot.json", snap): "snapshot",
		fmt.Sprintf("metadata/%d.targets.json", targ):  "targets",
	} {
		data, err := c.trustedBytes(role, name)
		if err != nil {
			return nil, err
		}
		out[name] = data
	}
	return out, nil
}

// trustedBytes are the bytes of a trusted role's metadata as published:
// those read now, or those kept in the trusted state.
func (c *Client) trustedBytes(role, name string) ([]byte, error) {
	if data, ok := c.f.got[name]; ok {
		return data, nil
	}
	dir := c.dir
	if dir == "" {
		return nil, fmt.Errorf("channel: %s was not read and no trusted state holds it", name)
	}
	return os.ReadFile(filepath.Join(dir, role+".json"))
}
