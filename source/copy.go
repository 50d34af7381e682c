package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

// ChannelCopy fills an operator's registry from a channel (the publisher's
// HTTP(S) repository, a directory, or another registry), verified as a run
// verifies it: the metadata from the anchor on, every document, and each
// artifact's length and sha256 before any of its bytes are pushed. What
// it pushes is laid out as `sentinel channel push` lays out a channel, so
// a cluster whose channel or mirror is that registry reads it as it reads
// the upstream.
type ChannelCopy struct {
	Root     string // the trust anchor's file
	StateDir string // keep trusted state here ("": none)
	// Releases limits the artifacts copied to those of these releases and
	// their patch catalogs (and the newest sentinel build per platform);
	// empty: every artifact. The metadata and every document (index,
	// manifests, patch catalogs, builds) are always copied: they are small,
	// and a run reads the manifest of the release a node runs.
	Releases []string
	// WorkDir holds artifacts while they are downloaded and verified (a
	// partial download resumes there); each leaves it once pushed.
	WorkDir string
	// Registry: CA and credentials of the registries, source and
	// destination.
	Registry oci.Settings
	// Say reports one line per artifact and the outcome.
	Say func(format string, args ...any)
}

// Copied is what a copy did.
type Copied struct {
	*oci.Pushed
	Artifacts      int // artifacts in the publication
	ArtifactsThere int // of which the registry held already
	Kept           int // files kept from the publication that was there
}

// Run copies the channel at src (a directory or URL) into dst.
func (o ChannelCopy) Run(ctx context.Context, src string, dst oci.Ref) (*Copied, error) {
	if o.Root == "" {
		return nil, &ConfigError{Msg: "channel copy from a channel it verifies needs --root FILE: the channel's root as obtained from its publisher (the cluster file's trust.root)"}
	}
	anchor, err := os.ReadFile(o.Root)
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("--root, the trust anchor: %v (give the channel's root.json as obtained from its publisher)", err)}
	}
	u, err := ChannelArg(src)
	if err != nil {
		return nil, err
	}
	if strings.TrimSuffix(u, "/") == dst.String() {
		return nil, &ConfigError{Msg: fmt.Sprintf("%s is both the source and the destination of the copy", dst)}
	}
	dstAccess, err := o.Registry.ForHost(ctx, dst.Host)
	if err != nil {
		return nil, err
	}
	w, err := oci.NewWriter(dst, dstAccess)
	if err != nil {
		return nil, err
	}
	rd, err := o.openSource(ctx, u, anchor)
	if err != nil {
		return nil, err
	}
	defer rd.client.Close()
	arts, err := o.needed(ctx, rd.channel)
	if err != nil {
		return nil, refused(err, u, "")
	}
	files, err := rd.client.Files(ctx)
	if err != nil {
		return nil, refused(err, u, "")
	}
	version, err := oci.TimestampVersion(files["metadata/timestamp.json"])
	if err != nil {
		return nil, fmt.Errorf("the verified timestamp of %s: %w", u, err)
	}
	out := &Copied{Artifacts: len(arts)}
	if out.Kept, err = w.KeepLatest(ctx, files["metadata/1.root.json"]); err != nil {
		return nil, err
	}
	for _, a := range arts {
		there, err := o.copyArtifact(ctx, rd, w, a)
		if err != nil {
			return nil, err
		}
		if there {
			out.ArtifactsThere++
		}
	}
	for _, p := range sortedKeys(files) {
		if err := w.PushBytes(ctx, p, files[p]); err != nil {
			return nil, fmt.Errorf("%w; the publication was not tagged: run the copy again, it sends only what %s lacks", err, dst)
		}
	}
	if out.Pushed, err = w.Commit(ctx, version); err != nil {
		return nil, fmt.Errorf("%w; run the copy again, it sends only what %s lacks", err, dst)
	}
	return out, nil
}

// sourceRead is the verified channel being copied and how to fetch its
// artifacts.
type sourceRead struct {
	client  *channel.Client
	channel *release.Channel
	http    *http.Client
	remote  *oci.Remote // an oci:// source
}

// openSource verifies the channel at u from the anchor and reads its index.
// Nothing has been pushed when it fails.
func (o ChannelCopy) openSource(ctx context.Context, u string, anchor []byte) (*sourceRead, error) {
	rd := &sourceRead{http: Source{}.HTTPClient()}
	cfg := channel.Config{URL: u, Anchor: anchor, StateDir: o.StateDir, HTTP: rd.http}
	if oci.IsRef(u) {
		rem, err := (&Source{Registry: o.Registry}).remote(ctx, u)
		if err != nil {
			return nil, err
		}
		if rd.http, err = rem.Access.HTTPClient(rem.Ref.Host); err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("registry %s: %v", rem.Ref, err)}
		}
		rd.remote, cfg.HTTP = rem, rem.HTTPClient()
	}
	c, err := channel.Open(ctx, cfg)
	if err != nil {
		return nil, refused(err, u, "")
	}
	ch, err := release.OpenChannel(ctx, c)
	if err != nil {
		c.Close()
		return nil, refused(err, u, "")
	}
	rd.client, rd.channel = c, ch
	return rd, nil
}

// needed reads every document the index names, so that all are copied,
// and returns the artifacts to copy: those of o.Releases (every one when
// empty), their patch catalogs' and the sentinel builds'.
func (o ChannelCopy) needed(ctx context.Context, ch *release.Channel) ([]release.Artifact, error) {
	for _, v := range o.Releases {
		if _, ok := ch.Index.Entry(v); !ok {
			return nil, &release.UnknownReleaseError{Version: v, Offered: ch.Index.Versions()}
		}
	}
	var out []release.Artifact
	seen := map[string]bool{}
	add := func(a release.Artifact) {
		if !seen[a.SHA256] {
			seen[a.SHA256] = true
			out = append(out, a)
		}
	}
	for _, r := range ch.Index.Releases {
		m, err := ch.Manifest(ctx, r.Version)
		if err != nil {
			return nil, err
		}
		cat, err := ch.Patches(ctx, r.Version)
		if err != nil {
			return nil, err
		}
		if len(o.Releases) > 0 && !slices.Contains(o.Releases, r.Version) {
			continue
		}
		for _, c := range m.Components {
			add(c.Artifact)
		}
		for _, p := range cat.Patches {
			for _, pc := range p.Components {
				add(pc.Artifact)
			}
		}
	}
	builds, found, err := ch.SentinelBuilds(ctx)
	if err != nil || !found {
		return out, err
	}
	for _, b := range builds.Builds {
		if newest, _ := builds.Newest(b.OS, b.Arch); len(o.Releases) == 0 || newest.Version == b.Version {
			add(b.Artifact)
		}
	}
	return out, nil
}

// copyArtifact puts one artifact in the publication: listed as it is when
// the registry holds its blob, else downloaded into the work directory
// (resuming a partial download), checked against its signed length and
// sha256, and only then pushed. It reports whether the registry held it.
func (o ChannelCopy) copyArtifact(ctx context.Context, rd *sourceRead, w *oci.Writer, a release.Artifact) (bool, error) {
	path := strings.TrimPrefix(a.URL, rd.client.URL())
	if there, err := w.Has(ctx, a.SHA256, a.Size); err == nil && there {
		w.Add(path, a.SHA256, a.Size)
		o.Say("there already %s\n", path)
		return true, nil
	}
	from := a.URL
	if rd.remote != nil {
		from = rd.remote.Ref.BlobURL(rd.remote.Access.Scheme(), a.SHA256)
	}
	store := &cache.Store{Dir: o.WorkDir, HTTP: rd.http}
	if _, err := store.Fetch(ctx, from, a.SHA256, a.Size); err != nil {
		return false, artifactRefused(err, rd.client.URL(), a, w.Ref, o.WorkDir)
	}
	f, err := os.Open(store.Path(a.SHA256))
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := w.Push(ctx, path, a.SHA256, a.Size, f); err != nil {
		return false, fmt.Errorf("%w (the artifact is verified in %s: run the copy again, it sends only what %s lacks)", err, o.WorkDir, w.Ref)
	}
	_ = os.Remove(store.Path(a.SHA256)) // in the registry now
	o.Say("pushed %s %d bytes sha256 %s\n", path, a.Size, a.SHA256)
	return false, nil
}

// artifactRefused says what happened to an artifact that could not be
// copied: other bytes than signed are a refusal of the source (exit 2),
// anything else a failure to run again.
func artifactRefused(err error, src string, a release.Artifact, dst oci.Ref, workDir string) error {
	var dm *cache.DigestMismatchError
	var sm *cache.SizeMismatchError
	switch {
	case errors.As(err, &dm):
		err = &channel.Error{Doc: a.URL, Check: channel.CheckHash, Err: fmt.Errorf("sha256 %s, the signed target says %s", dm.Got, a.SHA256)}
	case errors.As(err, &sm) && sm.Got > sm.Want:
		err = &channel.Error{Doc: a.URL, Check: channel.CheckLength, Err: fmt.Errorf("more than the %d bytes the signed target says", a.Size)}
	default:
		return fmt.Errorf("fetching %s: %w; nothing of it was pushed to %s: run the copy again once the source answers (a partial download resumes from %s; what %s holds is not sent again)", a.URL, err, dst, workDir, dst)
	}
	return &CopyRefusedError{Source: src, Err: err, Artifact: true,
		Pushed: fmt.Sprintf("nothing of it was pushed to %s, and no publication tagged (artifacts verified before it are in the registry, unlisted until a copy succeeds)", dst)}
}

// CopyRefusedError: the source of a copy served something that does not
// verify from the root (a *channel.Error, or a document that does not
// parse). What it says to do is the copy's, not a run's.
type CopyRefusedError struct {
	Source string
	Pushed string // what was pushed, or not
	Err    error
	// Artifact: the metadata verified, an artifact did not.
	Artifact bool
}

func (e *CopyRefusedError) Error() string {
	what := e.Err.Error()
	var ce *channel.Error
	if errors.As(e.Err, &ce) {
		what = fmt.Sprintf("%s refused (%s check): %v", ce.Doc, ce.Check, ce.Err)
	}
	advice := "check that --root is the channel's root (as the cluster file's trust.root) and that the source is its publisher's repository, not a server or proxy serving other bytes; tell the publisher if it is"
	switch {
	case e.Artifact:
		advice = "the source (or a proxy between) serves other bytes under that name than the publisher signed: tell the publisher or fix the proxy, then copy again (it sends only what the registry lacks)"
	case ce != nil && ce.Check == channel.CheckExpired:
		advice = "the channel's publisher must refresh it (`sentinel channel timestamp`), then copy again"
	}
	return fmt.Sprintf("the channel at %s does not verify: %s; %s; %s", e.Source, what, e.Pushed, advice)
}
func (e *CopyRefusedError) Unwrap() error { return e.Err }

// refused makes a refusal of the source a *CopyRefusedError; a source
// that could not be read, or a release it does not offer, stays as it is.
func refused(err error, src, pushed string) error {
	var ce *channel.Error
	var me *release.MetadataError
	if !errors.As(err, &ce) && !errors.As(err, &me) {
		return channel.Named(err, "the SRC argument of `sentinel channel copy`")
	}
	if pushed == "" {
		pushed = "nothing was pushed"
	}
	return &CopyRefusedError{Source: src, Pushed: pushed, Err: err}
}

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
