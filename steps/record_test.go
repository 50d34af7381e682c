package steps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// node.json is replaced atomically: no temp file is left and the content
// round-trips.
func TestWriteRecordAtomic(t *testing.T) {
	root := t.TempDir()
	if _, err := ReadRecord(root); err == nil || !strings.Contains(err.Error(), "never installed by sentinel") {
		t.Errorf("missing record: %v", err)
	}
	for _, rel := range []string{"3.4.1", "3.4.2"} {
		if err := WriteRecord(root, &Record{Release: rel, Components: map[string]string{"nats": rel}}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := ReadRecord(root)
	if err != nil || r.Release != "3.4.2" || r.Components["nats"] != "3.4.2" {
		t.Fatalf("record = %+v, %v", r, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(RecordPath(root)))
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
