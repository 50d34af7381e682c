package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

// openKept is what Open falls back to when no source answers at all (the
// upstream, the mirrors and the cache daemon stopped, the window's network
// cut): the channel as a run verified it earlier, a staging run above all,
// read from the trusted state and verified again (channel.OpenKept). Only
// unavailable sources fall back: a source that answers and is refused (a
// bad signature, a tampered document, a rollback) stays refused, so
// whoever serves the channel cannot choose the kept copy. The price is
// freshness: a kept channel cannot show what was published since, bounded
// by the kept timestamp's expiry (or under --allow-expired-metadata,
// reported). ok is false when nothing usable is kept; a kept state that
// was refused is warned about.
func (s *Source) openKept(openErr error, tried []string) (*release.Channel, *channel.Client, bool) {
	if !s.Kept || openErr == nil || !unavailable(openErr) {
		return nil, nil, false
	}
	cfg, err := s.Trust.config(s.Upstream)
	if err != nil || cfg.StateDir == "" {
		return nil, nil, false
	}
	c, err := channel.OpenKept(cfg)
	if err == nil {
		var ch *release.Channel
		if ch, err = release.OpenChannel(context.Background(), c); err != nil {
			c.Close()
		} else {
			s.warn(fmt.Sprintf("no source of the channel answers (%s): using the channel metadata verified earlier (staging) and kept in %s, valid until %s; nothing newer can be seen, and artifacts must be in the node caches",
				strings.Join(tried, "; "), cfg.StateDir, c.Expires().Format(time.RFC3339)))
			return ch, c, true
		}
	}
	var ke *channel.KeptError
	if !errors.As(err, &ke) || ke.Doc != "" {
		s.warn(fmt.Sprintf("no source of the channel answers (%s), and the channel metadata kept from an earlier run cannot stand in: %v", strings.Join(tried, "; "), err))
	}
	return nil, nil, false
}

func (s *Source) warn(msg string) {
	if s.Trust != nil && s.Trust.Warn != nil {
		s.Trust.Warn(msg)
	}
}
