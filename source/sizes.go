package source

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/release"
)

// CheckArtifactSizes asks this source for each artifact's size before
// anything is downloaded, and refuses the run when one differs from its
// signed target: a mirror or cache node serving other bytes under the
// signed digest is caught here, with a *channel.Error, rather than by the
// first fetch once nodes are already being upgraded. Sources that do not
// answer are left to the fetch, which checks size and sha256 as it
// downloads.
func (s Source) CheckArtifactSizes(ctx context.Context, arts []release.Artifact) error {
	errs := make([]error, len(arts))
	hc := s.HTTPClient()
	var g errgroup.Group
	g.SetLimit(8)
	for i, a := range arts {
		g.Go(func() error {
			errs[i] = checkSize(ctx, hc, a, s.ArtifactURL(a))
			return nil
		})
	}
	_ = g.Wait()
	for _, err := range errs { // the first in plan order, whichever answered first
		if err != nil {
			return s.Explain(err)
		}
	}
	return nil
}

// checkSize asks rawURL (http, https or file) for its size without
// downloading it. Only a definite answer refuses: a server that cannot be
// reached, does not answer HEAD, or gives no length is left to the fetch.
func checkSize(ctx context.Context, hc *http.Client, a release.Artifact, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	var got int64
	switch u.Scheme {
	case "file":
		fi, err := os.Stat(u.Path)
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		got = fi.Size()
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return nil
		}
		// Ask for the file as stored: a length after compression says nothing.
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := hc.Do(req)
		if err != nil {
			return nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 || resp.Header.Get("Content-Encoding") != "" {
			return nil
		}
		got = resp.ContentLength
	default:
		return nil
	}
	if got != a.Size {
		return &channel.Error{Doc: a.URL, Check: channel.CheckLength,
			Err: fmt.Errorf("%s serves %d bytes, its signed target says %d (nothing was downloaded)", u.Redacted(), got, a.Size)}
	}
	return nil
}
