package cache

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransferFileSource: file:// goes through the same copy, hash,
// verify and promote path, resumes like http, and refuses a file of the
// wrong size without retrying.
func TestTransferFileSource(t *testing.T) {
	data := testData(5*mib+7, 3)
	digest := sha256Hex(data)
	size := int64(len(data))
	src := filepath.Join(t.TempDir(), "core 3.4.2.tgz") // a space: the URL escapes it
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	u := "file://" + strings.ReplaceAll(src, " ", "%20")

	t.Run("fetch", func(t *testing.T) {
		s := testStore(t.TempDir())
		st, err := s.FetchStats(context.Background(), u, digest, size)
		if err != nil {
			t.Fatal(err)
		}
		verifyStored(t, s, digest)
		if !st.Downloaded || st.Attempts != 1 || st.BytesReceived != size {
			t.Errorf("%+v", st)
		}
		if got, err := s.Fetch(context.Background(), u, digest, size); got || err != nil {
			t.Errorf("second fetch: downloaded %v, %v; want nothing to do", got, err)
		}
	})

	t.Run("resume after cancel", func(t *testing.T) {
		s := testStore(t.TempDir())
		s.BufferSize = 64 << 10
		ctx, cancel := context.WithCancel(context.Background())
		s.Progress = func(p TransferProgress) {
			if p.Done > 0 {
				cancel()
			}
		}
		if _, err := s.FetchStats(ctx, u, digest, size); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		s.Progress = nil
		st, err := s.FetchStats(context.Background(), u, digest, size)
		if err != nil {
			t.Fatal(err)
		}
		verifyStored(t, s, digest)
		if st.ResumedFrom <= 0 || st.BytesReceived != size-st.ResumedFrom || st.RestartsFromZero != 0 {
			t.Errorf("%+v: want a resume", st)
		}
	})

	t.Run("replaced file restarts", func(t *testing.T) {
		s := testStore(t.TempDir())
		s.BufferSize = 64 << 10
		ctx, cancel := context.WithCancel(context.Background())
		s.Progress = func(p TransferProgress) {
			if p.Done > 0 {
				cancel()
			}
		}
		if _, err := s.FetchStats(ctx, u, digest, size); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		s.Progress = nil
		// Same bytes, new inode: the validator no longer matches.
		tmp := src + ".new"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, src); err != nil {
			t.Fatal(err)
		}
		st, err := s.FetchStats(context.Background(), u, digest, size)
		if err != nil {
			t.Fatal(err)
		}
		verifyStored(t, s, digest)
		if st.RestartsFromZero != 1 || st.BytesReceived != size {
			t.Errorf("%+v: want one restart from zero", st)
		}
	})

	t.Run("wrong size", func(t *testing.T) {
		s := testStore(t.TempDir())
		for _, want := range []int64{size - 1, size + 1} {
			st, err := s.FetchStats(context.Background(), u, digest, want)
			var sm *SizeMismatchError
			if !errors.As(err, &sm) || sm.Got != size || st.Attempts != 1 {
				t.Errorf("size %d: %v, %+v", want, err, st)
			}
			assertNothingStored(t, s)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		s := testStore(t.TempDir())
		st, err := s.FetchStats(context.Background(), u+".missing", digest, size)
		if !errors.Is(err, os.ErrNotExist) || st.Attempts != 1 || !strings.Contains(err.Error(), u+".missing") {
			t.Errorf("%v, %+v", err, st)
		}
	})
}

// TestTransferGoGetterGit: a git:: source is cloned by go-getter and its
// file streamed through the same engine.
func TestTransferGoGetterGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	repo := t.TempDir()
	data := testData(300<<10, 4)
	digest := sha256Hex(data)
	if err := os.WriteFile(filepath.Join(repo, "artifact.tgz"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "artifact.tgz"},
		{"-c", "user.name=sentinel", "-c", "user.email=sentinel@example.test", "commit", "-q", "-m", "artifact"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	s := testStore(t.TempDir())
	u := "git::file://" + repo + "/artifact.tgz?ref=main"
	st, err := s.FetchStats(context.Background(), u, digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	verifyStored(t, s, digest)
	if !st.Downloaded || st.Attempts != 1 || st.BytesReceived != int64(len(data)) {
		t.Errorf("%+v", st)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "partial", digest+".getter")); err == nil {
		t.Error("go-getter scratch directory left behind")
	}

	// A digest mismatch is caught the same way.
	s2 := testStore(t.TempDir())
	_, err = s2.FetchStats(context.Background(), u, sha256Hex([]byte("other")), int64(len(data)))
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Errorf("got %v, want a digest mismatch", err)
	}
	assertNothingStored(t, s2)

	// A missing file in the repository: one attempt, a clear error.
	st, err = testStore(t.TempDir()).FetchStats(context.Background(), "git::file://"+repo+"/missing.tgz", digest, 1)
	if err == nil || st.Attempts != 1 || !strings.Contains(err.Error(), "go-getter") {
		t.Errorf("%v, %+v", err, st)
	}
}
