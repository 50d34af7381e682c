package source

import (
	"fmt"
	"os"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/trust"
)

// Trust is a run's policy for the channel's metadata: every document
// verifies against the cluster file's trust.root, or (without one) the run
// says loudly that nothing is verified.
type Trust struct {
	Inventory *cluster.Inventory
	// AllowExpired accepts expired metadata (--allow-expired-metadata);
	// signatures and versions are still checked, and each document so
	// accepted is reported.
	AllowExpired bool
	// ReadOnly verifies against the trusted state but does not raise it
	// (--dry-run, status and preflight change nothing, not even that).
	ReadOnly bool
	// Warn reports what the operator must know; nil says nothing.
	Warn func(msg string)
}

func (t *Trust) warn(format string, args ...any) {
	if t != nil && t.Warn != nil {
		t.Warn(fmt.Sprintf(format, args...))
	}
}

// ConfigError is a trust setting of the cluster file that cannot be used:
// bad input, nothing was changed.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// channelOptions returns the option that verifies the channel, or none
// when the cluster file sets no trust.root.
func (t *Trust) channelOptions() ([]release.ChannelOption, error) {
	if t == nil || t.Inventory == nil {
		return nil, nil
	}
	inv := t.Inventory
	anchorPath := inv.TrustRoot()
	if anchorPath == "" {
		t.warn("channel metadata is not verified: set trust.root in %s to the channel's root.json, obtained from its publisher (docs/operator.md: Signed channels)", inv.Path())
		return nil, nil
	}
	anchor, err := os.ReadFile(anchorPath)
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("trust.root in %s: %v (it is the channel's root.json, obtained from its publisher out of band)", inv.Path(), err)}
	}
	store, err := trust.OpenStore(inv.State(), inv.TrustChannelID())
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("trust.channel_id in %s: %v", inv.Path(), err)}
	}
	v, err := trust.NewVerifier(store, anchor, trust.Options{AllowExpired: t.AllowExpired})
	if err != nil {
		return nil, err
	}
	return []release.ChannelOption{release.WithTrust(v)}, nil
}

// accept: see Source.Accept.
func (t *Trust) accept(ch *release.Channel) error {
	v := ch.Verifier()
	if v == nil {
		return nil
	}
	for _, m := range ch.Verified() {
		if m.Expired {
			t.warn("%s expired %s; accepted only because of --allow-expired-metadata", m.Name, m.Expires.Format(time.RFC3339))
		}
		if m.RootExpired {
			t.warn("the trusted root expired %s; %s accepted only because of --allow-expired-metadata", v.Root().Expires.Format(time.RFC3339), m.Name)
		}
	}
	if t != nil && t.ReadOnly {
		return nil
	}
	return Commit(ch)
}

// Commit raises the channel's trusted versions to those verified so far.
func Commit(ch *release.Channel) error {
	if v := ch.Verifier(); v != nil {
		if err := v.Commit(); err != nil {
			return fmt.Errorf("recording the channel's trusted versions: %w", err)
		}
	}
	return nil
}
