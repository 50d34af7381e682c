package cache

// Writes that bypass the page cache. A node stages gigabytes while its
// apps run: through the page cache every byte would be copied once more
// by the CPU (a third of staging's CPU on the lab's VMs) and would push
// the apps' own pages out of memory. With O_DIRECT the disk takes the
// bytes straight from the transfer's buffer. The page cache still takes
// what O_DIRECT cannot: a piece shorter than a block (a file's tail) or
// one at an offset that is not a block's, and everything on a file system
// that refuses O_DIRECT or where it is a network round trip a write.
//
// The checkpoints' fsync goes through the buffered descriptor: fsync makes
// the whole file durable, whichever descriptor wrote it, on the local file
// systems O_DIRECT is used on (FUSE and network file systems, where a
// flush may be per handle, are left to the page cache).

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment O_DIRECT asks of offsets, lengths and
// buffers: 4096 covers disks of 512-byte and of 4 KiB logical blocks.
const directAlign = 4096

// openDirect opens the file f has open, by path, for writing with
// O_DIRECT; nil where the file system refuses it or is not local, or if
// the path names another file by now. A variable so that tests can refuse it.
var openDirect = func(path string, f *os.File) *os.File {
	var fs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &fs) != nil || !directSuits(int64(fs.Type)) {
		return nil
	}
	d, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Fstat(int(d.Fd()), &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		d.Close()
		return nil
	}
	return d
}

// directSuits says whether O_DIRECT is worth using on a file system of
// this type: not where a write is a round trip to a server (NFS, SMB,
// Ceph) or a flush may cover one handle only (FUSE).
func directSuits(fsType int64) bool {
	switch fsType {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC,
		unix.FUSE_SUPER_MAGIC, unix.CEPH_SUPER_MAGIC, unix.V9FS_MAGIC, unix.AFS_FS_MAGIC:
		return false
	}
	return true
}

// alignedBuffer returns n bytes whose first is at a multiple of directAlign.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % directAlign); r != 0 {
		skip = directAlign - r
	}
	return b[skip : skip+n : skip+n]
}

func isAligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

// writeAt writes p at off in the .part: its whole blocks through t.direct
// when off and p are aligned, the rest through t.f. A file system that
// refuses the direct write (EINVAL) gets the page cache from then on.
func (t *transfer) writeAt(p []byte, off int64) (int, error) {
	done := 0
	if whole := len(p) &^ (directAlign - 1); t.direct != nil && whole > 0 && off%directAlign == 0 && isAligned(p) {
		n, err := t.direct.WriteAt(p[:whole], off)
		done = n
		switch {
		case errors.Is(err, syscall.EINVAL):
			t.closeDirect() // what it wrote stays: the rest goes through t.f
		case err != nil:
			return n, err
		}
	}
	n, err := t.f.WriteAt(p[done:], off+int64(done))
	return done + n, err
}

// closeDirect closes the O_DIRECT descriptor, if any.
func (t *transfer) closeDirect() {
	if t.direct != nil {
		t.direct.Close()
		t.direct = nil
	}
}
