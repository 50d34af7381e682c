package release

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/sentinel-paas/sentinel/channel"
)

// Documents is where a channel's documents come from, verified: the
// targets of a TUF repository (package channel).
type Documents interface {
	// URL is the repository's base URL.
	URL() string
	// Read returns a target's bytes, checked against its signed length and hash.
	Read(ctx context.Context, name string) ([]byte, error)
	// Target describes a target as the signed targets metadata does.
	Target(name string) (channel.Target, error)
	// Has says whether the signed targets list name.
	Has(name string) bool
}

// Channel is an opened channel: its verified index, and the way to read
// the documents it names.
type Channel struct {
	Index *Index
	docs  Documents
}

// OpenChannel reads and validates the channel's index (target index.json).
func OpenChannel(ctx context.Context, docs Documents) (*Channel, error) {
	data, err := docs.Read(ctx, "index.json")
	if err != nil {
		return nil, err
	}
	ix, err := ParseIndex("index.json", data)
	if err != nil {
		return nil, err
	}
	return &Channel{Index: ix, docs: docs}, nil
}

// URL is the channel repository's base URL.
func (c *Channel) URL() string { return c.docs.URL() }

// Manifest reads and validates the manifest of release v. Each artifact
// in the result is the signed target its entry names, at its
// consistent-snapshot URL.
func (c *Channel) Manifest(ctx context.Context, v string) (*Manifest, error) {
	e, ok := c.Index.Entry(v)
	if !ok {
		return nil, &UnknownReleaseError{Version: v, Offered: c.Index.Versions()}
	}
	name, err := targetName(e.Manifest)
	if err != nil {
		return nil, &MetadataError{Doc: "index.json", Err: fieldErr("releases.manifest", err)}
	}
	data, err := c.docs.Read(ctx, name)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(name, data)
	if err != nil {
		return nil, err
	}
	if m.Version != v {
		return nil, &MetadataError{Doc: name, Err: fieldErr("version", fmt.Errorf("index says %s, manifest says %s", v, m.Version))}
	}
	for i := range m.Components {
		if err := c.resolve(name, fmt.Sprintf("components[%d] (%s).artifact", i, m.Components[i].Name), &m.Components[i].Artifact); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// targetName is a document reference of the index as a target name: a
// clean relative path.
func targetName(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil || u.IsAbs() || u.Host != "" || strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%q is not a path relative to the channel", ref)
	}
	clean := path.Clean(u.Path)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%q leaves the channel", ref)
	}
	return clean, nil
}

// resolve turns an artifact entry of document doc (its url relative to
// doc) into the signed target it names: the entry's sha256 and size must
// be the target's; its URL becomes the target's consistent-snapshot URL
// and its unpacked size the signed one.
func (c *Channel) resolve(doc, field string, a *Artifact) error {
	name, err := targetName(path.Join(path.Dir(doc), a.URL))
	if err != nil || strings.Contains(a.URL, "://") {
		return &MetadataError{Doc: doc, Err: fieldErr(field+".url", fmt.Errorf("%q is not a target of the channel (a path relative to %s)", a.URL, doc))}
	}
	t, err := c.docs.Target(name)
	if err != nil {
		return fmt.Errorf("%s %s: %w", doc, field, err)
	}
	if t.SHA256 != a.SHA256 || t.Length != a.Size {
		return &channel.Error{Doc: doc, Check: channel.CheckMismatch,
			Err: fmt.Errorf("%s says %s is %d bytes with sha256 %s, the signed target %s is %d bytes with sha256 %s", field, a.URL, a.Size, a.SHA256, name, t.Length, t.SHA256)}
	}
	a.URL, a.UnpackedSize = t.URL, t.UnpackedSize
	return nil
}
