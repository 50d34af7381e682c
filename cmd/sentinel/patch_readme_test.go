package main

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/patches"
)

// keys lists every object key path of a JSON value ("patches[].id").
func keys(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out[prefix+k] = true
			keys(e, prefix+k+".", out)
		}
	case []any:
		for _, e := range x {
			keys(e, strings.TrimSuffix(prefix, ".")+"[].", out)
		}
	}
}

// The reference (docs/reference.md) documents the JSON of `sentinel patch status --output json`:
// its example has exactly the keys the command prints.
func TestPatchStatusJSONDocumented(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "`sentinel patch status --output json` prints one document:")
	if !ok {
		t.Fatal("docs/reference.md has no section on the JSON of patch status")
	}
	_, rest, _ = strings.Cut(rest, "```json\n")
	doc, _, _ := strings.Cut(rest, "```")
	var documented any
	if err := json.Unmarshal([]byte(doc), &documented); err != nil {
		t.Fatalf("docs/reference.md's example is not JSON: %v\n%s", err, doc)
	}
	full := patches.Status{Release: "3.4.2", Patches: []patches.PatchStatus{{ID: 1, Name: "n", Description: "d", Severity: "low", Roles: []string{"r"},
		Components:  []patches.ComponentLevel{{Name: "c", Version: "v", Restart: true}},
		InstalledOn: []string{"a"}, ToBeInstalledOn: []string{"b"}, Problems: []patches.NodeProblem{{Node: "a", Problem: "p"}}}},
		OtherRelease: []patches.NodeRelease{{Node: "x", Release: "3.4.1"}}}
	b, _ := json.Marshal(full)
	var real any
	json.Unmarshal(b, &real)
	want, got := map[string]bool{}, map[string]bool{}
	keys(real, "", want)
	keys(documented, "", got)
	if !reflect.DeepEqual(got, want) {
		list := func(m map[string]bool) []string {
			var l []string
			for k := range m {
				l = append(l, k)
			}
			sort.Strings(l)
			return l
		}
		t.Errorf("docs/reference.md documents keys %v\nthe command prints %v", list(got), list(want))
	}
}
