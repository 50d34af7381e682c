package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreFetch: the API steps/agent.go uses.
func TestStoreFetch(t *testing.T) {
	data := []byte("a small artifact\n")
	digest := sha256Hex(data)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"s"`) })
	s := &Store{Dir: t.TempDir()} // all defaults
	if s.Has(digest) {
		t.Fatal("Has before Fetch")
	}
	got, err := s.Fetch(context.Background(), o.URL, digest, int64(len(data)))
	if err != nil || !got {
		t.Fatalf("Fetch = %v, %v", got, err)
	}
	if !s.Has(digest) || s.Path(digest) != filepath.Join(s.Dir, "sha256", digest) {
		t.Errorf("Has %v, Path %s", s.Has(digest), s.Path(digest))
	}
	if b, _ := os.ReadFile(s.Path(digest)); !bytes.Equal(b, data) {
		t.Error("stored bytes differ")
	}
	got, err = s.Fetch(context.Background(), o.URL, digest, int64(len(data)))
	if err != nil || got {
		t.Errorf("second Fetch = %v, %v: want nothing downloaded", got, err)
	}
	if n := len(o.requests()); n != 1 {
		t.Errorf("%d requests", n)
	}

	// The empty artifact needs no request at all.
	empty := sha256Hex(nil)
	if got, err := s.Fetch(context.Background(), o.URL+"?empty", empty, 0); err != nil || !got || !s.Has(empty) {
		t.Errorf("empty artifact: %v, %v", got, err)
	}

	// A digest mismatch: DigestMismatchError (after one re-fetch), nothing stored.
	s2 := testStore(t.TempDir())
	_, err = s2.Fetch(context.Background(), o.URL, sha256Hex([]byte("other")), int64(len(data)))
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.Got != digest || dm.URL != o.URL {
		t.Errorf("got %v", err)
	}
	assertNothingStored(t, s2)
	if entries, _ := os.ReadDir(filepath.Join(s2.Dir, "partial")); len(entries) != 0 {
		t.Errorf("partial/ holds %d entries after a digest mismatch", len(entries))
	}
}

// interrupted runs a fetch of data from url that is cancelled once some
// bytes are written, and returns the store it left behind.
func interrupted(t *testing.T, dir, url string, data []byte) *Store {
	t.Helper()
	s := testStore(dir)
	s.CheckpointBytes = 1 << 30 // only the checkpoint taken on cancel
	s.BufferSize = 64 << 10
	ctx, cancel := context.WithCancel(context.Background())
	s.Progress = func(p TransferProgress) {
		if p.Done > 0 && !p.Final {
			cancel()
		}
	}
	st, err := s.FetchStats(ctx, url, sha256Hex(data), int64(len(data)))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), url) {
		t.Fatalf("cancelled fetch: %v, want context.Canceled naming the URL", err)
	}
	if st.Downloaded {
		t.Fatal("cancelled fetch says it downloaded")
	}
	s.Progress = nil
	return s
}

func readState(t *testing.T, s *Store, digest string) stateFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "partial", digest+".state"))
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	var st stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("state file %q: %v", b, err)
	}
	return st
}

// TestStoreCancelCheckpointsAndResumes: cancellation returns ctx's error
// after a checkpoint whose state describes exactly the .part, with the
// hash state of its bytes; the next Fetch resumes there, re-reading the
// prefix from disk once to check it and receiving none of it again.
func TestStoreCancelCheckpointsAndResumes(t *testing.T) {
	data := testData(4*mib, 21)
	digest := sha256Hex(data)
	size := int64(len(data))
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"c1"`) })
	s := interrupted(t, t.TempDir(), o.URL, data)

	st := readState(t, s, digest)
	part, err := os.Stat(filepath.Join(s.Dir, "partial", digest+".part"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || st.URL != o.URL || st.Digest != digest || st.Size != size || st.Validator != `"c1"` ||
		st.Offset <= 0 || st.Offset >= size || st.Offset != part.Size() {
		t.Errorf("state %+v, .part %d bytes", st, part.Size())
	}
	h := sha256.New()
	h.Write(data[:st.Offset])
	want, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	if st.HashState != base64.StdEncoding.EncodeToString(want) {
		t.Error("the state's hash state is not that of the .part's bytes")
	}

	res, err := s.FetchStats(context.Background(), o.URL, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	verifyStored(t, s, digest)
	if res.ResumedFrom != st.Offset || res.BytesReceived != size-st.Offset || res.BytesReadFromPartial != st.Offset || res.RestartsFromZero != 0 || res.PrefixChanged {
		t.Errorf("%+v after a checkpoint at %d", res, st.Offset)
	}
	if last := o.requests()[len(o.requests())-1]; last.Start != st.Offset || last.IfRange != `"c1"` {
		t.Errorf("resume request %+v", last)
	}
}

// TestStoreUnusableCheckpointRestarts: a checkpoint from another URL, or
// one that does not match the .part, is dropped: the fetch starts from
// zero and still verifies.
func TestStoreUnusableCheckpointRestarts(t *testing.T) {
	data := testData(2*mib, 22)
	digest := sha256Hex(data)
	size := int64(len(data))
	handler := func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"u"`) }
	a := newOrigin(t, handler)

	cases := []struct {
		name   string
		url    string // fetch from here afterwards
		damage func(t *testing.T, s *Store)
	}{
		{name: "another URL (a cache node instead of the upstream)", url: newOrigin(t, handler).URL},
		{name: "same URL, .part shorter than the offset", url: a.URL, damage: func(t *testing.T, s *Store) {
			if err := os.Truncate(filepath.Join(s.Dir, "partial", digest+".part"), 10); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "same URL, garbage state", url: a.URL, damage: func(t *testing.T, s *Store) {
			if err := os.WriteFile(filepath.Join(s.Dir, "partial", digest+".state"), []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "same URL, hash state of another length", url: a.URL, damage: func(t *testing.T, s *Store) {
			st := readState(t, s, digest)
			st.Offset--
			b, _ := json.Marshal(st)
			if err := os.WriteFile(filepath.Join(s.Dir, "partial", digest+".state"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := interrupted(t, t.TempDir(), a.URL, data)
			if tc.damage != nil {
				tc.damage(t, s)
			}
			st, err := s.FetchStats(context.Background(), tc.url, digest, size)
			if err != nil {
				t.Fatal(err)
			}
			verifyStored(t, s, digest)
			if st.ResumedFrom != 0 || st.RestartsFromZero != 1 || st.BytesReceived != size {
				t.Errorf("%+v: want a restart from zero", st)
			}
		})
	}
}

// TestStoreGoldenState: a state file in the version-1 format (as written
// by this code when testdata/transfer/state-v1.json was made) still
// resumes: the format, including crypto/sha256's marshalled state, is
// stable across releases. SENTINEL_UPDATE_GOLDEN=1 rewrites it.
func TestStoreGoldenState(t *testing.T) {
	data := testData(3*mib, 77)
	digest := sha256Hex(data)
	size := int64(len(data))
	const offset = mib + 12345
	const urlPlaceholder = "http://origin.invalid/artifact.tgz"
	golden := filepath.Join("testdata", "transfer", "state-v1.json")

	if os.Getenv("SENTINEL_UPDATE_GOLDEN") == "1" {
		h := sha256.New()
		h.Write(data[:offset])
		hs, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
		b, _ := json.MarshalIndent(stateFile{Version: 1, URL: urlPlaceholder, Digest: digest, Size: size,
			Offset: offset, HashState: base64.StdEncoding.EncodeToString(hs), Validator: `"golden"`}, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"golden"`) })
	s := testStore(t.TempDir())
	partial := filepath.Join(s.Dir, "partial")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(urlPlaceholder), []byte(o.URL))
	if err := os.WriteFile(filepath.Join(partial, digest+".state"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// More than the offset, as after a crash between checkpoints.
	if err := os.WriteFile(filepath.Join(partial, digest+".part"), data[:offset+4096], 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.FetchStats(context.Background(), o.URL, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	verifyStored(t, s, digest)
	if st.ResumedFrom != offset || st.BytesReceived != size-offset || st.RestartsFromZero != 0 {
		t.Errorf("%+v: want a resume from the golden offset %d", st, offset)
	}
}
