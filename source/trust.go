package source

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/cluster"
)

// Trust is a run's policy for the channel's metadata: it verifies against
// the cluster file's trust.root and the trusted state kept for the
// channel under the state directory.
type Trust struct {
	Inventory *cluster.Inventory
	// AllowExpired accepts expired metadata (--allow-expired-metadata);
	// signatures, thresholds, versions, lengths and hashes are still
	// checked, and each document so accepted is reported.
	AllowExpired bool
	// ReadOnly verifies against the trusted state but does not raise it
	// (--dry-run, status and preflight change nothing, not even that).
	ReadOnly bool
	// Warn reports what the operator must know; nil says nothing.
	Warn func(msg string)
}

// ConfigError is a trust setting of the cluster file that cannot be used:
// bad input, nothing was changed.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// StateDir is where the trusted metadata of the channel named id is kept.
func StateDir(stateDir, id string) string { return filepath.Join(stateDir, "trust", id) }

// config is the channel client's configuration for the repository at url.
func (t *Trust) config(url string) (channel.Config, error) {
	if t == nil || t.Inventory == nil {
		return channel.Config{}, &ConfigError{Msg: "internal: the channel is read without a trust policy"}
	}
	inv := t.Inventory
	anchorPath := inv.TrustRoot()
	if anchorPath == "" {
		return channel.Config{}, &ConfigError{Msg: fmt.Sprintf("%s sets no trust.root: every channel is verified, so set trust.root to the channel's root (metadata/1.root.json, or the root its publisher gave you), obtained from its publisher out of band (docs/operator.md: Signed channels)", inv.Path())}
	}
	anchor, err := os.ReadFile(anchorPath)
	if err != nil {
		return channel.Config{}, &ConfigError{Msg: fmt.Sprintf("trust.root in %s: %v (it is the channel's root, obtained from its publisher out of band)", inv.Path(), err)}
	}
	return channel.Config{URL: url, Anchor: anchor, StateDir: StateDir(inv.State(), inv.TrustChannelID()),
		ReadOnly: t.ReadOnly, AllowExpired: t.AllowExpired}, nil
}

// Accepted reports each document accepted only because expired metadata
// was allowed, and returns them for the run's journal.
func (t *Trust) Accepted(c *channel.Client) []string {
	var out []string
	for _, e := range c.Expired() {
		msg := fmt.Sprintf("%s expired %s; accepted only because of --allow-expired-metadata (signatures, thresholds, versions and hashes were checked)", e.Doc, e.Expires.Format(time.RFC3339))
		if t != nil && t.Warn != nil {
			t.Warn(msg)
		}
		out = append(out, msg)
	}
	return out
}
