package cache

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// A partial file changed on disk between an interrupted fetch and its
// resume is never promoted under the digest: the resume hashes the prefix
// again from disk, finds it changed, drops it and fetches from zero, and
// what is stored hashes to its name. On the commit where the issue was
// filed the saved hash state was trusted and the changed bytes were
// promoted (and "fetched and verified" printed).
func TestResumeOfAChangedPartialFileIsNotPromoted(t *testing.T) {
	data := testData(4*mib, 31)
	digest := sha256Hex(data)
	size := int64(len(data))
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"p1"`) })
	s := interrupted(t, t.TempDir(), o.URL, data)
	st := readState(t, s, digest)

	part := filepath.Join(s.Dir, "partial", digest+".part")
	f, err := os.OpenFile(part, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed on disk"), st.Offset/2); err != nil { // same size, other bytes
		t.Fatal(err)
	}
	f.Close()

	res, err := s.FetchStats(context.Background(), o.URL, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	verifyStored(t, s, digest)
	if !res.PrefixChanged || res.ResumedFrom != 0 || res.RestartsFromZero != 1 || res.BytesReceived != size || res.BytesReadFromPartial != st.Offset {
		t.Errorf("%+v after the prefix of %d bytes changed on disk", res, st.Offset)
	}
	if last := o.requests()[len(o.requests())-1]; last.Start > 0 {
		t.Errorf("the refetch asked for a range from %d, want the whole file", last.Start)
	}
}

// The daemon's pull-through path goes through the same transfer, and marks
// verified only the file that transfer hashed: a partial file changed on
// disk since an interrupted pull is never served under the digest.
func TestPullThroughOfAChangedPartialFileServesTheRealBytes(t *testing.T) {
	data := daemonRand(4<<20, 43)
	up := daemonUpstream(t, t.TempDir(), map[string][]byte{"a": data})
	ch := t.TempDir()
	d := daemonDigest(data)
	daemonWriteFile(t, filepath.Join(ch, "m.json"), daemonManifest(testArtifact{URL: "a", SHA256: d, Size: int64(len(data))}))
	st := interrupted(t, t.TempDir(), up.URL+"/a", data)
	part := filepath.Join(st.Dir, "partial", d+".part")
	f, err := os.OpenFile(part, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed on disk"), 0)
	f.Close()

	srv := daemonStart(t, ServerConfig{Store: &Store{Dir: st.Dir}, ChannelDir: ch, Upstream: up.URL})
	code, body := srv.get(t, "/artifacts/sha256/"+d)
	if code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("HTTP %d, %d bytes, the artifact's own: %v", code, len(body), bytes.Equal(body, data))
	}
	verifyStored(t, &Store{Dir: st.Dir}, d)
}
