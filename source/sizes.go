package source

import (
	"context"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/sentinel-paas/sentinel/release"
)

// CheckArtifactSizes asks this source for each artifact's size before
// anything is downloaded, and refuses the run when one differs from its
// signed manifest: a mirror or cache node serving other bytes under the
// signed digest is caught here, with a *trust.Error, rather than by the
// first fetch once nodes are already being upgraded. Sources that do not
// answer are left to the fetch, which checks size and sha256 as it
// downloads.
func (s Source) CheckArtifactSizes(ctx context.Context, ch *release.Channel, arts []release.Artifact) error {
	errs := make([]error, len(arts))
	var g errgroup.Group
	g.SetLimit(8)
	for i, a := range arts {
		g.Go(func() error {
			_, errs[i] = ch.CheckArtifactSize(ctx, ArtifactName(a.URL, s.IndexURL()), s.ArtifactURL(a), a.Size)
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

// ArtifactName is an artifact's path relative to the channel, as
// `sentinel release verify` names it, or its URL when it lives elsewhere.
func ArtifactName(artifactURL, channelURL string) string {
	base := channelURL[:strings.LastIndex(channelURL, "/")+1]
	if rest, ok := strings.CutPrefix(artifactURL, base); ok && rest != "" {
		return rest
	}
	return artifactURL
}
