package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"
)

// Repository is oras-go's handle on ref, reached with a.
func Repository(ref Ref, a Access) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Reference())
	if err != nil {
		return nil, &RefError{Raw: ref.String(), Why: err.Error()}
	}
	if repo.Client, err = a.AuthClient(ref.Host); err != nil {
		return nil, err
	}
	repo.PlainHTTP = a.PlainHTTP
	return repo, nil
}

// Pushed is what Push put in the registry.
type Pushed struct {
	Files, Uploaded int
	Bytes           int64
	Manifest        string // its digest
	Tags            []string
}

// Push publishes the channel repository in dir (metadata/ and targets/, as
// `sentinel channel` builds it) to ref: each file as a blob (those the
// registry holds already are not sent again), then one manifest listing
// them, tagged with the timestamp's version and latest. The tags move
// last, so a client reads the previous publication or this one, whole.
func Push(ctx context.Context, dir string, ref Ref, a Access) (*Pushed, error) {
	version, err := timestampVersion(filepath.Join(dir, "metadata", "timestamp.json"))
	if err != nil {
		return nil, fmt.Errorf("%s is not a channel repository (sentinel channel init/publish build one): %w", dir, err)
	}
	w, err := NewWriter(ref, a)
	if err != nil {
		return nil, err
	}
	files, err := channelFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, rel := range files {
		if err := pushFile(ctx, w, dir, rel); err != nil {
			return nil, err // it names the file and the registry
		}
	}
	return w.Commit(ctx, version)
}

// channelFiles lists the repository's files below dir, sorted, as paths
// with forward slashes.
func channelFiles(dir string) ([]string, error) {
	var out []string
	for _, top := range []string{"metadata", "targets"} {
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				rel, err := filepath.Rel(dir, p)
				if err != nil {
					return err
				}
				out = append(out, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil && !(top == "targets" && errors.Is(err, fs.ErrNotExist)) {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// pushFile sends one file as a blob unless the registry has it already.
func pushFile(ctx context.Context, w *Writer, dir, rel string) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return w.Push(ctx, rel, hex.EncodeToString(h.Sum(nil)), size, f)
}

// Copy copies the latest publication at src, with every blob, to dst and
// tags it latest there: the cache-filling step
// of a registry the operator runs. Blobs dst holds are not sent again.
func Copy(ctx context.Context, src Ref, srcAccess Access, dst Ref, dstAccess Access) (string, error) {
	from, err := Repository(src, srcAccess)
	if err != nil {
		return "", err
	}
	to, err := Repository(dst, dstAccess)
	if err != nil {
		return "", err
	}
	// Unverified, but not blind: a copy that would replace another channel
	// is refused as the verified copy refuses it.
	m, _, err := published(ctx, from, src, srcAccess)
	switch {
	case err != nil:
		return "", err
	case m == nil:
		return "", &NoPublicationError{Ref: src}
	}
	if _, err := checkDestination(ctx, to, dst, dstAccess, firstRoot(m)); err != nil {
		return "", err
	}
	desc, err := oras.Copy(ctx, from, LatestTag, to, LatestTag, oras.DefaultCopyOptions)
	if err != nil {
		ref, a := dst, dstAccess
		if !strings.Contains(err.Error(), dst.Host) {
			ref, a = src, srcAccess
		}
		return "", fmt.Errorf("copying %s to %s: %w", src, dst, explain(err, ref, a))
	}
	return desc.Digest.String(), nil
}

// timestampVersion reads the version of a timestamp.json, for the tag
// (unverified: it only names the publication).
func timestampVersion(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := TimestampVersion(data)
	if err != nil {
		return 0, fmt.Errorf("%s is %w", path, err)
	}
	return v, nil
}
