package cache

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTransferDiskFull fetches a 12 MiB artifact into a store on an 8 MiB
// tmpfs: the error says there is no space and nothing is promoted. Once
// the tmpfs is grown, the next fetch resumes from where the disk filled up
// (the state was written into space reserved for it beforehand, with the
// default 8 MiB checkpoint interval never reached) and verifies.
func TestTransferDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})

	data := testData(12*mib, 12)
	digest := sha256Hex(data)
	size := int64(len(data))
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) { serve(w, r, data, `"full"`) })
	s := testStore(filepath.Join(mnt, "cache"))

	st, err := s.FetchStats(context.Background(), o.URL, digest, size)
	if err == nil {
		t.Fatal("fetched 12 MiB into an 8 MiB tmpfs")
	}
	t.Logf("%v\n%+v", err, st)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), o.URL) {
		t.Errorf("error %q: want ENOSPC, saying so and naming the URL", err)
	}
	if st.Attempts != 1 {
		t.Errorf("%d attempts: a full disk is not retried", st.Attempts)
	}
	assertNothingStored(t, s)
	if _, err := os.Stat(filepath.Join(s.Dir, "partial", digest+".state")); err != nil {
		t.Fatalf("no checkpoint left for a resume: %v", err)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	st, err = s.FetchStats(context.Background(), o.URL, digest, size)
	if err != nil {
		t.Fatalf("fetch after freeing space: %v", err)
	}
	t.Logf("%+v\nrequests %+v", st, o.requests())
	verifyStored(t, s, digest)
	reqs := o.requests()
	if len(reqs) != 2 || reqs[1].Start <= 0 || reqs[1].Start != st.ResumedFrom {
		t.Errorf("requests %+v, resumed from %d: want the second to resume where the first stopped", reqs, st.ResumedFrom)
	}
	if st.BytesReceived != size-st.ResumedFrom || st.RestartsFromZero != 0 {
		t.Errorf("after the resume: received %d of %d bytes from %d, %d restarts", st.BytesReceived, size, st.ResumedFrom, st.RestartsFromZero)
	}
}
