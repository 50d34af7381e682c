package steps

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/release"
)

// Unpacking stops at the artifact's signed unpacked size: 8 MiB written of
// a 2 GiB bomb spread over many files.
func TestUnpackStopsAtSignedSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    int
		perFile  int64
		unpacked int64
		want     string
	}{
		{"2048 files of 1 MiB, signed unpacked size", 2048, 1 << 20, 8 << 20, "its signed unpacked size, 8388608 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{Node: "dea-1", Layout: Layout{Root: t.TempDir()}}
			digest, size := cacheArtifact(t, a, func(w io.Writer) { writeZeroBomb(t, w, tc.files, tc.perFile) })
			if size > 3<<20 {
				t.Fatalf("the bomb is %d bytes compressed", size)
			}
			req := Request{Component: "logyard", Version: "3.4.2", Artifact: release.Artifact{UnpackedSize: tc.unpacked}}
			req.Artifact.SHA256, req.Artifact.Size = digest, size
			_, err := a.install(t.Context(), req)
			if err == nil {
				t.Fatal("the bomb was unpacked")
			}
			for _, want := range []string{"node dea-1", "logyard 3.4.2", digest, tc.want, "nothing was installed"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if n := dirBytes(t, a.Layout.ReleasesDir("logyard")); n != 0 {
				t.Errorf("%d bytes left on disk after the refusal", n)
			}
		})
	}
}

// The ratio rule: 100 times the compressed size, at least 1 GiB, at most
// the hard limit; a signed size wins.
func TestUnpackLimit(t *testing.T) {
	for _, tc := range []struct{ compressed, unpacked, want int64 }{
		{2 << 20, 0, 1 << 30},
		{100 << 20, 0, 10000 << 20},
		{1 << 30, 0, maxUnpackedBytes},
		{2 << 20, 5 << 20, 5 << 20},
		{2 << 20, 64 << 30, maxUnpackedBytes},
		{0, 0, 1 << 30},
	} {
		if got, _ := UnpackLimit(tc.compressed, tc.unpacked); got != tc.want {
			t.Errorf("UnpackLimit(%d, %d) = %d, want %d", tc.compressed, tc.unpacked, got, tc.want)
		}
	}
}

// mountTmpfs mounts a tmpfs of the given size at dir until the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// A disk that fills during unpack is the node's problem: the error names
// the node, the step, the place and the space needed, and never blames the
// release. On the commit where the issue was filed it said "the release
// itself is broken; report it to its publisher".
func TestUnpackDiskFullBlamesTheDisk(t *testing.T) {
	a := &Agent{Node: "dea-2", Layout: Layout{Root: t.TempDir()}}
	mountTmpfs(t, a.Layout.ComponentDir("logyard"), "1m")
	body := make([]byte, 3<<20)
	rand.Read(body)
	digest, size := cacheArtifact(t, a, func(w io.Writer) { w.Write(buildTarGz(t, []tarEntry{file("bin/logyard", 0o755, string(body))})) })
	req := Request{Component: "logyard", Version: "3.4.2"}
	req.Artifact.SHA256, req.Artifact.Size = digest, size
	_, err := a.install(t.Context(), req)
	if err == nil {
		t.Fatal("unpacking 3 MiB onto a 1 MiB disk succeeded")
	}
	for _, want := range []string{"node dea-2", "install step", a.Layout.ReleasesDir("logyard"), "is full", "free there", "logyard 3.4.2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "publisher") || strings.Contains(err.Error(), "broken") {
		t.Errorf("a full disk is blamed on the release: %v", err)
	}
	if _, err := os.Stat(a.Layout.ReleaseDir("logyard", "3.4.2")); err == nil {
		t.Error("a release directory was left after the failure")
	}
}
