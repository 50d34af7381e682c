package cache

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
	"strconv"
	"syscall"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
)

// Entry is one verified artifact of the store.
type Entry struct {
	Digest  string
	Size    int64
	ModTime time.Time
}

// BadEntry is a stored artifact whose bytes no longer hash to its name.
type BadEntry struct {
	Digest        string // the name it was stored under
	Got           string // the sha256 of its bytes
	Size          int64
	QuarantinedAs string // where it was moved: Dir/quarantine/<digest>.<unix-nanos>
}

// VerifyReport is the outcome of Store.Verify.
type VerifyReport struct {
	Checked int
	Bad     []BadEntry
}

// isDigestName reports whether s is a sha256 digest as the store names files:
// 64 lowercase hex characters.
func isDigestName(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// List returns the verified entries of the store (regular files under
// Dir/sha256 named by a digest), sorted by digest. Downloads in progress
// (partial/) and quarantined files are not entries. A store that was never
// written to has no entries.
func (s *Store) List() ([]Entry, error) {
	des, err := os.ReadDir(filepath.Join(s.Dir, "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if !isDigestName(de.Name()) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Digest: de.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// Remove deletes one verified entry (for prune) and fsyncs the directory. An
// entry that is not there is an error wrapping fs.ErrNotExist.
func (s *Store) Remove(digest string) error {
	if !isDigestName(digest) {
		return fmt.Errorf("bad digest %q", digest)
	}
	if err := os.Remove(s.Path(digest)); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Join(s.Dir, "sha256"))
}

// Verify re-hashes every stored artifact. A file whose sha256 differs from
// its name is moved to Dir/quarantine/<digest>.<unix-nanos> (both
// directories fsynced), so it is no longer served or used and a later Fetch
// downloads it again. progress, if not nil, is called once per artifact
// checked. On cancellation it returns what it checked so far and ctx.Err().
func (s *Store) Verify(ctx context.Context, progress func(digest string, ok bool)) (VerifyReport, error) {
	var rep VerifyReport
	entries, err := s.List()
	if err != nil {
		return rep, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		res, err := s.verifyOne(ctx, e.Digest)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed or quarantined meanwhile
		}
		if err != nil {
			return rep, err
		}
		rep.Checked++
		if res.bad != nil {
			rep.Bad = append(rep.Bad, *res.bad)
		}
		if progress != nil {
			progress(e.Digest, res.bad == nil)
		}
	}
	return rep, nil
}

// verifyResult is the outcome of hashing one stored file.
type verifyResult struct {
	info os.FileInfo // the file that was hashed, when it was good
	bad  *BadEntry   // set when it did not match its name (and was quarantined)
}

// verifyOne hashes the file stored under digest. A mismatch quarantines the
// file (if it is still the one that was hashed) and is reported in bad, not
// as an error.
func (s *Store) verifyOne(ctx context.Context, digest string) (verifyResult, error) {
	got, fi, n, err := s.hashStored(ctx, digest)
	if err != nil {
		return verifyResult{}, err
	}
	if got == digest {
		return verifyResult{info: fi}, nil
	}
	q, err := s.quarantine(digest, fi)
	if err != nil {
		return verifyResult{}, err
	}
	return verifyResult{bad: &BadEntry{Digest: digest, Got: got, Size: n, QuarantinedAs: q}}, nil
}

// hashStored hashes the stored entry of digest.
func (s *Store) hashStored(ctx context.Context, digest string) (got string, fi os.FileInfo, n int64, err error) {
	f, err := openNoFollow(s.Path(digest))
	if err != nil {
		return "", nil, 0, err
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return "", nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, 0, fmt.Errorf("%s is not a regular file", s.Path(digest))
	}
	h := sha256.New()
	n, err = io.CopyBuffer(h, hashCtxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return "", nil, 0, fmt.Errorf("hashing %s: %w", s.Path(digest), err)
	}
	return hex.EncodeToString(h.Sum(nil)), fi, n, nil
}

// Intact reports, changing nothing, whether the stored entry of digest
// still hashes to its name.
func (s *Store) Intact(ctx context.Context, digest string) (bool, error) {
	got, _, _, err := s.hashStored(ctx, digest)
	return err == nil && got == digest, err
}

// VerifyEntry re-hashes one stored entry and quarantines it if it rotted,
// so the next Fetch downloads it again. It returns the bad entry, or nil.
func (s *Store) VerifyEntry(ctx context.Context, digest string) (*BadEntry, error) {
	if !isDigestName(digest) {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	r, err := s.verifyOne(ctx, digest)
	return r.bad, err
}

// quarantine moves the file stored under digest, if it is still the file
// described by fi, to Dir/quarantine/<digest>.<unix-nanos> and fsyncs both
// directories. It returns the new path ("" if the file had already been
// moved or replaced by someone else).
func (s *Store) quarantine(digest string, fi os.FileInfo) (string, error) {
	src := s.Path(digest)
	cur, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !os.SameFile(cur, fi) {
		return "", nil // replaced meanwhile (by a fresh, verified Fetch)
	}
	qdir := filepath.Join(s.Dir, "quarantine")
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return "", err
	}
	var dst string
	for ns := time.Now().UnixNano(); ; ns++ {
		dst = filepath.Join(qdir, digest+"."+strconv.FormatInt(ns, 10))
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(src, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	if err := durable.SyncDir(filepath.Join(s.Dir, "sha256")); err != nil {
		return dst, err
	}
	return dst, durable.SyncDir(qdir)
}

// hashCtxReader stops reading once ctx is done, so hashing a large file can be
// cancelled.
type hashCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c hashCtxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// openNoFollow opens path read-only, refusing a symbolic link in its last
// element: the store holds regular files only.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
