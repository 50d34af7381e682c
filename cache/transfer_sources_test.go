package cache

import (
	"context"
	"errors"
	"os"
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

// TestTransferForcedSourcesRefused: go-getter's forced sources (git::,
// hg::, s3::, ...) were dropped with go-getter; each is refused before any
// attempt, by a typed error that says so and what to do instead.
func TestTransferForcedSourcesRefused(t *testing.T) {
	digest := sha256Hex([]byte("x"))
	for _, tc := range []struct{ url, kind string }{
		{"git::https://example.test/repo.git/artifact.tgz?ref=v1", "git::"},
		{"git::file:///srv/repo/artifact.tgz", "git::"},
		{"hg::https://example.test/repo/artifact.tgz", "hg::"},
		{"s3::https://bucket.s3.amazonaws.com/x", "s3::"},
		{"ftp://example.test/x", "ftp://"},
	} {
		s := testStore(t.TempDir())
		st, err := s.FetchStats(context.Background(), tc.url, digest, 1)
		var us *UnsupportedSourceError
		if !errors.As(err, &us) || us.Kind != tc.kind || us.URL != tc.url {
			t.Errorf("%s: got %v, want an UnsupportedSourceError for %s", tc.url, err, tc.kind)
			continue
		}
		if st.Attempts != 0 {
			t.Errorf("%s: %d attempts, want none", tc.url, st.Attempts)
		}
		msg := err.Error()
		for _, want := range []string{tc.url, "not supported", "https"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q does not say %q", tc.url, msg, want)
			}
		}
		if (tc.kind == "git::" || tc.kind == "hg::") && !strings.Contains(msg, "go-getter") {
			t.Errorf("%s: %q does not say go-getter was removed", tc.url, msg)
		}
		assertNothingStored(t, s)
	}
}
