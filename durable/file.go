// Package durable puts files on disk so that a crash leaves either the old
// or the new state, never a mix: atomic writes, renames and directory
// syncs, copies that reach the disk, and flock locks. It imports only the
// standard library, so every package can use it.
package durable

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
)

// WriteFile replaces path with data, so that a crash leaves either the old
// or the new content: a temporary file in the same directory is written,
// given mode (exactly, whatever the umask), fsynced and renamed over path,
// then the directory is fsynced. Missing parent directories are created
// (0755). On failure path is untouched and no temporary file is left.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := writeFile(root, filepath.Base(path), data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// WriteFileIn is WriteFile for name, a slash-separated path inside root:
// neither name nor a symbolic link on its way can lead out of root.
// Missing parent directories inside root are created (0755).
func WriteFileIn(root *os.Root, name string, data []byte, mode os.FileMode) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return writeFile(root, name, data, mode)
}

// maxTempTries bounds the search for a free temporary name.
const maxTempTries = 100

func writeFile(root *os.Root, name string, data []byte, mode os.FileMode) error {
	dir, base := path.Split(name)
	var f *os.File
	var tmp string
	for try := 0; ; try++ {
		tmp = dir + "." + base + ".tmp-" + strconv.FormatUint(uint64(rand.Uint32()), 10)
		var err error
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == maxTempTries {
			return err
		}
	}
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // fchmod: exact bits, durable with the fsync
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	if dir == "" {
		dir = "."
	}
	return syncDirIn(root, dir)
}

// SyncDir fsyncs the directory dir, which makes a create, rename or remove
// of one of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return syncClose(d)
}

func syncDirIn(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	return syncClose(d)
}

func syncClose(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rename renames oldpath to newpath, then fsyncs newpath's directory and,
// when it is another, oldpath's: once Rename returns nil, a crash leaves
// the file under its new name only.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	newDir, oldDir := filepath.Dir(newpath), filepath.Dir(oldpath)
	if err := SyncDir(newDir); err != nil {
		return err
	}
	if oldDir != newDir {
		return SyncDir(oldDir)
	}
	return nil
}

// CopyFile copies src to dst, which must not exist (it is created with
// mode, O_EXCL), and fsyncs dst. It never replaces a file: a second copy to
// the same name fails with an error wrapping fs.ErrExist. A copy that fails
// midway removes dst. The caller fsyncs dst's directory (SyncDir).
func CopyFile(src, dst string, mode os.FileMode) error {
	return copyFile(src, dst, mode, os.O_EXCL)
}

// CopyFileOverwrite is CopyFile that replaces the content of an existing
// dst in place (O_TRUNC; mode applies only when dst is created). It is not
// atomic: use WriteFile or Rename when readers must never see a partial dst.
func CopyFileOverwrite(src, dst string, mode os.FileMode) error {
	return copyFile(src, dst, mode, os.O_TRUNC)
}

func copyFile(src, dst string, mode os.FileMode, flag int) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|flag, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}
