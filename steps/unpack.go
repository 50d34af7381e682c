package steps

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"syscall"
)

const (
	// defaultUnpackMaxBytes is the uncompressed size limit used when Unpack
	// is called with maxBytes <= 0.
	defaultUnpackMaxBytes int64 = 8 << 30
	// unpackMaxEntries is the maximum number of archive entries (of any type,
	// pax global headers included) Unpack accepts.
	unpackMaxEntries = 100000
	// unpackStreamSlack is how many decompressed bytes beyond maxBytes the tar
	// stream may contain (headers, long-name records, block padding, skipped
	// bodies of non-file entries). It bounds CPU spent on a gzip bomb hidden in
	// data that is never written to disk.
	unpackStreamSlack int64 = 1 << 30
)

// errStreamTooLarge is returned (wrapped) when the decompressed tar stream
// exceeds maxBytes plus unpackStreamSlack.
var errStreamTooLarge = fmt.Errorf("decompressed archive stream exceeds size limit: %w", ErrUnpackLimit)

// UnsafeEntryError reports an archive entry that Unpack refused to extract
// because it could write outside the release directory, is of a type that is
// not allowed, or exceeds the extraction limits.
type UnsafeEntryError struct {
	Name   string // entry name as it appears in the archive
	Reason string
	// Limit is set when the entry goes past the size limit Unpack was given.
	Limit int64
}

// Unwrap lets callers tell a size limit (ErrUnpackLimit) from other refusals.
func (e *UnsafeEntryError) Unwrap() error {
	if e.Limit > 0 {
		return ErrUnpackLimit
	}
	return nil
}

// ErrUnpackLimit is wrapped by errors for an archive that unpacks to more
// than Unpack's maxBytes.
var ErrUnpackLimit = errors.New("archive unpacks past its limit")

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("unsafe archive entry %q: %s", e.Name, e.Reason)
}

func unsafeEntry(name, reason string) error {
	return &UnsafeEntryError{Name: name, Reason: reason}
}

// Unpack extracts the gzip-compressed tar stream r into dir, which must not
// exist yet (it is created with mode 0755; the parent must exist).
//
// Only regular files, directories and symlinks whose targets stay inside dir
// are written; pax headers are skipped. Any other entry type (hard links,
// devices, FIFOs, ...), any name that is absolute, contains a ".." element,
// passes through a symlink or replaces an existing entry, and any symlink that
// is absolute or resolves outside dir is refused with *UnsafeEntryError.
// Symlink targets may contain ".." elements only as a leading prefix (for
// example "../lib/x"), so that a chain of archive symlinks can never resolve
// outside dir even though targets are only checked lexically.
//
// Permission bits (0777) of files and directories are kept; setuid, setgid and
// sticky bits are dropped; ownership and times are not applied. At most
// maxBytes (<= 0 means 8 GiB) uncompressed file bytes and 100000 entries are
// accepted.
//
// Files are created with O_EXCL|O_NOFOLLOW through an os.Root opened on dir,
// written, fsynced and closed; after the last entry every directory created
// (dir included) gets its final mode and is fsynced. On error, dir may be left
// partially populated (never anything outside it); the caller removes it.
func Unpack(r io.Reader, dir string, maxBytes int64) error {
	if maxBytes <= 0 {
		maxBytes = defaultUnpackMaxBytes
	}
	return unpack(r, dir, unpackLimits{
		maxBytes:    maxBytes,
		maxEntries:  unpackMaxEntries,
		streamSlack: unpackStreamSlack,
	})
}

type unpackLimits struct {
	maxBytes    int64 // uncompressed bytes of regular files
	maxEntries  int   // archive entries
	streamSlack int64 // decompressed stream bytes allowed beyond maxBytes
}

type unpacker struct {
	root    *os.Root
	lim     unpackLimits
	written int64
	// dirs lists every directory created below dir, in creation order
	// (parents always before children). dirMode holds the final permission
	// bits for each; it doubles as the set of paths known to be real
	// directories created by Unpack.
	dirs    []string
	dirMode map[string]os.FileMode
}

func unpack(r io.Reader, dir string, lim unpackLimits) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("unpacking archive: creating release directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpacking archive: %w", err)
	}
	defer root.Close()

	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("unpacking archive: %w", err)
	}
	streamLimit := int64(math.MaxInt64)
	slack := min(lim.streamSlack, lim.maxBytes/4+1<<20) // a small limit keeps its slack small
	if lim.maxBytes <= math.MaxInt64-slack {
		streamLimit = lim.maxBytes + slack
	}
	stream := &cappedReader{r: zr, n: streamLimit}
	tr := tar.NewReader(stream)

	u := &unpacker{root: root, lim: lim, dirMode: make(map[string]os.FileMode)}
	entries := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("unpacking archive: %w", err)
		}
		entries++
		if entries > lim.maxEntries {
			return unsafeEntry(hdr.Name, fmt.Sprintf("archive has more than %d entries", lim.maxEntries))
		}
		if err := u.extract(hdr, tr); err != nil {
			return err
		}
	}
	// Read the rest of the gzip stream (tar record padding) so that the gzip
	// trailer (CRC-32 and length) is verified: a corrupt artifact must fail.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return fmt.Errorf("unpacking archive: %w", err)
	}
	if err := zr.Close(); err != nil {
		return fmt.Errorf("unpacking archive: %w", err)
	}
	return u.finish()
}

// extract writes one archive entry below the root.
func (u *unpacker) extract(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil // metadata only; archive/tar already applied per-file pax records
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		// handled below
	case tar.TypeLink:
		return unsafeEntry(name, "hard links are not allowed")
	case tar.TypeChar:
		return unsafeEntry(name, "character devices are not allowed")
	case tar.TypeBlock:
		return unsafeEntry(name, "block devices are not allowed")
	case tar.TypeFifo:
		return unsafeEntry(name, "FIFOs are not allowed")
	default:
		return unsafeEntry(name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}

	parts, reason := splitEntryName(name)
	if reason != "" {
		return unsafeEntry(name, reason)
	}
	if len(parts) == 0 {
		// "./" or "." names the release directory itself, which keeps mode 0755.
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return unsafeEntry(name, "entry would replace the release directory")
	}
	if err := u.ensureParents(name, parts[:len(parts)-1]); err != nil {
		return err
	}
	rel := strings.Join(parts, "/")
	perm := os.FileMode(hdr.Mode) & 0o777 // drops setuid/setgid/sticky and type bits

	// The final component must not exist, except that a directory entry may
	// repeat (or follow the implicit creation of) a directory.
	fi, err := u.root.Lstat(rel)
	switch {
	case err == nil:
		if hdr.Typeflag == tar.TypeDir && fi.IsDir() {
			if _, ok := u.dirMode[rel]; ok {
				u.dirMode[rel] = perm
				return nil
			}
		}
		return unsafeEntry(name, existingReason(fi))
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("unpacking archive: %w", err)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(name, rel, perm)
	case tar.TypeSymlink:
		if reason := checkSymlinkTarget(len(parts)-1, hdr.Linkname); reason != "" {
			return unsafeEntry(name, reason)
		}
		if err := u.root.Symlink(hdr.Linkname, rel); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return unsafeEntry(name, "entry already exists")
			}
			return fmt.Errorf("unpacking archive: %w", err)
		}
		return nil
	default: // tar.TypeReg
		return u.writeFile(name, rel, perm, hdr.Size, r)
	}
}

func existingReason(fi fs.FileInfo) string {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "entry would replace an existing symlink"
	case fi.IsDir():
		return "entry would replace an existing directory"
	case fi.Mode().IsRegular():
		return "duplicate entry for an existing file"
	default:
		return "entry already exists"
	}
}

// ensureParents checks every parent component of an entry, creating missing
// directories (mode 0755). A component that is a symlink (never followed) or
// not a directory is refused.
func (u *unpacker) ensureParents(name string, parents []string) error {
	for i := 1; i <= len(parents); i++ {
		p := strings.Join(parents[:i], "/")
		if _, ok := u.dirMode[p]; ok {
			continue // a real directory created by us; nothing replaces it later
		}
		fi, err := u.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := u.mkdir(name, p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("unpacking archive: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return unsafeEntry(name, "path passes through a symlink")
		case !fi.IsDir():
			return unsafeEntry(name, "parent path is not a directory")
		default:
			// A directory Unpack did not create: only possible if something
			// else is writing into dir concurrently. Do not trust it.
			return unsafeEntry(name, "parent directory was not created by the archive")
		}
	}
	return nil
}

// mkdir creates rel owner-only; the final mode is applied by finish, so that
// read-only directories can still be populated and the tree is not exposed
// half-written.
func (u *unpacker) mkdir(name, rel string, perm os.FileMode) error {
	if err := u.root.Mkdir(rel, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(name, "entry already exists")
		}
		return fmt.Errorf("unpacking archive: %w", err)
	}
	u.dirs = append(u.dirs, rel)
	u.dirMode[rel] = perm
	return nil
}

func (u *unpacker) writeFile(name, rel string, perm os.FileMode, size int64, r io.Reader) error {
	if size < 0 {
		return unsafeEntry(name, "negative file size")
	}
	if size > u.lim.maxBytes-u.written {
		return &UnsafeEntryError{Name: name, Limit: u.lim.maxBytes,
			Reason: fmt.Sprintf("archive exceeds the limit of %d uncompressed bytes", u.lim.maxBytes)}
	}
	f, err := u.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(name, "entry already exists")
		}
		return fmt.Errorf("unpacking archive: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	u.written += n
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = f.Chmod(perm) // fchmod: exact bits regardless of umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unpacking archive: writing %q: %w", name, err)
	}
	return nil
}

// finish applies the final directory modes and fsyncs every created
// directory, deepest first (reverse creation order, so no directory is
// traversed after its final, possibly restrictive, mode is set), then dir.
func (u *unpacker) finish() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		if err := u.syncDir(u.dirs[i], u.dirMode[u.dirs[i]]); err != nil {
			return err
		}
	}
	return u.syncDir(".", 0o755)
}

func (u *unpacker) syncDir(rel string, perm os.FileMode) error {
	f, err := u.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unpacking archive: %w", err)
	}
	err = f.Chmod(perm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unpacking archive: syncing directory %q: %w", rel, err)
	}
	return nil
}

// splitEntryName normalises an archive name into its path elements, dropping
// empty and "." elements (so "./a//b/" becomes ["a" "b"]). Absolute names and
// names with any ".." element are refused.
func splitEntryName(name string) (parts []string, reason string) {
	if name == "" {
		return nil, "empty name"
	}
	if strings.HasPrefix(name, "/") {
		return nil, "absolute path"
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, "name contains a NUL byte"
	}
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return nil, "path escapes the release directory"
		default:
			parts = append(parts, p)
		}
	}
	return parts, ""
}

// checkSymlinkTarget validates a symlink target for a link whose parent is
// depth directories below the release directory. The target must be
// relative, and ".." elements may only form a leading prefix no longer than
// depth. Because the link's parents are real directories (checked when the
// link is created) and every other archive symlink obeys the same rule,
// following the link can never leave the release directory: a target like
// "sub/up/.." is refused even though it looks harmless lexically, since
// "sub/up" may itself be a symlink.
func checkSymlinkTarget(depth int, target string) string {
	if target == "" {
		return "empty symlink target"
	}
	if strings.HasPrefix(target, "/") {
		return "symlink target is absolute"
	}
	if strings.IndexByte(target, 0) >= 0 {
		return "symlink target contains a NUL byte"
	}
	seenName := false
	for _, p := range strings.Split(target, "/") {
		switch p {
		case "", ".":
		case "..":
			if seenName {
				return `symlink target has ".." after a path element`
			}
			if depth == 0 {
				return "symlink target escapes the release directory"
			}
			depth--
		default:
			seenName = true
		}
	}
	return ""
}

// cappedReader returns errStreamTooLarge once more than n bytes have been read.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		// Distinguish "exactly at the limit" from "over it".
		var one [1]byte
		m, err := c.r.Read(one[:])
		if m > 0 {
			return 0, errStreamTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	m, err := c.r.Read(p)
	c.n -= int64(m)
	return m, err
}
