package source

import (
	"errors"
	"fmt"
	"time"

	"github.com/sentinel-paas/sentinel/channel"
)

// openKept is what Open falls back to when no source answers at all (the
// upstream and the cache daemon stopped, the window's network cut): the
// channel as a run verified it earlier, a staging run above all, read
// from the trusted state and verified again (channel.OpenKept). Only an
// unreachable source falls back: a source that answers and is refused
// (a bad signature, a tampered document, a rollback) stays refused, so an
// attacker cannot choose the stale copy. The price is freshness: a kept
// channel cannot show a release published since, only within the kept
// timestamp's expiry (or under --allow-expired-metadata, reported).
func (s Source) openKept(cfg channel.Config, openErr error) (*channel.Client, error) {
	if !unreachable(openErr) || cfg.StateDir == "" {
		return nil, openErr
	}
	cfg.HTTP = nil
	c, err := channel.OpenKept(cfg)
	if err != nil {
		var ke *channel.KeptError
		if errors.As(err, &ke) {
			return nil, fmt.Errorf("%w; and no channel metadata verified earlier is kept to go on without it: %v", s.Explain(openErr), err)
		}
		return nil, fmt.Errorf("%w; and the channel metadata kept from an earlier run was refused: %w", s.Explain(openErr), err)
	}
	if s.Trust != nil && s.Trust.Warn != nil {
		s.Trust.Warn(fmt.Sprintf("no source of the channel answers (%v): using the channel metadata verified earlier (staging) and kept in %s, valid until %s; nothing newer can be seen, and artifacts must be in the node caches",
			s.Explain(openErr), cfg.StateDir, c.Expires().Format(time.RFC3339)))
	}
	return c, nil
}

// unreachable: the source did not answer (no HTTP status) or said it is
// unavailable (5xx), as opposed to a document it lacks or something
// refused once read.
func unreachable(err error) bool {
	var fe *channel.FetchError
	return errors.As(err, &fe) && (fe.Status == 0 || fe.Status >= 500)
}
