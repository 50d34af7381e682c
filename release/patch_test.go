package release

import (
	"errors"
	"strings"
	"testing"
)

const digestA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func catalogDoc(mutate string) string {
	doc := `{"release": "3.4.2", "patches": [
 {"id": 1, "name": "aok-endpoint-fix", "description": "Correct aok endpoint redirecting to custom uri", "severity": "high",
  "roles": ["primary", "controller"],
  "components": [{"name": "nats", "version": "3.4.2-p1", "restart": true,
    "artifact": {"url": "../a/nats-p1.tgz", "sha256": "` + digestA + `", "size": 10}, "hooks": {}}]}]}`
	if mutate != "" {
		parts := strings.SplitN(mutate, "=>", 2)
		doc = strings.Replace(doc, parts[0], parts[1], 1)
	}
	return doc
}

func TestPatchCatalogValidation(t *testing.T) {
	cases := []struct {
		name, mutate string
		wantField    string // "" : valid
		wantText     string
	}{
		{"valid", "", "", ""},
		{"unknown role", `"roles": ["primary", "controller"]=>"roles": ["primary", "foo"]`, `patches[0] (patch aok-endpoint-fix).roles[1]`, `unknown role "foo"`},
		{"bad digest", `"sha256": "` + digestA + `"=>"sha256": "abc"`, `patches[0] (patch aok-endpoint-fix).components[0] (nats).artifact.sha256`, "64 lowercase hex"},
		{"no size", `"size": 10=>"size": 0`, `components[0] (nats).artifact.size`, "positive"},
		{"no url", `"url": "../a/nats-p1.tgz"=>"url": ""`, `components[0] (nats).artifact.url`, "missing"},
		{"bad severity", `"severity": "high"=>"severity": "urgent"`, `(patch aok-endpoint-fix).severity`, "not one of"},
		{"two lines", `redirecting to custom uri=>redirecting\nto custom uri`, `.description`, "one non-empty line"},
		{"unknown field", `"restart": true=>"restart": true, "reboot": true`, "", `unknown field "reboot"`},
		{"bad name", `"name": "aok-endpoint-fix"=>"name": "Aok Fix"`, `patches[0].name`, "not a patch name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePatchCatalog("patches.json", []byte(catalogDoc(c.mutate)))
			if c.wantField == "" && c.wantText == "" {
				if err != nil {
					t.Fatalf("valid catalog refused: %v", err)
				}
				return
			}
			var me *MetadataError
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want a MetadataError", err)
			}
			for _, want := range []string{c.wantField, c.wantText, "patches.json"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestPatchCatalogCheckAgainstManifest(t *testing.T) {
	m, err := ParseManifest("manifest.json", []byte(goodManifest))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, mutate, want string }{
		{"fits", "", ""},
		{"not a patch level", `"version": "3.4.2-p1"=>"version": "3.4.3"`, `components[0] (nats).version: "3.4.3" is not a patch level of nats 3.4.2`},
		{"suffix not pN", `"version": "3.4.2-p1"=>"version": "3.4.2-hotfix"`, `components[0] (nats).version: "3.4.2-hotfix" is not a patch level of nats 3.4.2`},
		{"p0", `"version": "3.4.2-p1"=>"version": "3.4.2-p0"`, `"3.4.2-p0" is not a patch level`},
		{"p10", `"version": "3.4.2-p1"=>"version": "3.4.2-p10"`, ""},
		{"other component", `"name": "nats"=>"name": "aok"`, "release 3.4.2 has no component aok"},
		{"other release", `"release": "3.4.2"=>"release": "3.4.1"`, "field release: the catalog is for 3.4.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat, err := ParsePatchCatalog("patches.json", []byte(catalogDoc(c.mutate)))
			if err != nil {
				t.Fatal(err)
			}
			err = cat.Check("patches.json", m)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// A patch whose components run on none of its roles is refused.
func TestPatchCatalogRolesMustReachComponents(t *testing.T) {
	m, _ := ParseManifest("manifest.json", []byte(goodManifest))
	cat, err := ParsePatchCatalog("patches.json", []byte(catalogDoc(`"roles": ["primary", "controller"]=>"roles": ["router"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Check("patches.json", m); err == nil || !strings.Contains(err.Error(), "none of the patch's roles router") {
		t.Fatalf("got %v", err)
	}
}

// Patch levels are cumulative: a catalog that lists a lower level of a
// component after a higher one is refused, naming the patch and field.
func TestPatchCatalogLevelsRiseInOrder(t *testing.T) {
	second := `,
 {"id": 2, "name": "nats-fix-2", "description": "Second", "severity": "low", "roles": ["controller"],
  "components": [{"name": "nats", "version": "VERSION", "restart": true,
    "artifact": {"url": "../a/nats-p2.tgz", "sha256": "` + digestA + `", "size": 10}, "hooks": {}}]}]}`
	doc := func(v string) []byte {
		d := catalogDoc("")
		return []byte(strings.TrimSuffix(d, "]}") + strings.Replace(second, "VERSION", v, 1))
	}
	for _, ok := range []string{"3.4.2-p2", "3.4.2-p1", "3.4.2-p10"} {
		if _, err := ParsePatchCatalog("patches.json", doc(ok)); err != nil {
			t.Errorf("nats %s after 3.4.2-p1 refused: %v", ok, err)
		}
	}
	for _, low := range []string{"3.4.2-p1", "3.4.2-p9"} {
		hi := strings.Replace(string(doc(low)), `"version": "3.4.2-p1"`, `"version": "3.4.2-p10"`, 1)
		_, err := ParsePatchCatalog("patches.json", []byte(hi))
		want := `patches[1] (patch nats-fix-2).components[0] (nats).version: ` + low + ` is lower than 3.4.2-p10 of patch aok-endpoint-fix (patches[0])`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("nats %s after 3.4.2-p10: got %v, want %q", low, err, want)
		}
	}
}
