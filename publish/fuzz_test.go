package publish

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseReleaseDescription: any input is refused naming the file, or
// parses to a description that survives a round trip through JSON.
func FuzzParseReleaseDescription(f *testing.F) {
	f.Add([]byte(`{"version":"3.4.2","upgrade_from":["3.4.1"],"components":[{"name":"router","roles":["router"],"artifact":"router-3.4.2.tar.gz","hooks":{"health":{"timeout":"5s","retries":3}}}]}`))
	f.Add([]byte(`{"version":"x","components":[]}`))
	f.Add([]byte(`{"version":"1","components":[{"name":"a","roles":["nope"],"artifact":"../a"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseReleaseDescription("release.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "release.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, c := range d.Components {
			if strings.Contains(c.Artifact, "/") || strings.HasPrefix(c.Artifact, ".") {
				t.Fatalf("accepted an artifact that leaves the artifacts directory: %q", c.Artifact)
			}
		}
		again, _ := json.Marshal(d)
		d2, err := ParseReleaseDescription("release.json", again)
		if len(d.UpgradeFrom) == 0 {
			d.UpgradeFrom = nil // omitted when empty
		}
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip: %v\n%#v\n%#v", err, d, d2)
		}
	})
}

// FuzzParsePatchDescription: the same for patch.json.
func FuzzParsePatchDescription(f *testing.F) {
	f.Add([]byte(`{"release":"3.4.2","id":4,"name":"router-fix","description":"d","severity":"high","roles":["router"],"components":[{"name":"router","version":"3.4.2-p2","artifact":"router-3.4.2-p2.tar.gz","restart":true}]}`))
	f.Add([]byte(`{"components":[{"artifact":"a/b"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParsePatchDescription("patch.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "patch.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, c := range d.Components {
			if strings.Contains(c.Artifact, "/") || strings.HasPrefix(c.Artifact, ".") {
				t.Fatalf("accepted an artifact that leaves the artifacts directory: %q", c.Artifact)
			}
		}
	})
}

// FuzzInspect: any bytes are refused or inspected, never a panic, and an
// archive never unpacks to a negative size.
func FuzzInspect(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Inspect(data)
		if err == nil && a.UnpackedSize < 0 {
			t.Fatalf("unpacked size %d", a.UnpackedSize)
		}
	})
}
