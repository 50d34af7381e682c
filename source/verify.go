package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

// ChannelCheck verifies a whole channel as a node would, for its
// publisher or a mirror's operator (`sentinel channel verify`): the
// metadata from the anchor on, the index, every manifest, patch catalog
// and builds document, and every artifact.
type ChannelCheck struct {
	Root         string // the trust anchor's file
	StateDir     string // keep trusted state here ("": none)
	AllowExpired bool
	MetadataOnly bool // do not read the artifacts
	// Releases limits the artifacts checked to those of these releases
	// and their patch catalogs (and the newest sentinel build per
	// platform), as `channel copy --release` copies them; empty: every
	// artifact. Every document is checked still.
	Releases []string
	// Registry: CA and credentials for an oci:// channel.
	Registry oci.Settings
	// Say reports one line per document ("ok ...", "REFUSED ..."); Warn
	// what was accepted only because expired metadata was allowed.
	Say, Warn func(format string, args ...any)
}

// verifyArg names the channel's URL in verify's advice.
const verifyArg = "the channel argument of `sentinel channel verify`"

// ChannelArg turns a channel directory or URL into the repository's URL.
func ChannelArg(arg string) (string, error) {
	if u, err := url.Parse(arg); err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file" || u.Scheme == oci.Scheme) {
		return arg, nil
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", &ConfigError{Msg: err.Error()}
	}
	if st, err := os.Stat(filepath.Join(abs, "metadata")); err != nil || !st.IsDir() {
		return "", &ConfigError{Msg: fmt.Sprintf("%s is not a channel directory (no metadata/), nor an http://, https://, file:// or oci:// URL", arg)}
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs) + "/"}).String(), nil
}

// Run verifies the channel at arg (a directory or a URL).
func (o ChannelCheck) Run(ctx context.Context, arg string) error {
	if o.Root == "" {
		return &ConfigError{Msg: "verify needs --root FILE: the channel's root as obtained from its publisher"}
	}
	anchor, err := os.ReadFile(o.Root)
	if err != nil {
		return &ConfigError{Msg: fmt.Sprintf("--root, the trust anchor: %v (give the channel's root.json as obtained from its publisher)", err)}
	}
	u, err := ChannelArg(arg)
	if err != nil {
		return err
	}
	hc := Source{}.HTTPClient()
	if oci.IsRef(u) {
		// Every document and artifact through the registry's manifest.
		rem, err := (&Source{Registry: o.Registry}).remote(ctx, u)
		if err != nil {
			return err
		}
		hc = rem.HTTPClient()
	}
	c, err := channel.Open(ctx, channel.Config{URL: u, Anchor: anchor, StateDir: o.StateDir, AllowExpired: o.AllowExpired, HTTP: hc})
	if err != nil {
		err = channel.Named(err, verifyArg)
		o.Say("REFUSED %v\n", err)
		return err
	}
	defer c.Close()
	for _, e := range c.Expired() {
		o.Warn("warning: %s expired %s; accepted only because of --allow-expired-metadata\n", e.Doc, e.Expires.Format(time.RFC3339))
	}
	o.Say("ok metadata: root, timestamp, snapshot and targets verified from the anchor\n")
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		err = channel.Named(err, verifyArg)
		o.Say("REFUSED %v\n", err)
		return err
	}
	o.Say("ok index.json: %d releases\n", len(ch.Index.Releases))
	for _, v := range o.Releases {
		if _, ok := ch.Index.Entry(v); !ok {
			// The operator's input, not the channel, is wrong: no verdict.
			return &release.UnknownReleaseError{Version: v, Offered: ch.Index.Versions()}
		}
	}
	arts, err := o.documents(ctx, ch)
	if err != nil {
		err = channel.Named(err, verifyArg)
		o.Say("REFUSED %v\n", err)
		return err
	}
	if o.MetadataOnly {
		return nil
	}
	for _, a := range arts {
		if err := checkArtifact(ctx, hc, a); err != nil {
			err = channel.Named(err, verifyArg)
			o.Say("REFUSED %v\n", err)
			return err
		}
		o.Say("ok %s %d bytes sha256 %s\n", a.URL, a.Size, a.SHA256)
	}
	return nil
}

// documents reads every document the index names (manifests, patch
// catalogs) and the builds document, and returns the artifacts to check:
// those they list, of o.Releases only when it names any.
func (o ChannelCheck) documents(ctx context.Context, ch *release.Channel) ([]release.Artifact, error) {
	var arts []release.Artifact
	for _, r := range ch.Index.Releases {
		m, err := ch.Manifest(ctx, r.Version)
		if err != nil {
			return nil, err
		}
		o.Say("ok %s\n", r.Manifest)
		cat, err := ch.Patches(ctx, r.Version)
		if err != nil {
			return nil, err
		}
		if len(o.Releases) > 0 && !slices.Contains(o.Releases, r.Version) {
			continue
		}
		for _, comp := range m.Components {
			arts = append(arts, comp.Artifact)
		}
		for _, p := range cat.Patches {
			for _, pc := range p.Components {
				arts = append(arts, pc.Artifact)
			}
		}
	}
	b, found, err := ch.SentinelBuilds(ctx)
	if err != nil || !found {
		return arts, err
	}
	o.Say("ok %s: %d builds\n", release.SentinelBuildsPath, len(b.Builds))
	for _, sb := range b.Builds {
		if newest, _ := b.Newest(sb.OS, sb.Arch); len(o.Releases) == 0 || newest.Version == sb.Version {
			arts = append(arts, sb.Artifact)
		}
	}
	return arts, nil
}

// checkArtifact downloads an artifact and checks its length and sha256.
func checkArtifact(ctx context.Context, hc *http.Client, a release.Artifact) error {
	var body io.ReadCloser
	u, err := url.Parse(a.URL)
	if err != nil {
		return err
	}
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if err != nil {
			return &channel.Error{Doc: a.URL, Check: channel.CheckLength, Err: err}
		}
		body = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return &channel.FetchError{URL: a.URL, Err: err}
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return &channel.FetchError{URL: a.URL, Status: resp.StatusCode, Err: fmt.Errorf("HTTP %s", resp.Status)}
		}
		body = resp.Body
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(body, a.Size+1))
	if err != nil {
		return &channel.FetchError{URL: a.URL, Err: err}
	}
	if n != a.Size {
		return &channel.Error{Doc: a.URL, Check: channel.CheckLength, Err: fmt.Errorf("%d bytes or more, the signed target says %d", n, a.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return &channel.Error{Doc: a.URL, Check: channel.CheckHash, Err: fmt.Errorf("sha256 %s, the signed target says %s", got, a.SHA256)}
	}
	return nil
}
