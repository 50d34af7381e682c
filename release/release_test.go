package release

import (
	"errors"
	"strings"
	"testing"
)

func TestVersionCompare(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"3.4.1", "3.4.2", -1},
		{"3.4.10", "3.4.9", 1},
		{"3.4", "3.4.0", 0},
		{"3.4.2", "3.4.2-p1", -1},
		{"3.4.2-p2", "3.4.2-p1", 1},
		{"3.4.2-p10", "3.4.2-p9", 1},
		{"3.4.2-p9", "3.4.2-p10", -1},
		{"3.4.2-p10", "3.4.2-p10", 0},
		{"4.0", "3.99.99", 1},
	}
	for _, c := range cases {
		if got := MustVersion(c.a).Compare(MustVersion(c.b)); got != c.want {
			t.Errorf("%s vs %s = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for _, bad := range []string{"", "3..4", "v3.4", "3.4.x", "1.2.3.4.5", "03.4"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

const goodManifest = `{"version": "3.4.2", "components": [
 {"name": "nats", "version": "3.4.2", "roles": ["primary"],
  "artifact": {"url": "../a/nats.tgz", "sha256": "` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `", "size": 10},
  "hooks": {"health": {"timeout": "5s", "retries": 2, "interval": "1s"}}}]}`

// Malformed or inconsistent metadata is refused with the document and the
// field named.
func TestParseManifestRejects(t *testing.T) {
	if _, err := ParseManifest("m.json", []byte(goodManifest)); err != nil {
		t.Fatalf("good manifest refused: %v", err)
	}
	cases := []struct{ name, old, new, want string }{
		{"bad json", `"components": [`, `"components": [[`, "malformed JSON"},
		{"unknown field", `"version": "3.4.2", "components"`, `"version": "3.4.2", "colour": 1, "components"`, `unknown field "colour"`},
		{"bad version", `"version": "3.4.2", "components"`, `"version": "three", "components"`, "field version"},
		{"bad sha", `"sha256": "0123`, `"sha256": "XYZ3`, "field components[0] (nats).artifact.sha256"},
		{"zero size", `"size": 10`, `"size": 0`, "field components[0] (nats).artifact.size"},
		{"unknown role", `["primary"]`, `["wizard"]`, `unknown role "wizard"`},
		{"no roles", `["primary"]`, `[]`, "field components[0] (nats).roles"},
		{"bad name", `"name": "nats"`, `"name": "../nats"`, "field components[0].name"},
		{"bad duration", `"timeout": "5s"`, `"timeout": "soon"`, "bad duration"},
		{"negative retries", `"retries": 2`, `"retries": -1`, "hooks.health.retries"},
		{"no url", `"url": "../a/nats.tgz"`, `"url": ""`, "artifact.url"},
		{"trailing data", `}}]}`, `}}]} {}`, "trailing data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(goodManifest, c.old, c.new, 1)
			if doc == goodManifest {
				t.Fatalf("test case did not change the document")
			}
			_, err := ParseManifest("releases/3.4.2/manifest.json", []byte(doc))
			var me *MetadataError
			if !errors.As(err, &me) || me.Doc != "releases/3.4.2/manifest.json" {
				t.Fatalf("err = %v, want a MetadataError naming the document", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
		})
	}
	dup := strings.Replace(goodManifest, `}}]}`, `}}, `+goodManifest[strings.Index(goodManifest, `{"name"`):], 1)
	if _, err := ParseManifest("m", []byte(dup)); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("duplicate component: %v", err)
	}
}

const goodIndex = `{"channel": "stable", "releases": [
 {"version": "3.4.1", "manifest": "releases/3.4.1/manifest.json"},
 {"version": "3.4.2", "manifest": "releases/3.4.2/manifest.json"},
 {"version": "3.4.3", "manifest": "releases/3.4.3/manifest.json"},
 {"version": "3.5.0", "manifest": "releases/3.5.0/manifest.json"}],
 "upgrade_paths": [{"from": "3.4.1", "to": "3.4.2"}, {"from": "3.4.2", "to": "3.4.3"},
  {"from": "3.4.2", "to": "3.5.0"}, {"from": "3.4.3", "to": "3.5.0"}]}`

func TestIndexPath(t *testing.T) {
	ix, err := ParseIndex("index.json", []byte(goodIndex))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		from, to string
		want     string
	}{
		{"3.4.1", "3.4.2", "3.4.2"},
		{"3.4.1", "3.4.3", "3.4.2,3.4.3"},
		{"3.4.1", "3.5.0", "3.4.2,3.5.0"}, // shortest chain
		{"3.4.3", "3.5.0", "3.5.0"},
	}
	for _, c := range cases {
		hops, err := ix.Path(c.from, c.to)
		if err != nil || strings.Join(hops, ",") != c.want {
			t.Errorf("Path(%s, %s) = %v, %v; want %s", c.from, c.to, hops, err, c.want)
		}
	}
	var npe *NoPathError
	if _, err := ix.Path("3.4.3", "3.4.2"); !errors.As(err, &npe) {
		t.Errorf("backwards path: %v", err)
	}
	var ure *UnknownReleaseError
	if _, err := ix.Path("3.4.1", "9.9.9"); !errors.As(err, &ure) || !strings.Contains(err.Error(), "it offers 3.4.1, 3.4.2, 3.4.3, 3.5.0") {
		t.Errorf("unknown release: %v", err)
	}
	if ix.Latest() != "3.5.0" {
		t.Errorf("Latest = %s", ix.Latest())
	}
}

func TestParseIndexRejects(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"path to unlisted release", `{"from": "3.4.1", "to": "3.4.2"}`, `{"from": "3.4.0", "to": "3.4.2"}`, `upgrade_paths[0]: release "3.4.0" is not listed`},
		{"backwards path", `{"from": "3.4.1", "to": "3.4.2"}`, `{"from": "3.4.2", "to": "3.4.1"}`, "does not go forward"},
		{"duplicate release", `{"version": "3.4.2", "manifest"`, `{"version": "3.4.1", "manifest"`, "listed twice"},
		{"missing manifest", `"manifest": "releases/3.4.1/manifest.json"`, `"manifest": ""`, "releases[0].manifest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseIndex("index.json", []byte(strings.Replace(goodIndex, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "index.json") {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}
