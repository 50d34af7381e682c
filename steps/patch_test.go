package steps

import (
	"slices"
	"strings"
	"testing"
)

func TestRecordPatch(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Node: "n", Layout: Layout{Root: root}}
	if err := WriteRecord(root, &Record{Release: "3.4.2", Components: map[string]string{"aok": "3.4.2", "nats": "3.4.2"}}); err != nil {
		t.Fatal(err)
	}
	add := Request{Patch: "fix", PatchInstalled: true, Release: "3.4.2", Components: map[string]string{"aok": "3.4.2-p1"}}
	res, err := a.Do(t.Context(), OpRecordPatch, add)
	if err != nil || !res.Changed {
		t.Fatalf("add: %+v %v", res, err)
	}
	rec, _ := ReadRecord(root)
	if !slices.Equal(rec.Patches, []string{"fix"}) || rec.Components["aok"] != "3.4.2-p1" || rec.Components["nats"] != "3.4.2" {
		t.Fatalf("record after add: %+v", rec)
	}
	// Again: no change (what a resumed run does after a crash).
	if res, err := a.Do(t.Context(), OpRecordPatch, add); err != nil || res.Changed || !strings.Contains(res.Note, "already records") {
		t.Fatalf("add again: %+v %v", res, err)
	}
	// Marking changes the list alone.
	if _, err := a.Do(t.Context(), OpRecordPatch, Request{Patch: "fix", Release: "3.4.2"}); err != nil {
		t.Fatal(err)
	}
	rec, _ = ReadRecord(root)
	if len(rec.Patches) != 0 || rec.Components["aok"] != "3.4.2-p1" {
		t.Fatalf("record after mark: %+v", rec)
	}
	// Another release: refused, record untouched.
	if _, err := a.Do(t.Context(), OpRecordPatch, Request{Patch: "fix", PatchInstalled: true, Release: "3.4.1"}); err == nil || !strings.Contains(err.Error(), "records release 3.4.2") {
		t.Fatalf("other release: %v", err)
	}
}

func TestCommitSupersedesPatches(t *testing.T) {
	cases := []struct {
		name, release string
		components    map[string]string
		keep          bool
	}{
		{"next release", "3.4.3", map[string]string{"aok": "3.4.3", "nats": "3.4.3"}, false},
		{"same release over a patched component (--force)", "3.4.2", map[string]string{"aok": "3.4.2", "nats": "3.4.2"}, false},
		// node.json does not say which components a patch replaced (a
		// patch marked installed by hand records none): a commit that puts
		// any component on a release version drops them all.
		{"same release, patched component not listed", "3.4.2", map[string]string{"nats": "3.4.2", "new": "3.4.2"}, false},
		{"same release, only patch levels", "3.4.2", map[string]string{"aok": "3.4.2-p1"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			a := &Agent{Node: "n", Layout: Layout{Root: root}}
			WriteRecord(root, &Record{Release: "3.4.2", Components: map[string]string{"aok": "3.4.2-p1", "nats": "3.4.2"}, Patches: []string{"fix"}})
			if _, err := a.Do(t.Context(), OpCommit, Request{Release: c.release, Components: c.components}); err != nil {
				t.Fatal(err)
			}
			rec, _ := ReadRecord(root)
			if got := len(rec.Patches) == 1; got != c.keep {
				t.Errorf("patches after commit: %v", rec.Patches)
			}
		})
	}
}

// upgrade --force of the same release over a patch recorded with `patch
// mark --installed` (no component at a patch level in node.json): the
// commit drops the patch whose files the reinstall just replaced.
func TestForceCommitDropsMarkedPatch(t *testing.T) {
	root := t.TempDir()
	WriteRecord(root, &Record{Release: "3.4.2", Components: map[string]string{"aok": "3.4.2"}, Patches: []string{"aok-fix"}})
	a := &Agent{Node: "n", Layout: Layout{Root: root}}
	if _, err := a.Do(t.Context(), OpCommit, Request{Release: "3.4.2", Components: map[string]string{"aok": "3.4.2"}}); err != nil {
		t.Fatal(err)
	}
	rec, _ := ReadRecord(root)
	if len(rec.Patches) != 0 || rec.Release != "3.4.2" || rec.Components["aok"] != "3.4.2" {
		t.Errorf("after a --force reinstall of 3.4.2 node.json says %+v, want no patches", rec)
	}
	// Again (a resumed run): nothing to change.
	if res, err := a.Do(t.Context(), OpCommit, Request{Release: "3.4.2", Components: map[string]string{"aok": "3.4.2"}}); err != nil || res.Changed {
		t.Errorf("second commit: %+v %v", res, err)
	}
}
