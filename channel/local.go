package channel

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// keptTargetsDir is where, below the trusted state, the targets read from
// the channel (its documents: index, manifests, catalogs, never artifacts)
// are kept by their consistent-snapshot names, so that a run whose sources
// are all gone can still read them (OpenKept).
const keptTargetsDir = "targets"

// keep stores a target read and verified, for OpenKept. Best effort: a run
// that cannot keep it still has what it read, and a later OpenKept that
// lacks it says so.
func (c *Client) keep(t Target, data []byte) {
	if c.dir == "" || c.tmp != "" || c.kept {
		return
	}
	p := filepath.Join(c.dir, keptTargetsDir, filepath.FromSlash(HashedName(t.Name, t.SHA256)))
	if _, err := os.Stat(p); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
	}
}

// OpenKept opens the channel from the trusted state alone, reading no
// network: the root, timestamp, snapshot and targets metadata kept by the
// last run that verified them (a staging run), verified again here
// (signatures, thresholds, hashes, and expiry against now unless
// cfg.AllowExpired), and the targets kept beside them, each checked
// against its signed length and sha256 when read. What it cannot know is
// whether the channel published something newer since: TUF's expiry bounds
// how stale it may be.
func OpenKept(cfg Config) (*Client, error) {
	base, err := BaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, &ConfigError{Msg: "internal: no trusted state to read the channel from"}
	}
	c := &Client{base: base, dir: cfg.StateDir, kept: true,
		f: &fetcher{http: http.DefaultClient, got: map[string][]byte{}, base: base.String()}}
	root, err := trustedRoot(cfg.Anchor, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	read := func(role string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(cfg.StateDir, role+".json"))
		if err != nil {
			return nil, &KeptError{Dir: cfg.StateDir, Err: err}
		}
		return data, nil
	}
	t, err := trustedmetadata.New(root)
	if err != nil {
		return nil, &Error{Doc: "metadata/root.json", Check: CheckFormat, Err: err}
	}
	if cfg.AllowExpired {
		t.RefTime = time.Time{}
	}
	for _, step := range []struct {
		role string
		load func([]byte) error
	}{
		{"timestamp", func(b []byte) error { _, err := t.UpdateTimestamp(b); return err }},
		{"snapshot", func(b []byte) error { _, err := t.UpdateSnapshot(b, false); return err }},
		{"targets", func(b []byte) error { _, err := t.UpdateTargets(b); return err }},
	} {
		data, err := read(step.role)
		if err != nil {
			return nil, err
		}
		if err := step.load(data); err != nil {
			return nil, c.explain(err, "metadata/"+step.role+".json")
		}
	}
	c.local = t
	if cfg.AllowExpired {
		c.expired = expiredIn(*t, time.Now())
	}
	return c, nil
}

// Kept says whether the client reads only the trusted state (OpenKept).
func (c *Client) Kept() bool { return c.kept }

// Expires is when the kept timestamp metadata expires: the bound on how
// stale a kept channel may be.
func (c *Client) Expires() time.Time { return c.trusted().Timestamp.Signed.Expires }

// KeptError: the trusted state lacks what a run needs to read the channel
// without its sources.
type KeptError struct {
	Dir string
	Doc string
	Err error
}

func (e *KeptError) Error() string {
	what := "the channel's trusted metadata"
	if e.Doc != "" {
		what = e.Doc
	}
	return fmt.Sprintf("%s is not kept in %s (%v): stage the release with `sentinel upgrade VERSION --stage` while a source is reachable, or bring a source back", what, e.Dir, e.Err)
}

func (e *KeptError) Unwrap() error { return e.Err }

// readKept reads a kept target and checks it against the signed targets.
func (c *Client) readKept(tf *metadata.TargetFiles, t Target) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, keptTargetsDir, filepath.FromSlash(HashedName(t.Name, t.SHA256))))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &KeptError{Dir: c.dir, Doc: t.Name, Err: err}
		}
		return nil, err
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return nil, &Error{Doc: t.Name, Check: CheckHash, Err: fmt.Errorf("kept copy in %s: %w", c.dir, err)}
	}
	return data, nil
}

// trusted is the verified metadata, from go-tuf's updater or kept.
func (c *Client) trusted() trustedmetadata.TrustedMetadata {
	if c.local != nil {
		return *c.local
	}
	return c.up.GetTrustedMetadataSet()
}

func (c *Client) topTargets() map[string]*metadata.TargetFiles {
	if c.local != nil {
		return c.local.Targets[metadata.TARGETS].Signed.Targets
	}
	return c.up.GetTopLevelTargets()
}
