package cache

// Writes that bypass the page cache. A node stages gigabytes while its
// apps run: through the page cache every byte would be copied once more
// by the CPU (a third of staging's CPU on the lab's VMs) and would push
// the apps' own pages out of memory. With O_DIRECT the disk takes the
// bytes straight from the transfer's buffer. The page cache still takes
// what O_DIRECT cannot: a piece shorter than a block (a file's tail) or
// one at an offset that is not a block's, and everything on a file system
// that refuses O_DIRECT.

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// directAlign is the alignment O_DIRECT asks of offsets, lengths and
// buffers: 4096 covers disks of 512-byte and of 4 KiB logical blocks.
const directAlign = 4096

// openDirect opens path for writing with O_DIRECT, or returns nil where
// the file system refuses it. A variable so that tests can refuse it.
var openDirect = func(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
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
		switch {
		case errors.Is(err, syscall.EINVAL) && n <= 0:
			t.direct.Close()
			t.direct = nil
		case err != nil:
			return max(n, 0), err
		default:
			done = n
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
