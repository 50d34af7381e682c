package channel

import (
	"encoding/json"
	"testing"
)

// FuzzParseCustom: a target's custom field (signed, but written by any
// publisher) is refused, or read to a non-negative unpacked size that
// survives a round trip.
func FuzzParseCustom(f *testing.F) {
	f.Add([]byte(`{"sentinel":{"unpacked_size":123}}`))
	f.Add([]byte(`{"other":{"x":1},"sentinel":{}}`))
	f.Add([]byte(`{"sentinel":{"unpacked_size":-1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCustom(data)
		if err != nil {
			return
		}
		if c.Sentinel.UnpackedSize < 0 {
			t.Fatalf("negative unpacked size accepted: %s", data)
		}
		again, _ := json.Marshal(c)
		c2, err := ParseCustom(again)
		if err != nil || c2 != c {
			t.Fatalf("round trip: %v %+v %+v", err, c, c2)
		}
	})
}
