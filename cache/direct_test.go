package cache

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentPages is how many of path's pages are in the page cache.
func residentPages(t *testing.T, path string) (resident, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", path, errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			resident++
		}
	}
	return resident, len(vec)
}

// directStoreDir is a directory for a store whose file system takes
// O_DIRECT and keeps files out of memory; the test is skipped elsewhere.
func directStoreDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("TMPDIR (%s) is a tmpfs, where every file is in the page cache; run with TMPDIR on a disk", dir)
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pf, err := os.Open(probe)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	f := openDirect(probe, pf)
	if f == nil {
		t.Skipf("the file system of TMPDIR (%s) refuses O_DIRECT", dir)
	}
	f.Close()
	os.Remove(probe)
	return dir
}

// An artifact fetched into a node cache does not fill the node's page
// cache (where the apps' own pages live): its whole blocks go to the disk
// with O_DIRECT, only the tail, shorter than a block, through the page
// cache.
func TestFetchKeepsArtifactsOutOfThePageCache(t *testing.T) {
	dir := directStoreDir(t)
	data := testData(16*mib+100, 31)
	digest := sha256Hex(data)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"d"`) })
	s := &Store{Dir: dir}
	if _, err := s.Fetch(context.Background(), o.URL, digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	resident, total := residentPages(t, s.Path(digest))
	if resident > 1 {
		t.Errorf("%d of the artifact's %d pages are in the page cache after the fetch, want the tail's at most", resident, total)
	}
	verifyStored(t, s, digest)
}

// A fetch cut in the middle of a block resumes there: the bytes up to the
// block's end go through the page cache, the rest with O_DIRECT again, and
// the artifact is whole.
func TestFetchResumedMidBlockRealigns(t *testing.T) {
	dir := directStoreDir(t)
	data := testData(8*mib+5000, 32)
	digest := sha256Hex(data)
	const cut = 3*mib + 1234
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w = &cutWriter{ResponseWriter: w, left: cut}
		}
		serve(w, r, data, `"d"`)
	})
	s := testStore(dir)
	res, err := s.FetchStats(context.Background(), o.URL, digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if reqs := o.requests(); len(reqs) != 2 || reqs[1].Start != cut {
		t.Fatalf("requests %+v, want a second one from byte %d (%+v)", reqs, cut, res)
	}
	resident, total := residentPages(t, s.Path(digest))
	if resident > 2 { // the block cut in two, and the tail's
		t.Errorf("%d of the artifact's %d pages are in the page cache after a resume mid-block, want 2 at most", resident, total)
	}
	verifyStored(t, s, digest)
}

// Where the file system refuses O_DIRECT, the same fetch goes through the
// page cache.
func TestFetchWhereODirectIsRefused(t *testing.T) {
	was := openDirect
	openDirect = func(string, *os.File) *os.File { return nil }
	t.Cleanup(func() { openDirect = was })
	data := testData(4*mib+100, 33)
	digest := sha256Hex(data)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"d"`) })
	s := testStore(t.TempDir())
	if _, err := s.Fetch(context.Background(), o.URL, digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	verifyStored(t, s, digest)
}

// The O_DIRECT descriptor is opened by path: if the path names another
// file by then, there is none, rather than one writing elsewhere.
func TestOpenDirectRefusesAReplacedPath(t *testing.T) {
	dir := directStoreDir(t)
	part := filepath.Join(dir, "x.part")
	if err := os.WriteFile(part, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(part, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if d := openDirect(part, f); d == nil {
		t.Fatal("no O_DIRECT descriptor for the file itself")
	} else {
		d.Close()
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, part); err != nil {
		t.Fatal(err)
	}
	if d := openDirect(part, f); d != nil {
		d.Close()
		t.Fatal("an O_DIRECT descriptor on the file that replaced the path")
	}
}
