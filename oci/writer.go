package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// Writer builds one publication in a repository: files pushed as blobs
// (those the registry holds are not sent again), then one manifest
// listing them, tagged last by Commit. Until Commit, readers see the
// previous publication.
type Writer struct {
	Ref    Ref
	access Access
	repo   *remote.Repository
	layers map[string]ocispec.Descriptor // by title
	out    Pushed
}

// NewWriter starts a publication at ref.
func NewWriter(ref Ref, a Access) (*Writer, error) {
	repo, err := Repository(ref, a)
	if err != nil {
		return nil, err
	}
	return &Writer{Ref: ref, access: a, repo: repo, layers: map[string]ocispec.Descriptor{}}, nil
}

// KeepLatest starts from the files of the publication tagged latest, if
// any, so that a copy of one release keeps what earlier copies put there
// (targets are content-addressed: an old one never shadows a new one).
// The files added after it replace those of the same path. A latest tag on
// anything but a publication of the channel whose first root is root1 is
// refused: that repository holds something else, and another channel's
// later roots would make this one's clients refuse it.
func (w *Writer) KeepLatest(ctx context.Context, root1 []byte) (int, error) {
	sum := sha256.Sum256(root1)
	first := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
	m, err := checkDestination(ctx, w.repo, w.Ref, w.access, first)
	if err != nil || m == nil {
		return 0, err
	}
	n := 0
	for _, l := range m.Layers {
		title := l.Annotations[TitleAnnotation]
		if title == "" || title == "metadata/timestamp.json" || l.Digest.Validate() != nil {
			continue // the timestamp is always the new one's
		}
		w.layers[title] = l
		n++
	}
	return n, nil
}

// published is the publication tagged latest in repo and its manifest's
// digest; nil when there is none.
func published(ctx context.Context, repo *remote.Repository, ref Ref, a Access) (*ocispec.Manifest, digest.Digest, error) {
	desc, data, err := oras.FetchBytes(ctx, repo, LatestTag, oras.FetchBytesOptions{MaxBytes: maxManifestBytes})
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the publication tagged %s at %s: %w", LatestTag, ref, explain(err, ref, a))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil || m.ArtifactType != ArtifactType {
		return nil, desc.Digest, &RefError{Raw: ref.String(), Why: fmt.Sprintf("its tag %s is not a sentinel channel (artifactType %q)", LatestTag, m.ArtifactType)}
	}
	return &m, desc.Digest, nil
}

// firstRoot is the digest of the publication's metadata/1.root.json ("" when it lists none).
func firstRoot(m *ocispec.Manifest) digest.Digest {
	for _, l := range m.Layers {
		if l.Annotations[TitleAnnotation] == "metadata/1.root.json" {
			return l.Digest
		}
	}
	return ""
}

// checkDestination reads the publication tagged latest at the
// destination of a copy or push of the channel whose first root has the
// digest first: nil when there is none, refused when it is not a
// publication of that channel (another channel's later roots would make
// this one's clients refuse it, and its clients would refuse this one).
func checkDestination(ctx context.Context, repo *remote.Repository, ref Ref, a Access, first digest.Digest) (*ocispec.Manifest, error) {
	m, man, err := published(ctx, repo, ref, a)
	var re *RefError
	var reach *ReachError
	switch {
	case errors.As(err, &reach):
		return nil, fmt.Errorf("%w; nothing was pushed", err)
	case errors.As(err, &re):
		return nil, &RefError{Raw: ref.String(), Why: re.Why + ": " + replaceAdvice(ref, man) + "; nothing was pushed"}
	case err != nil:
		return nil, fmt.Errorf("%w (check that the registry runs, and its credentials and CA: --registry-auth, --registry-ca); nothing was pushed", err)
	case m == nil:
		return nil, nil
	case firstRoot(m) != first:
		return nil, &RefError{Raw: ref.String(), Why: "it holds another channel (its metadata/1.root.json is not this one's): " + replaceAdvice(ref, man) + "; nothing was pushed"}
	}
	return m, nil
}

// replaceAdvice says how to proceed when a repository holds something
// else than the channel being copied there.
func replaceAdvice(ref Ref, man digest.Digest) string {
	return fmt.Sprintf("copy the channel to a repository of its own (oci://%s/OTHER/NAME, and list that in the cluster file's mirrors), or, if what %s holds is to go, delete its manifest %s with the registry's own tools (the distribution API: DELETE /v2/%s/manifests/%s, which needs deletes enabled in the registry's configuration (storage.delete.enabled for distribution) and removes every tag of it; Harbor and zot: delete the artifact), then copy again; clients that read the old channel there will refuse the new one until their trust.root is this channel's",
		ref.Host, ref, man, ref.Repo, man)
}

// Has says whether the registry holds the blob with this sha256.
func (w *Writer) Has(ctx context.Context, sha256Hex string, size int64) (bool, error) {
	return w.repo.Blobs().Exists(ctx, fileDesc("", sha256Hex, size))
}

// Add lists a file the registry already holds (Has said so) in the
// publication.
func (w *Writer) Add(path, sha256Hex string, size int64) {
	w.layers[path] = fileDesc(path, sha256Hex, size)
	w.out.Files++
}

// PushBytes puts data in the publication as path.
func (w *Writer) PushBytes(ctx context.Context, path string, data []byte) error {
	sum := sha256.Sum256(data)
	return w.Push(ctx, path, hex.EncodeToString(sum[:]), int64(len(data)), bytes.NewReader(data))
}

// Push puts the file path, with this sha256 and size, in the publication,
// sending r only when the registry lacks the blob. The registry checks
// the digest of what it receives.
func (w *Writer) Push(ctx context.Context, path, sha256Hex string, size int64, r io.Reader) error {
	desc := fileDesc(path, sha256Hex, size)
	if ok, err := w.repo.Blobs().Exists(ctx, desc); err != nil || !ok {
		if err := w.repo.Blobs().Push(ctx, desc, r); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return fmt.Errorf("pushing %s to %s: %w", path, w.Ref, explain(err, w.Ref, w.access))
		}
		w.out.Uploaded++
		w.out.Bytes += size
	}
	w.layers[path] = desc
	w.out.Files++
	return nil
}

func fileDesc(path, sha256Hex string, size int64) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: FileMediaType, Size: size, Digest: digest.NewDigestFromEncoded(digest.SHA256, sha256Hex)}
	if path != "" {
		d.Annotations = map[string]string{TitleAnnotation: path}
	}
	return d
}

// Commit pushes the manifest listing every file, sorted by path, and
// tags it v<version> (the timestamp's) and latest, last.
func (w *Writer) Commit(ctx context.Context, version int64) (*Pushed, error) {
	paths := make([]string, 0, len(w.layers))
	for p := range w.layers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	layers := make([]ocispec.Descriptor, 0, len(paths))
	for _, p := range paths {
		layers = append(layers, w.layers[p])
	}
	man, err := oras.PackManifest(ctx, w.repo, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{Layers: layers,
		// The same channel pushed again is the same manifest: its time is
		// in the signed metadata, not here.
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "1970-01-01T00:00:00Z"}})
	if err != nil {
		return nil, fmt.Errorf("pushing the manifest to %s: %w", w.Ref, explain(err, w.Ref, w.access))
	}
	out := w.out
	out.Manifest = man.Digest.String()
	out.Tags = []string{"v" + strconv.FormatInt(version, 10), LatestTag}
	for _, tag := range out.Tags {
		if err := w.repo.Tag(ctx, man, tag); err != nil {
			return nil, fmt.Errorf("tagging the manifest %s on %s: %w", tag, w.Ref, explain(err, w.Ref, w.access))
		}
	}
	return &out, nil
}

// TimestampVersion is the version in a timestamp.json's bytes (not
// verified here: it only names the publication).
func TimestampVersion(data []byte) (int64, error) {
	var ts struct {
		Signed struct {
			Type    string `json:"_type"`
			Version int64  `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &ts); err != nil || ts.Signed.Type != "timestamp" || ts.Signed.Version < 1 {
		return 0, errors.New("not a TUF timestamp")
	}
	return ts.Signed.Version, nil
}
