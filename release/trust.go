package release

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/sentinel-paas/sentinel/trust"
)

// indexName is the name the index is signed under, whatever its URL:
// `sentinel release sign` signs it so, and a cache serves it so.
const indexName = "index.json"

// Verified lists the documents the channel's verifier accepted so far, in
// reading order: the caller reports those accepted only because expired
// metadata was allowed. Empty without WithTrust.
func (c *Channel) Verified() []trust.Meta { return append([]trust.Meta(nil), c.verified...) }

// Verifier is the channel's verifier (nil without WithTrust).
func (c *Channel) Verifier() *trust.Verifier { return c.verifier }

// base is the directory of the index: signed names are relative to it.
func (c *Channel) base() *url.URL {
	b, _ := c.URL.Parse(".")
	return b
}

// docName is the name a document at u is signed under.
func (c *Channel) docName(u *url.URL) (string, bool) {
	if u.String() == c.URL.String() {
		return indexName, true
	}
	b := c.base()
	if u.Scheme != b.Scheme || u.Host != b.Host || u.RawQuery != "" || !strings.HasPrefix(u.Path, b.Path) {
		return "", false
	}
	rel := strings.TrimPrefix(u.Path, b.Path)
	if rel == "" || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == indexName {
		return "", false
	}
	return rel, true
}

// verify checks data, read from u, against its .sig (u with ".sig"
// appended) before anyone parses it, and keeps the .sig with the
// documents so that a cache serves it unchanged.
func (c *Channel) verify(ctx context.Context, u *url.URL, data []byte) error {
	name, ok := c.docName(u)
	if !ok {
		return &trust.Error{Doc: u.String(), Check: trust.CheckName,
			Err: fmt.Errorf("the document is outside the channel's directory %s, and signatures name documents relative to the index", c.base())}
	}
	su := *u
	su.Path += ".sig"
	su.RawPath = ""
	sig, err := c.read(ctx, &su, trust.MaxSignedBytes)
	switch {
	case isNotFound(err):
		sig = nil // Verify says which .sig is missing
	case err != nil:
		return err
	}
	meta, err := c.verifier.Verify(name, data, sig)
	if err != nil {
		return err
	}
	c.raw[trust.SigName(name)] = sig
	c.verified = append(c.verified, *meta)
	return nil
}

// updateRoots follows the channel's root rotations from the trusted root,
// and keeps the roots it read, and the one it trusts, with the documents.
func (c *Channel) updateRoots(ctx context.Context) error {
	err := c.verifier.UpdateRoots(func(name string) ([]byte, bool, error) {
		u, err := c.base().Parse(name)
		if err != nil {
			return nil, false, err
		}
		data, err := c.read(ctx, u, trust.MaxSignedBytes)
		switch {
		case isNotFound(err):
			return nil, false, nil
		case err != nil:
			return nil, false, err
		}
		c.raw[name] = data
		return data, true, nil
	})
	if err != nil {
		return err
	}
	r := c.verifier.Root()
	c.raw[trust.RootName(r.Version)] = r.Bytes()
	return nil
}

func isNotFound(err error) bool {
	var fe *FetchError
	return errors.As(err, &fe) && (fe.Status == http.StatusNotFound || errors.Is(fe.Err, fs.ErrNotExist))
}
