package oci

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	good := map[string]Ref{
		"oci://127.0.0.1:5000/sentinel/stable": {Host: "127.0.0.1:5000", Repo: "sentinel/stable"},
		"oci://registry.example.com/stable/":   {Host: "registry.example.com", Repo: "stable"},
		"oci://[::1]:5000/a-b/c_d.e":           {Host: "[::1]:5000", Repo: "a-b/c_d.e"},
	}
	for raw, want := range good {
		got, err := ParseRef(raw)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for _, raw := range []string{
		"oci://127.0.0.1:5000",            // no repository
		"oci://127.0.0.1:5000/Upper",      // not a repository name
		"oci://u:p@127.0.0.1/repo",        // credentials belong in registry_auth
		"oci://127.0.0.1:/repo",           // empty port
		"oci://127.0.0.1:99999/x",         // no such port
		"oci://127.0.0.1:0/x",             // nor this
		"oci://127.0.0.1:http/x",          // a port is a number
		"https://127.0.0.1/repo",          // not oci
		"oci:///repo",                     // no host
		"oci://127.0.0.1/repo?tag=latest", // no query
		"oci://127.0.0.1/repo/../etc",     // not a repository name
	} {
		_, err := ParseRef(raw)
		var re *RefError
		if !errors.As(err, &re) {
			t.Errorf("ParseRef(%q): %v, want a *RefError", raw, err)
		}
	}
}

func TestParseManifestRefusesOtherArtifacts(t *testing.T) {
	_, _, err := parseManifest([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example","layers":[]}`))
	if err == nil {
		t.Fatal("a manifest of another artifact type was read as a channel")
	}
	m, _, err := parseManifest([]byte(`{"schemaVersion":2,"artifactType":"` + ArtifactType + `","layers":[
		{"mediaType":"x","digest":"sha256:` + hex64 + `","size":1,"annotations":{"org.opencontainers.image.title":"metadata/timestamp.json"}},
		{"mediaType":"x","digest":"sha256:` + hex64 + `","size":1,"annotations":{"org.opencontainers.image.title":"../escape"}},
		{"mediaType":"x","digest":"md5:abc","size":1,"annotations":{"org.opencontainers.image.title":"metadata/1.root.json"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m["metadata/timestamp.json"] != "sha256:"+hex64 {
		t.Errorf("layers read: %v; want only the timestamp (a path with .. and a non-sha256 digest are left out)", m)
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// A registry settings file that cannot be read names the flag and the
// cluster file's field it came from.
func TestSettingsFilesNameTheirFlag(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{CAFile: dir + "/missing-ca.pem"}, "(--registry-ca, or registry_ca in the cluster file)"},
		{Settings{AuthFile: dir + "/missing-auth.json"}, "(--registry-auth, or registry_auth in the cluster file)"},
	} {
		_, err := tc.s.ForHost(t.Context(), "127.0.0.1:9")
		var se *SettingsError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
			t.Errorf("%+v: %v, want a settings error naming %q and the file", tc.s, err, tc.want)
		}
	}
}
