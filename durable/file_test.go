package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entries lists dir's names (dot files too), so a test sees any temporary
// file left.
func entries(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	return names
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) string // returns the path written
		mode    os.FileMode
	}{
		{"new file", func(t *testing.T, dir string) string { return filepath.Join(dir, "f") }, 0o644},
		{"replaces content", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old content, longer than the new"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0o640},
		{"exact mode whatever the umask", func(t *testing.T, dir string) string { return filepath.Join(dir, "f") }, 0o666},
		{"read-only mode", func(t *testing.T, dir string) string { return filepath.Join(dir, "f") }, 0o444},
		{"creates parent directories", func(t *testing.T, dir string) string { return filepath.Join(dir, "a", "b", "f") }, 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.prepare(t, t.TempDir())
			if err := WriteFile(p, []byte("new"), tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != "new" {
				t.Errorf("content %q, %v", got, err)
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, %v, want %v", fi.Mode().Perm(), err, tt.mode)
			}
			if names := entries(filepath.Dir(p)); len(names) != 1 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

// A failed write leaves the old file, or none, and no temporary file.
func TestWriteFileFails(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) (path, inspect string)
		rootOK  bool // root writes to read-only directories
	}{
		{"target is a directory", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "d")
			if err := os.MkdirAll(filepath.Join(p, "inside"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p, dir
		}, true},
		{"parent is a file", func(t *testing.T, dir string) (string, string) {
			if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "file", "f"), dir
		}, true},
		{"read-only directory", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
			return p, dir
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.rootOK && os.Geteuid() == 0 {
				t.Skip("root writes to read-only directories")
			}
			dir := t.TempDir()
			p, inspect := tt.prepare(t, dir)
			before := entries(inspect)
			var oldContent []byte
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				oldContent, _ = os.ReadFile(p)
			}
			if err := WriteFile(p, []byte("new"), 0o644); err == nil {
				t.Fatal("no error")
			}
			if after := entries(inspect); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("entries %v, before %v: a temporary file was left", after, before)
			}
			if oldContent != nil {
				if got, _ := os.ReadFile(p); string(got) != string(oldContent) {
					t.Errorf("content %q, want the old %q", got, oldContent)
				}
			}
		})
	}
}

func TestWriteFileIn(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := WriteFileIn(root, "a/b/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "a", "b", "f")); err != nil || string(got) != "x" {
		t.Errorf("content %q, %v", got, err)
	}
	if names := entries(filepath.Join(dir, "a", "b")); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../f", "out/f"} {
		if err := WriteFileIn(root, name, []byte("x"), 0o644); err == nil {
			t.Errorf("%s: written outside the root", name)
		}
	}
	if names, _ := os.ReadDir(outside); len(names) != 0 {
		t.Errorf("outside the root: %v", names)
	}
}

func TestRename(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "a", "f"), filepath.Join(dir, "b", "g")
	for _, d := range []string{filepath.Dir(from), filepath.Dir(to)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(from, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rename(from, to); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(from); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", from, err)
	}
	if got, err := os.ReadFile(to); err != nil || string(got) != "x" {
		t.Errorf("content %q, %v", got, err)
	}
	if err := Rename(from, to); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("renaming a missing file: %v", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	existing := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "dst")
		if err := os.WriteFile(p, []byte("old content, longer"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fresh := func(t *testing.T) string { return filepath.Join(t.TempDir(), "dst") }
	tests := []struct {
		name    string
		copy    func(src, dst string, mode os.FileMode) error
		dst     func(t *testing.T) string
		want    string // content of dst afterwards
		wantErr error
	}{
		{"new file", CopyFile, fresh, "content", nil},
		{"never replaces", CopyFile, existing, "old content, longer", fs.ErrExist},
		{"overwrite a new file", CopyFileOverwrite, fresh, "content", nil},
		{"overwrite an existing file", CopyFileOverwrite, existing, "content", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := tt.dst(t)
			err := tt.copy(src, dst, 0o640)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got, _ := os.ReadFile(dst); string(got) != tt.want {
				t.Errorf("content %q, want %q", got, tt.want)
			}
		})
	}
	for _, copy := range []func(src, dst string, mode os.FileMode) error{CopyFile, CopyFileOverwrite} {
		dst := fresh(t)
		if err := copy(filepath.Join(dir, "missing"), dst, 0o644); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing source: %v", err)
		}
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing source: %s was created", dst)
		}
	}
	dst := fresh(t)
	if err := CopyFile(src, dst, 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v", fi.Mode().Perm(), err)
	}
}
