package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/trust"
)

// ChannelCheck verifies a whole channel as a node would, for its
// publisher or a mirror's operator (`sentinel release verify`): roots from
// the anchor on, the index, every manifest and every artifact.
type ChannelCheck struct {
	Root         string // the trust anchor's file
	StateDir     string // keep trusted state here ("": none)
	ChannelID    string
	AllowExpired bool
	MetadataOnly bool // do not read the artifacts
	// Say reports one line per document ("ok ...", "REFUSED ..."); Warn
	// what was accepted only because expired metadata was allowed.
	Say, Warn func(format string, args ...any)
}

// channelSource reads documents by their path relative to the channel.
type channelSource struct {
	base *url.URL // ends with "/"
	http *http.Client
}

func openChannelSource(arg string) (*channelSource, error) {
	u, err := url.Parse(arg)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		abs, err := filepath.Abs(arg)
		if err != nil {
			return nil, &ConfigError{Msg: err.Error()}
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return nil, &ConfigError{Msg: fmt.Sprintf("%s is not a channel directory (nor an http://, https:// or file:// URL)", arg)}
		}
		u = &url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	}
	if strings.HasSuffix(u.Path, "/index.json") {
		u.Path = strings.TrimSuffix(u.Path, "index.json")
	} else if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = release.ProxyFromEnvironment
	return &channelSource{base: u, http: &http.Client{Transport: t, Timeout: 10 * time.Minute}}, nil
}

// open returns the document at ref, relative to the channel or to from;
// found is false when the channel has no such file.
func (s *channelSource) open(ctx context.Context, from *url.URL, ref string) (rc io.ReadCloser, u *url.URL, found bool, err error) {
	u, err = from.Parse(ref)
	if err != nil {
		return nil, nil, false, err
	}
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, u, false, nil
		}
		return f, u, err == nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, u, false, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, u, false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, u, true, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, u, false, nil
	}
	resp.Body.Close()
	return nil, u, false, fmt.Errorf("%s: HTTP %s", u, resp.Status)
}

// read returns at most one byte more than any document may have, so that
// the verifier, not a read error, refuses an oversized one.
func (s *channelSource) read(ctx context.Context, ref string) ([]byte, bool, error) {
	rc, _, found, err := s.open(ctx, s.base, ref)
	if err != nil || !found {
		return nil, found, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, trust.MaxDocumentBytes+1))
	return data, true, err
}

// Run verifies the channel at channel (a directory or a URL). Only a
// channel that verified entirely raises the versions trusted.
func (o ChannelCheck) Run(ctx context.Context, channel string) error {
	if o.Root == "" {
		return &ConfigError{Msg: "verify needs --root FILE: the channel's root.json as obtained from its publisher"}
	}
	anchor, err := os.ReadFile(o.Root)
	if err != nil {
		return &ConfigError{Msg: fmt.Sprintf("trust anchor: %v", err)}
	}
	src, err := openChannelSource(channel)
	if err != nil {
		return err
	}
	var store *trust.Store
	if o.StateDir != "" {
		if store, err = trust.OpenStore(o.StateDir, o.ChannelID); err != nil {
			return &ConfigError{Msg: err.Error()}
		}
	}
	v, err := trust.NewVerifier(store, anchor, trust.Options{AllowExpired: o.AllowExpired})
	if err != nil {
		return err
	}
	from := v.Root().Version
	if err := v.UpdateRoots(func(name string) ([]byte, bool, error) { return src.read(ctx, name) }); err != nil {
		o.Say("REFUSED %s\n", err)
		return err
	}
	o.Say("ok root.json version %d (trusted: version %d), threshold %d of %d keys, expires %s\n",
		v.Root().Version, from, v.Root().Threshold, len(v.Root().Keys), v.Root().Expires.Format(time.RFC3339))

	var refused []error
	check := func(name string) []byte {
		doc, found, err := src.read(ctx, name)
		if err == nil && !found {
			err = fmt.Errorf("%s: not found in the channel", name)
		}
		var sig []byte
		if err == nil {
			sig, _, err = src.read(ctx, trust.SigName(name))
		}
		var meta *trust.Meta
		if err == nil {
			meta, err = v.Verify(name, doc, sig)
		}
		if err != nil {
			o.Say("REFUSED %s\n", err)
			refused = append(refused, err)
			return nil
		}
		o.Say("ok %s version %d expires %s\n", name, meta.Version, meta.Expires.Format(time.RFC3339))
		if meta.Expired {
			o.Warn("warning: %s expired %s; accepted only because of --allow-expired-metadata\n", name, meta.Expires.Format(time.RFC3339))
		}
		if meta.RootExpired {
			o.Warn("warning: the trusted root expired %s; %s accepted only because of --allow-expired-metadata\n", v.Root().Expires.Format(time.RFC3339), name)
		}
		return doc
	}

	doc := check("index.json")
	if doc == nil {
		return refused[0]
	}
	ix, err := release.ParseIndex("index.json", doc)
	if err != nil {
		return err
	}
	for _, r := range ix.Releases {
		ref := path.Clean(r.Manifest)
		if doc := check(ref); doc != nil && !o.MetadataOnly {
			m, err := release.ParseManifest(ref, doc)
			if err != nil {
				return err
			}
			mu, _ := src.base.Parse(ref)
			for _, c := range m.Components {
				if err := o.checkArtifact(ctx, src, mu, c.Artifact); err != nil {
					refused = append(refused, err)
				}
			}
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%d refusal(s), the first: %w", len(refused), refused[0])
	}
	// Only a channel that verified entirely raises the versions trusted.
	return v.Commit()
}

func (o ChannelCheck) checkArtifact(ctx context.Context, src *channelSource, manifest *url.URL, a release.Artifact) error {
	rc, u, found, err := src.open(ctx, manifest, a.URL)
	name := a.URL
	if u != nil {
		name = strings.TrimPrefix(u.String(), src.base.String())
	}
	if err == nil && !found {
		err = fmt.Errorf("%s: not found in the channel", name)
	}
	if err == nil {
		err = trust.CheckArtifact(name, rc, a.Size, a.SHA256)
		rc.Close()
	}
	if err != nil {
		o.Say("REFUSED %s\n", err)
		return err
	}
	o.Say("ok %s %d bytes sha256 %s\n", name, a.Size, a.SHA256)
	return nil
}
