package selfupdate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/release"
)

func builds(t *testing.T, versions ...string) *release.SentinelBuilds {
	t.Helper()
	b := &release.SentinelBuilds{}
	for _, v := range versions {
		b.Builds = append(b.Builds, release.SentinelBuild{Version: v, OS: "linux", Arch: "amd64",
			Artifact: release.Artifact{URL: "http://x/" + v, SHA256: strings.Repeat("a", 64), Size: 1}})
	}
	return b
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name, running string
		offered       []string
		explicit      bool
		update        bool
		to, reason    string
	}{
		{"newer numbered", "0.1.0", []string{"0.2.0", "0.1.5"}, false, true, "0.2.0", "newer than 0.1.0"},
		{"same", "0.2.0", []string{"0.2.0"}, false, false, "", "newest build"},
		{"never a downgrade, even asked", "0.3.0", []string{"0.2.0"}, true, false, "", "no downgrade"},
		{"dev build, automatic", "dev", []string{"0.2.0"}, false, false, "", "development build"},
		{"dev build, asked", "dev", []string{"0.2.0"}, true, true, "0.2.0", "as asked"},
		{"git describe build, automatic", "v0.1.0-4-gabc1234", []string{"0.2.0"}, false, false, "", "development build"},
		{"nothing for this platform", "0.1.0", nil, true, false, "", "no sentinel build for linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.running, builds(t, tc.offered...), "linux", "amd64", tc.explicit)
			if d.Update != tc.update || (tc.update && d.Build.Version != tc.to) || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide(%s, %v, explicit %v) = %+v; want update %v to %q, reason with %q", tc.running, tc.offered, tc.explicit, d, tc.update, tc.to, tc.reason)
			}
		})
	}
	if d := Decide("0.1.0", nil, "linux", "amd64", true); d.Update || !strings.Contains(d.Reason, "publishes no sentinel builds") {
		t.Errorf("no builds document: %+v", d)
	}
	if CheckAutomatically("dev") || !CheckAutomatically("0.1.0") {
		t.Errorf("only numbered builds check automatically")
	}
}

// script is a stand-in sentinel: `version --check` prints its version
// and exits with the code the body gives.
func script(version, body string) []byte {
	return []byte("#!/bin/sh\n" + body + "\necho \"sentinel " + version + " (test, linux/amd64)\"\n")
}

// setup makes an "installed" executable (old) in its own directory and a
// stored build (new), and returns the updater and the build.
func setup(t *testing.T, old, new []byte, version string) (*Updater, string, release.SentinelBuild) {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "sentinel")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	if err := os.WriteFile(exe, old, 0o755); err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(dir, "stored")
	os.WriteFile(stored, new, 0o644)
	sum := sha256.Sum256(new)
	b := release.SentinelBuild{Version: version, OS: "linux", Arch: "amd64",
		Artifact: release.Artifact{URL: "x", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(new))}}
	return &Updater{Path: exe, StoreDir: filepath.Join(dir, "store")}, stored, b
}

func content(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func noLeftovers(t *testing.T, u *Updater) {
	t.Helper()
	if _, err := os.Stat(u.newPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind (%v)", u.newPath(), err)
	}
}

func TestReplace(t *testing.T) {
	old, good := script("0.1.0", ""), script("0.2.0", "")
	ctx := context.Background()

	t.Run("replaced, old kept", func(t *testing.T) {
		u, stored, b := setup(t, old, good, "0.2.0")
		if err := u.Replace(ctx, stored, b); err != nil {
			t.Fatal(err)
		}
		if content(t, u.Path) != string(good) || content(t, u.OldPath()) != string(old) {
			t.Fatalf("after Replace: the executable or %s is not what it should be", u.OldPath())
		}
		if fi, _ := os.Stat(u.Path); fi.Mode().Perm()&0o100 == 0 {
			t.Errorf("the new executable is not executable: %v", fi.Mode())
		}
		noLeftovers(t, u)
	})
	t.Run("fails its check before taking the name", func(t *testing.T) {
		u, stored, b := setup(t, old, script("0.2.0", "echo broken >&2; exit 1"), "0.2.0")
		err := u.Replace(ctx, stored, b)
		var ce *CheckError
		if !errors.As(err, &ce) || ce.RolledBack || !strings.Contains(err.Error(), "broken") {
			t.Fatalf("got %v, want a CheckError with the build's output, not rolled back", err)
		}
		if content(t, u.Path) != string(old) {
			t.Fatal("the executable changed")
		}
		noLeftovers(t, u)
	})
	t.Run("fails its check once in place: the old build is put back", func(t *testing.T) {
		// Passes as .sentinel.new, fails under the executable's name.
		bad := script("0.2.0", `case "$0" in *.new) ;; *) echo "cannot start from here" >&2; exit 3;; esac`)
		u, stored, b := setup(t, old, bad, "0.2.0")
		err := u.Replace(ctx, stored, b)
		var ce *CheckError
		if !errors.As(err, &ce) || !ce.RolledBack {
			t.Fatalf("got %v, want a CheckError after a rollback", err)
		}
		if content(t, u.Path) != string(old) {
			t.Fatal("the old build is not back in place")
		}
		if out, err := Check(ctx, u.Path, "0.1.0"); err != nil {
			t.Fatalf("the restored executable does not run: %v %s", err, out)
		}
		noLeftovers(t, u)
	})
	t.Run("says another version than signed", func(t *testing.T) {
		u, stored, b := setup(t, old, script("0.9.9", ""), "0.2.0")
		err := u.Replace(ctx, stored, b)
		var ce *CheckError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "signed it as sentinel 0.2.0") {
			t.Fatalf("got %v", err)
		}
		if content(t, u.Path) != string(old) {
			t.Fatal("the executable changed")
		}
	})
	t.Run("stored bytes damaged since verified", func(t *testing.T) {
		u, stored, b := setup(t, old, good, "0.2.0")
		os.WriteFile(stored, script("0.2.1", ""), 0o644) // same length, other bytes
		err := u.Replace(ctx, stored, b)
		if err == nil || !strings.Contains(err.Error(), "not the signed") {
			t.Fatalf("got %v, want the digest refused", err)
		}
		if content(t, u.Path) != string(old) {
			t.Fatal("the executable changed")
		}
		noLeftovers(t, u)
	})
	t.Run("a directory it cannot write", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		u, stored, b := setup(t, old, good, "0.2.0")
		os.Chmod(filepath.Dir(u.Path), 0o555)
		defer os.Chmod(filepath.Dir(u.Path), 0o755)
		if err := u.Replace(ctx, stored, b); err == nil || !strings.Contains(err.Error(), "--no-self-update") {
			t.Fatalf("got %v, want an error saying what to do", err)
		}
	})
}

func TestFetchVerifies(t *testing.T) {
	good := script("0.2.0", "")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.Write(script("0.6.6", ""))
			return
		}
		w.Write(good)
	}))
	defer srv.Close()
	u, _, b := setup(t, script("0.1.0", ""), good, "0.2.0")
	if _, err := u.Fetch(context.Background(), srv.URL+"/bad", b); err == nil {
		t.Fatal("a build with other bytes than signed was accepted")
	}
	p, err := u.Fetch(context.Background(), srv.URL+"/good", b)
	if err != nil {
		t.Fatal(err)
	}
	if content(t, p) != string(good) {
		t.Fatal("stored bytes differ")
	}
}

func TestEnviron(t *testing.T) {
	env := Environ([]string{"A=1", CrashAtEnv + "=" + CrashRenamed, UpdatedFromEnv + "=0.0.1"}, "0.1.0")
	if strings.Join(env, " ") != "A=1 "+UpdatedFromEnv+"=0.1.0" {
		t.Fatalf("got %v", env)
	}
}
