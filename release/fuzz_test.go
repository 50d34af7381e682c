package release

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseManifest: any input is either refused with a MetadataError
// naming the document, or parses to a manifest that survives a round trip
// through JSON unchanged (nothing is accepted that the parser only half
// understood).
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(goodManifest))
	f.Add([]byte(`{"version":"3.4.2","components":[]}`))
	f.Add([]byte(`{"version":"3.4.2","components":[{"name":"a","version":"1","roles":["base"],"artifact":{"url":"x","sha256":"` + zeros64 + `","size":1},"hooks":{"health":{"timeout":"1.5h","retries":1}}}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func(name string, data []byte) (any, error) { return ParseManifest(name, data) })
	})
}

// FuzzParseIndex: the same for the channel index.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(goodIndex))
	f.Add([]byte(`{"channel":"s","releases":[{"version":"3.4.2","manifest":"m.json"}]}`))
	f.Add([]byte(`{"releases":[{"version":"1","manifest":"a"},{"version":"2","manifest":"b"}],"upgrade_paths":[{"from":"2","to":"1"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func(name string, data []byte) (any, error) { return ParseIndex(name, data) })
	})
}

// FuzzParsePatchCatalog: the same for a release's patch catalog.
func FuzzParsePatchCatalog(f *testing.F) {
	f.Add([]byte(`{"release":"3.4.2","patches":[{"id":1,"name":"aok-fix","description":"d","severity":"high","roles":["router"],"components":[{"name":"aok","version":"3.4.2-p1","artifact":{"url":"a.tar.gz","sha256":"` + zeros64 + `","size":1},"hooks":{},"restart":true}]}]}`))
	f.Add([]byte(`{"release":"3.4.2","patches":[]}`))
	f.Add([]byte(`{"release":"x","patches":[{"id":0}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func(name string, data []byte) (any, error) { return ParsePatchCatalog(name, data) })
	})
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"

func roundTrip(t *testing.T, data []byte, parse func(string, []byte) (any, error)) {
	const name = "fuzz.json"
	v, err := parse(name, data)
	if err != nil {
		var me *MetadataError
		if !errors.As(err, &me) || me.Doc != name {
			t.Fatalf("error does not name the document: %v", err)
		}
		return
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted a value that does not encode: %v", err)
	}
	v2, err := parse(name, again)
	if err != nil {
		t.Fatalf("accepted %q, but refused its own re-encoding %s: %v", data, again, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("round trip changed the value:\n%#v\n%#v", v, v2)
	}
}

// FuzzParseSentinelBuilds: the same for tools/sentinel.json.
func FuzzParseSentinelBuilds(f *testing.F) {
	f.Add([]byte(`{"builds":[{"version":"0.2.0","os":"linux","arch":"amd64","artifact":{"url":"sentinel-0.2.0","sha256":"` + zeros64 + `","size":3}}]}`))
	f.Add([]byte(`{"builds":[]}`))
	f.Add([]byte(`{"builds":[{"version":"dev"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func(name string, data []byte) (any, error) { return ParseSentinelBuilds(name, data) })
	})
}
