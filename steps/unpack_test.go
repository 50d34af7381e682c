package steps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tarEntry describes one entry of a test archive.
type tarEntry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func file(name string, mode int64, body string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}

func dirEntry(name string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeDir, mode: mode}
}

func symlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// buildTar returns an uncompressed tar stream of entries.
func buildTar(tb testing.TB, entries []tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     e.mode,
			Linkname: e.link,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeReg:
			hdr.Size = int64(len(e.body))
		case tar.TypeChar, tar.TypeBlock:
			hdr.Devmajor, hdr.Devminor = 1, 3
		case tar.TypeXGlobalHeader:
			hdr.PAXRecords = map[string]string{"comment": "release build"}
			hdr.Mode = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatalf("WriteHeader(%q): %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				tb.Fatalf("Write(%q): %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func buildTarGz(tb testing.TB, entries []tarEntry) []byte {
	tb.Helper()
	return gzipBytes(tb, buildTar(tb, entries))
}

// sandbox lays out base/parent/{outside/keep.txt, sentinel.txt} and returns
// parent and the (not yet existing) release dir parent/release. Escapes by
// one or two levels land in parent or base, both of which are checked by
// assertOutsideUntouched.
func sandbox(t *testing.T) (base, dir string) {
	t.Helper()
	base = t.TempDir()
	parent := filepath.Join(base, "parent")
	mustMkdir(t, parent)
	mustMkdir(t, filepath.Join(parent, "outside"))
	mustWrite(t, filepath.Join(parent, "outside", "keep.txt"), "keep")
	mustWrite(t, filepath.Join(parent, "sentinel.txt"), "sentinel")
	dir = filepath.Join(parent, "release")
	t.Cleanup(func() { makeRemovable(dir) })
	return base, dir
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t testing.TB, p string) []string {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func assertOutsideUntouched(t *testing.T, base string) {
	t.Helper()
	parent := filepath.Join(base, "parent")
	if got := dirNames(t, base); !slices.Equal(got, []string{"parent"}) {
		t.Errorf("base dir contains %v, want [parent]", got)
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"outside", "release", "sentinel.txt"}) {
		t.Errorf("parent dir contains %v, want [outside release sentinel.txt]", got)
	}
	if got := dirNames(t, filepath.Join(parent, "outside")); !slices.Equal(got, []string{"keep.txt"}) {
		t.Errorf("outside dir contains %v, want [keep.txt]", got)
	}
	for p, want := range map[string]string{
		filepath.Join(parent, "outside", "keep.txt"): "keep",
		filepath.Join(parent, "sentinel.txt"):        "sentinel",
	} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: not a regular file any more (%v)", p, err)
			continue
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
}

// makeRemovable gives every directory below p owner rwx so that cleanup
// works for non-root test runs even if an archive set restrictive modes.
func makeRemovable(p string) {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return
	}
	_ = os.Chmod(p, 0o700)
	ents, _ := os.ReadDir(p)
	for _, e := range ents {
		makeRemovable(filepath.Join(p, e.Name()))
	}
}

func TestUnpackValidArchive(t *testing.T) {
	base, dir := sandbox(t)
	archive := buildTarGz(t, []tarEntry{
		{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
		dirEntry("./", 0o755),
		dirEntry("./bin/", 0o755),
		file("./bin/run.sh", 0o755, "#!/bin/sh\necho hello\n"),
		dirEntry("./lib/a/b/", 0o750),
		file("./lib/a/b/data.txt", 0o640, "payload"),
		symlink("./bin/current", "../lib/a/b/data.txt"),
		symlink("./bin/self", "."),
		symlink("./lib/a/b/up", "../../.."),
		symlink("./dangling", "does/not/exist"),
		dirEntry("lib/", 0o711), // explicit entry after implicit creation
		file("implicit/deep/file.txt", 0o644, "deep"),
		file("empty", 0o600, ""),
		file("setuid-tool", 0o4755, "x"),
		dirEntry("shared/", 0o3775), // setgid + sticky
		dirEntry("shared/", 0o2770), // duplicate directory entry is fine
	})
	if err := Unpack(bytes.NewReader(archive), dir, 0); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	assertOutsideUntouched(t, base)

	wantFiles := map[string]struct {
		body string
		perm fs.FileMode
	}{
		"bin/run.sh":             {"#!/bin/sh\necho hello\n", 0o755},
		"lib/a/b/data.txt":       {"payload", 0o640},
		"implicit/deep/file.txt": {"deep", 0o644},
		"empty":                  {"", 0o600},
		"setuid-tool":            {"x", 0o755},
	}
	for name, want := range wantFiles {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode() != want.perm {
			t.Errorf("%s: mode %v, want regular %v (special bits stripped)", name, fi.Mode(), want.perm)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != want.body {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want.body)
		}
	}
	wantDirs := map[string]fs.FileMode{
		".":             0o755,
		"bin":           0o755,
		"lib":           0o711,
		"lib/a":         0o755,
		"lib/a/b":       0o750,
		"implicit":      0o755,
		"implicit/deep": 0o755,
		"shared":        0o770,
	}
	for name, perm := range wantDirs {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode() != fs.ModeDir|perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), fs.ModeDir|perm)
		}
	}
	wantLinks := map[string]string{
		"bin/current": "../lib/a/b/data.txt",
		"bin/self":    ".",
		"lib/a/b/up":  "../../..",
		"dangling":    "does/not/exist",
	}
	for name, target := range wantLinks {
		got, err := os.Readlink(filepath.Join(dir, name))
		if err != nil || got != target {
			t.Errorf("Readlink(%s) = %q, %v; want %q", name, got, err, target)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin", "current")); err != nil || string(b) != "payload" {
		t.Errorf("reading through bin/current = %q, %v", b, err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"bin", "dangling", "empty", "implicit", "lib", "setuid-tool", "shared"}) {
		t.Errorf("release dir contains %v", got)
	}
}

func TestUnpackRefusesUnsafeEntries(t *testing.T) {
	big := strings.Repeat("x", 1500)
	tests := []struct {
		name     string
		entries  []tarEntry
		maxBytes int64
		wantName string // UnsafeEntryError.Name
	}{
		{"dotdot", []tarEntry{file("../evil", 0o644, "x")}, 0, "../evil"},
		{"dotdot inside", []tarEntry{file("a/../../evil", 0o644, "x")}, 0, "a/../../evil"},
		{"dotdot harmless but refused", []tarEntry{file("a/../b", 0o644, "x")}, 0, "a/../b"},
		{"dotdot dir", []tarEntry{dirEntry("../evil/", 0o755)}, 0, "../evil/"},
		{"absolute", []tarEntry{file("/etc/evil", 0o644, "x")}, 0, "/etc/evil"},
		{"absolute dir", []tarEntry{dirEntry("/tmp/evil/", 0o755)}, 0, "/tmp/evil/"},
		{"symlink to /etc", []tarEntry{symlink("etc", "/etc")}, 0, "etc"},
		{"symlink to parent of parent", []tarEntry{symlink("link", "../..")}, 0, "link"},
		{"symlink to parent then write through it", []tarEntry{
			symlink("link", ".."),
			file("link/evil", 0o644, "x"),
		}, 0, "link"},
		{"symlink to outside sibling then write through it", []tarEntry{
			symlink("out", "../outside"),
			file("out/keep.txt", 0o644, "overwritten"),
		}, 0, "out"},
		{"nested symlink escaping", []tarEntry{symlink("a/b/link", "../../../outside")}, 0, "a/b/link"},
		{"internal symlink then file through it", []tarEntry{
			symlink("sub/link", ".."),
			file("sub/link/evil", 0o644, "x"),
		}, 0, "sub/link/evil"},
		{"self symlink then dir through it", []tarEntry{
			symlink("link", "."),
			dirEntry("link/d/", 0o755),
		}, 0, "link/d/"},
		{"symlink then symlink through it", []tarEntry{
			symlink("link", "."),
			symlink("link/l2", "x"),
		}, 0, "link/l2"},
		{"symlink chain escape", []tarEntry{
			symlink("sub/up", ".."),
			symlink("x", "sub/up/.."),
			file("x/evil", 0o644, "x"),
		}, 0, "x"},
		{"nested symlink chain escape", []tarEntry{
			symlink("d/sub/up", "../.."), // resolves to the release dir: allowed
			symlink("d/x", "sub/up/.."),  // lexically "d/sub", physically the parent of dir
			file("d/x/evil", 0o644, "x"),
		}, 0, "d/x"},
		{"symlink with dotdot after name", []tarEntry{symlink("a/x", "b/../c")}, 0, "a/x"},
		{"empty symlink target", []tarEntry{symlink("x", "")}, 0, "x"},
		{"file over symlink", []tarEntry{
			symlink("link", "target"),
			file("link", 0o644, "x"),
		}, 0, "link"},
		{"dir over symlink", []tarEntry{
			symlink("link", "."),
			dirEntry("link/", 0o755),
		}, 0, "link/"},
		{"symlink over file", []tarEntry{
			file("f", 0o644, "x"),
			symlink("f", "."),
		}, 0, "f"},
		{"file over dir", []tarEntry{
			dirEntry("d/", 0o755),
			file("d", 0o644, "x"),
		}, 0, "d"},
		{"file under file", []tarEntry{
			file("f", 0o644, "x"),
			file("f/g", 0o644, "x"),
		}, 0, "f/g"},
		{"file replacing release dir", []tarEntry{file(".", 0o644, "x")}, 0, "."},
		{"symlink replacing release dir", []tarEntry{symlink("./", "..")}, 0, "./"},
		{"hard link to /etc/passwd", []tarEntry{{name: "passwd", typ: tar.TypeLink, link: "/etc/passwd"}}, 0, "passwd"},
		{"hard link to internal file", []tarEntry{
			file("a", 0o644, "x"),
			{name: "b", typ: tar.TypeLink, link: "a"},
		}, 0, "b"},
		{"char device", []tarEntry{{name: "null", typ: tar.TypeChar, mode: 0o666}}, 0, "null"},
		{"block device", []tarEntry{{name: "sda", typ: tar.TypeBlock, mode: 0o660}}, 0, "sda"},
		{"fifo", []tarEntry{{name: "pipe", typ: tar.TypeFifo, mode: 0o644}}, 0, "pipe"},
		{"duplicate file", []tarEntry{
			file("bin/tool", 0o755, "v1"),
			file("bin/tool", 0o755, "v2"),
		}, 0, "bin/tool"},
		{"duplicate file via dot prefix", []tarEntry{
			file("tool", 0o755, "v1"),
			file("./tool", 0o755, "v2"),
		}, 0, "./tool"},
		{"single file over maxBytes", []tarEntry{file("big", 0o644, big)}, 1000, "big"},
		{"total over maxBytes", []tarEntry{
			file("a", 0o644, big[:600]),
			file("b", 0o644, big[:600]),
		}, 1000, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, dir := sandbox(t)
			err := Unpack(bytes.NewReader(buildTarGz(t, tt.entries)), dir, tt.maxBytes)
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) {
				t.Fatalf("Unpack error = %v (%T), want *UnsafeEntryError", err, err)
			}
			if ue.Name != tt.wantName {
				t.Errorf("UnsafeEntryError.Name = %q, want %q (%v)", ue.Name, tt.wantName, err)
			}
			if ue.Reason == "" {
				t.Errorf("UnsafeEntryError has no reason")
			}
			assertOutsideUntouched(t, base)
		})
	}
}

func TestUnpackSizeLimitExact(t *testing.T) {
	base, dir := sandbox(t)
	archive := buildTarGz(t, []tarEntry{
		file("a", 0o644, strings.Repeat("a", 600)),
		file("b", 0o644, strings.Repeat("b", 400)),
	})
	if err := Unpack(bytes.NewReader(archive), dir, 1000); err != nil {
		t.Fatalf("Unpack at exactly maxBytes: %v", err)
	}
	assertOutsideUntouched(t, base)
}

func TestUnpackEntryLimit(t *testing.T) {
	if unpackMaxEntries != 100000 {
		t.Errorf("unpackMaxEntries = %d, want 100000", unpackMaxEntries)
	}
	base, dir := sandbox(t)
	archive := buildTarGz(t, []tarEntry{
		dirEntry("a/", 0o755), dirEntry("b/", 0o755), dirEntry("c/", 0o755), dirEntry("d/", 0o755),
	})
	err := unpack(bytes.NewReader(archive), dir, unpackLimits{maxBytes: 1 << 20, maxEntries: 3, streamSlack: 1 << 20})
	var ue *UnsafeEntryError
	if !errors.As(err, &ue) || ue.Name != "d/" {
		t.Fatalf("unpack error = %v, want *UnsafeEntryError for d/", err)
	}
	assertOutsideUntouched(t, base)
}

func TestUnpackStreamLimit(t *testing.T) {
	// Data that is never written to disk (a large pax global header, zeros
	// after the end-of-archive marker) still costs CPU to decompress, so the
	// decompressed stream itself is capped.
	valid := buildTar(t, []tarEntry{file("f", 0o644, "x")})
	var pax bytes.Buffer
	tw := tar.NewWriter(&pax)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeXGlobalHeader,
		Name:       "pax_global_header",
		PAXRecords: map[string]string{"comment": strings.Repeat("c", 64<<10)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{"trailing zeros", append(slices.Clone(valid), make([]byte, 64<<10)...)},
		{"large global header", append(pax.Bytes(), valid...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, dir := sandbox(t)
			err := unpack(bytes.NewReader(gzipBytes(t, tt.stream)), dir, unpackLimits{maxBytes: 1024, maxEntries: 10, streamSlack: 4096})
			if !errors.Is(err, errStreamTooLarge) {
				t.Fatalf("unpack error = %v, want errStreamTooLarge", err)
			}
			if !strings.HasPrefix(err.Error(), "unpacking archive: ") {
				t.Errorf("error %q lacks context", err)
			}
			assertOutsideUntouched(t, base)

			// The same stream is fine with a generous limit.
			base, dir = sandbox(t)
			err = unpack(bytes.NewReader(gzipBytes(t, tt.stream)), dir, unpackLimits{maxBytes: 1024, maxEntries: 10, streamSlack: 1 << 20})
			if err != nil {
				t.Fatalf("unpack with generous stream limit: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "x" {
				t.Errorf("f = %q, %v", b, err)
			}
			assertOutsideUntouched(t, base)
		})
	}
}

func TestUnpackCorruptArchive(t *testing.T) {
	valid := buildTarGz(t, []tarEntry{
		dirEntry("bin/", 0o755),
		file("bin/run.sh", 0o755, strings.Repeat("echo hello\n", 200)),
	})
	badCRC := slices.Clone(valid)
	badCRC[len(badCRC)-8] ^= 0xff
	badLen := slices.Clone(valid)
	badLen[len(badLen)-1] ^= 0xff
	tests := []struct {
		name string
		data []byte
	}{
		{"empty input", nil},
		{"not gzip", []byte("this is definitely not a gzip stream")},
		{"gzip header only", valid[:10]},
		{"truncated gzip", valid[:len(valid)/2]},
		{"missing trailer", valid[:len(valid)-8]},
		{"bad crc", badCRC},
		{"bad length", badLen},
		{"gzip of garbage", gzipBytes(t, bytes.Repeat([]byte("garbage!"), 100))},
		{"truncated tar", gzipBytes(t, buildTar(t, []tarEntry{file("f", 0o644, strings.Repeat("x", 5000))})[:1024])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, dir := sandbox(t)
			err := Unpack(bytes.NewReader(tt.data), dir, 0)
			if err == nil {
				t.Fatal("Unpack succeeded on a corrupt archive")
			}
			var ue *UnsafeEntryError
			if errors.As(err, &ue) {
				t.Errorf("corrupt archive reported as unsafe entry: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "unpacking archive: ") {
				t.Errorf("error %q lacks context", err)
			}
			assertOutsideUntouched(t, base)
		})
	}
}

func TestUnpackDirMustNotExist(t *testing.T) {
	base, dir := sandbox(t)
	mustMkdir(t, dir)
	archive := buildTarGz(t, []tarEntry{file("f", 0o644, "x")})
	if err := Unpack(bytes.NewReader(archive), dir, 0); err == nil {
		t.Fatal("Unpack into an existing directory succeeded")
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("existing dir was written to: %v", got)
	}
	assertOutsideUntouched(t, base)

	if err := Unpack(bytes.NewReader(archive), filepath.Join(base, "missing", "release"), 0); err == nil {
		t.Fatal("Unpack with a missing parent succeeded")
	}
}

func TestUnpackUnsafeEntryErrorMessage(t *testing.T) {
	err := error(&UnsafeEntryError{Name: "../x", Reason: "path escapes the release directory"})
	want := `unsafe archive entry "../x": path escapes the release directory`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	_, dir := sandbox(t)
	err = Unpack(bytes.NewReader(buildTarGz(t, []tarEntry{file("../x", 0o644, "x")})), dir, 0)
	if err == nil || err.Error() != want {
		t.Errorf("Unpack(../x) error = %v, want %q", err, want)
	}
}

func FuzzUnpack(f *testing.F) {
	seeds := [][]tarEntry{
		{dirEntry("./", 0o755), file("./bin/run.sh", 0o755, "#!/bin/sh\n"), symlink("bin/cur", "run.sh")},
		{file("../evil", 0o644, "x")},
		{symlink("link", ".."), file("link/evil", 0o644, "x")},
		{symlink("sub/up", ".."), symlink("x", "sub/up/.."), file("x/evil", 0o644, "x")},
		{file("a", 0o4755, "x"), {name: "b", typ: tar.TypeLink, link: "a"}},
		{{name: "pipe", typ: tar.TypeFifo}, dirEntry("d/", 0o000), file("d/f", 0o644, "x")},
	}
	for _, s := range seeds {
		raw := buildTar(f, s)
		f.Add(raw, true)
		f.Add(gzipBytes(f, raw), false)
	}
	f.Add([]byte("not gzip"), false)

	f.Fuzz(func(t *testing.T, data []byte, rawTar bool) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "release")
		t.Cleanup(func() { makeRemovable(dir) })
		in := data
		if rawTar {
			in = gzipBytes(t, data)
		}
		err := Unpack(bytes.NewReader(in), dir, 1<<20)
		makeRemovable(dir)

		if got := dirNames(t, parent); len(got) > 1 || (len(got) == 1 && got[0] != "release") {
			t.Fatalf("parent contains %v after Unpack (err=%v)", got, err)
		}
		if _, statErr := os.Lstat(dir); statErr != nil {
			return // only possible if creating dir itself failed
		}
		realDir, rerr := filepath.EvalSymlinks(dir)
		if rerr != nil {
			t.Fatal(rerr)
		}
		walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := fi.Mode()
			if mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s has special mode bits %v", p, mode)
			}
			switch {
			case mode.IsRegular(), mode.IsDir():
			case mode&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				if filepath.IsAbs(target) {
					t.Errorf("%s -> %s: absolute target", p, target)
				}
				lexical := filepath.Join(filepath.Dir(p), target)
				if lexical != dir && !strings.HasPrefix(lexical, dir+string(filepath.Separator)) {
					t.Errorf("%s -> %s: resolves lexically outside dir", p, target)
				}
				if resolved, err := filepath.EvalSymlinks(p); err == nil &&
					resolved != realDir && !strings.HasPrefix(resolved, realDir+string(filepath.Separator)) {
					t.Errorf("%s -> %s: resolves to %s outside dir", p, target, resolved)
				}
			default:
				t.Errorf("%s: unexpected file type %v", p, mode)
			}
			return nil
		})
		if walkErr != nil {
			t.Fatal(walkErr)
		}
	})
}
