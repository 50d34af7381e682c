package main

import (
	"encoding/json"
	"os"
	"testing"

)

// editJSON rewrites a channel document through a generic decode, so that a
// test can change one field the way a publisher or an attacker would.
func editJSON(t testing.TB, path string, edit func(doc map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	out, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setArtifact changes one component's artifact entry in a manifest.
func setArtifact(component string, sha256 string, size int64) func(map[string]any) {
	return func(doc map[string]any) {
		for _, c := range doc["components"].([]any) {
			c := c.(map[string]any)
			if c["name"] == component {
				a := c["artifact"].(map[string]any)
				if sha256 != "" {
					a["sha256"] = sha256
				}
				a["size"] = size
			}
		}
	}
}

func flipOneByte(t testing.TB, path string) (undo func()) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), data...)
	data[len(data)/2] ^= 0x01
	os.WriteFile(path, data, 0o644)
	return func() { os.WriteFile(path, orig, 0o644) }
}

func saveFiles(t testing.TB, paths ...string) (restore func()) {
	t.Helper()
	saved := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = data
	}
	return func() {
		for p, data := range saved {
			os.WriteFile(p, data, 0o644)
		}
	}
}

func (l *testLab) nodeDigests() map[string]string {
	out := map[string]string{}
	for _, n := range l.Nodes {
		out[n.Name] = nodeDigest(l.t, n.Root)
	}
	return out
}

func (l *testLab) artifactOf(version, component string) (sha string, size int64) {
	for _, c := range l.manifest(version).Components {
		if c.Name == component {
			return c.Artifact.SHA256, c.Artifact.Size
		}
	}
	l.t.Fatalf("release %s has no %s", version, component)
	return "", 0
}
