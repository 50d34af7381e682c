package release

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/sentinel-paas/sentinel/trust"
)

// CheckArtifactSize asks where an artifact will be fetched from (rawURL:
// http, https or file) how large it is, without downloading it, and
// refuses one whose size differs from size, the one its manifest gives:
// the bytes served cannot be the ones the manifest describes, whatever
// digest the server claims. name says which artifact in the refusal.
//
// Only a definite answer refuses: a server that cannot be reached, does
// not answer HEAD, or gives no length is left to the fetch, which checks
// size and sha256 as it downloads. checked says whether a size was seen.
func (c *Channel) CheckArtifactSize(ctx context.Context, name, rawURL string, size int64) (checked bool, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false, nil
	}
	var got int64
	switch u.Scheme {
	case "file":
		fi, err := os.Stat(u.Path)
		if err != nil || !fi.Mode().IsRegular() {
			return false, nil
		}
		got = fi.Size()
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return false, nil
		}
		// Ask for the file as stored: a length after compression says nothing.
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := c.http.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 || resp.Header.Get("Content-Encoding") != "" {
			return false, nil
		}
		got = resp.ContentLength
	default:
		return false, nil
	}
	if got != size {
		return true, &trust.Error{Doc: name, Check: trust.CheckLength,
			Err: fmt.Errorf("%s serves %d bytes, its manifest says %d (nothing was downloaded)", u.Redacted(), got, size)}
	}
	return true, nil
}
