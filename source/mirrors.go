package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

// opened is where Open read the channel: the first of the mirrors, then
// the upstream, that answered.
type opened struct {
	url    string
	remote *oci.Remote // the registry, when url is oci://
	passed []string    // the mirrors that failed before it, with why
}

// candidates are the channel URLs Open tries, in order: the cache daemon
// alone, else the mirrors and then the upstream.
func (s *Source) candidates() []string {
	if s.Cache != "" {
		return []string{s.ChannelURL()}
	}
	return append(append([]string(nil), s.Mirrors...), s.Upstream)
}

// openAt opens the channel at url (verified, index read).
func (s *Source) openAt(ctx context.Context, u string) (*release.Channel, *channel.Client, *oci.Remote, error) {
	cfg, err := s.Trust.config(u)
	if err != nil {
		return nil, nil, nil, err
	}
	var rem *oci.Remote
	if oci.IsRef(u) {
		if rem, err = s.remote(ctx, u); err != nil {
			return nil, nil, nil, err
		}
		cfg.HTTP = rem.HTTPClient()
	} else {
		cfg.HTTP = s.HTTPClient()
	}
	c, err := channel.Open(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return ch, c, rem, nil
}

// remote is the registry channel at u with the registry settings.
func (s *Source) remote(ctx context.Context, u string) (*oci.Remote, error) {
	ref, err := oci.ParseRef(u)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	acc, err := s.Registry.ForHost(ctx, ref.Host)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	rem, err := oci.NewRemote(ref, acc)
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("registry %s: %v", ref, err)}
	}
	return rem, nil
}

// unavailable says whether a source failed to serve rather than served
// something refused: nothing answered, a timeout, or a server error. Only
// then is the next mirror tried; a verification failure is a refusal.
func unavailable(err error) bool {
	var fe *channel.FetchError
	if !errors.As(err, &fe) {
		return false
	}
	return fe.Status == 0 || fe.Status >= http.StatusInternalServerError
}

// Passed lists the mirrors Open passed over, each with why.
func (s *Source) Passed() []string {
	if s.read == nil {
		return nil
	}
	return s.read.passed
}

// Read is the channel URL Open read ("" before Open).
func (s *Source) Read() string {
	if s.read == nil {
		return ""
	}
	return s.read.url
}

// Registry is the registry Open read the channel from, or nil.
func (s *Source) registry() *oci.Remote {
	if s.read == nil {
		return nil
	}
	return s.read.remote
}

// UnavailableError: no source of the channel answered (the mirrors, then
// the channel): each, where it was given, and why.
type UnavailableError struct {
	Tried []string
	Last  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("no source of the channel answers:\n  %s\nCheck that each runs and is reachable from here (and the proxy, where one is named): start one of them, or give a mirror that runs with --mirror or in the cluster file's mirrors.", strings.Join(e.Tried, "\n  "))
}
func (e *UnavailableError) Unwrap() error { return e.Last }

// origin says where the channel URL u was given, for people.
func (s *Source) origin(u string) string {
	switch {
	case s.Cache != "":
		return "--cache-ip, or the cache section of the cluster file"
	case u == s.Upstream || !slices.Contains(s.Mirrors, u):
		return "the channel URL in the cluster file"
	case s.MirrorsFrom != "":
		return s.MirrorsFrom
	}
	return "the mirrors in the cluster file"
}

// tried is one source that did not answer, as the messages list it: u,
// where it was given, and what (err said for people).
func (s *Source) tried(u string, err error, what string) string {
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s (%s) did not answer: %s", u, s.origin(u), what)
	}
	return fmt.Sprintf("%s (%s): %s", u, s.origin(u), what)
}

// refusedAt names the source that served what was refused, and where it
// was given, when it may not be the cluster file's channel.
func (s *Source) refusedAt(u string, err error) error {
	if s.Cache != "" || len(s.Mirrors) == 0 {
		return err
	}
	what := "the mirror"
	if u == s.Upstream {
		what = "the channel"
	}
	return fmt.Errorf("reading the channel from %s %s (%s): %w", what, u, s.origin(u), err)
}

// Alt is a source nodes fall back to for an artifact: a channel base
// URL (http, https, file) or a registry.
type Alt struct {
	Base     string // ends with "/"; "" for a registry
	Registry *Registry
}

// Fallbacks are where nodes fetch an artifact the run's own source does
// not serve: the mirrors after the one Open chose, then the channel. A
// registry whose settings cannot be used is left out (Open would have
// refused it had it been reached). None for the cache daemon.
func (s *Source) Fallbacks() []Alt {
	if s.read == nil || s.Cache != "" {
		return nil
	}
	cands := s.candidates()
	i := slices.Index(cands, s.read.url)
	if i < 0 {
		return nil
	}
	var out []Alt
	for _, u := range cands[i+1:] {
		if !oci.IsRef(u) {
			if b, err := channel.BaseURL(u); err == nil {
				out = append(out, Alt{Base: b.String()})
			}
			continue
		}
		if rem, err := s.remote(context.Background(), u); err == nil {
			out = append(out, Alt{Registry: &Registry{Ref: rem.Ref, Access: rem.Access}})
		}
	}
	return out
}

// Bases are the base URLs of every source of the channel, so that an
// artifact's path below the channel can be found from the URL it was
// planned with, whichever source that was.
func (s *Source) Bases() []string {
	var out []string
	for _, u := range s.candidates() {
		if b, err := channel.BaseURL(u); err == nil {
			out = append(out, b.String())
		}
	}
	return out
}

// PlannedAt names the mirror (http, https, file) below whose base every
// planned artifact URL lies, as String names the one Open read: a resumed
// run fetches from there without opening the channel again. "": the
// upstream, or no mirror holds them all. The longest base wins, so a
// mirror whose base holds the upstream's is not taken for it.
func (s *Source) PlannedAt(planned []release.Artifact) string {
	if s.Cache != "" || len(planned) == 0 {
		return ""
	}
	at, longest := "", 0
	for _, u := range s.candidates() {
		b, err := channel.BaseURL(u)
		if oci.IsRef(u) || err != nil || len(b.String()) <= longest {
			continue
		}
		if !slices.ContainsFunc(planned, func(a release.Artifact) bool { return !strings.HasPrefix(a.URL, b.String()) }) {
			at, longest = u, len(b.String())
		}
	}
	if at == s.Upstream {
		return ""
	}
	return at
}

// FromCacheCopy is the URL of an artifact planned below the cache daemon
// cacheURL's copy of the channel, below the source Open read instead (a
// mirror or the upstream; a registry's nodes fetch by digest, its base
// lets the fallbacks find the artifact's path), for a resume that leaves
// the cache daemon (--no-cache). Unchanged when planned elsewhere. ok is
// false when Open read no source (the channel kept at staging stood in):
// there is nowhere to fetch from.
func (s *Source) FromCacheCopy(planned, cacheURL string) (_ string, ok bool) {
	from, err := channel.BaseURL(cache.ChannelURL(cacheURL))
	if err != nil {
		return planned, true
	}
	rel, below := strings.CutPrefix(planned, from.String())
	if !below {
		return planned, true
	}
	if s.read == nil {
		return planned, false
	}
	to, err := channel.BaseURL(s.read.url)
	if err != nil {
		return planned, false
	}
	return to.String() + rel, true
}
