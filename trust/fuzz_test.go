package trust

import (
	"bytes"
	"errors"
	"testing"
)

// The seed corpora in testdata/fuzz are made with the keys below; f.Add
// adds the same shapes so that `go test` alone runs them too.

// FuzzVerify feeds the verifier any document and sidecar. The fuzzer cannot
// forge ed25519, so whatever it accepts must be the one document that was
// signed, with the very signed part that was signed: only the layout of
// the sidecar may differ.
func FuzzVerify(f *testing.F) {
	k := testKey(1)
	good := mustSign(f, "index.json", indexJS, 5, nextYr, k)
	f.Add(indexJS, good)
	f.Add(indexJS, mustSign(f, "index.json", indexJS, 5, lastYr, k))
	f.Add(indexJS, mustSign(f, "other.json", indexJS, 5, nextYr, k))
	f.Add(indexJS, mustSign(f, "index.json", indexJS, 5, nextYr, testKey(2)))
	f.Add(indexJS[:10], good)
	f.Add([]byte{}, []byte{})
	f.Add(indexJS, []byte(`{"signed":{},"signatures":[]}`))

	root := mustRoot(f, pubs(k), 1, 1, nextYr, k)
	var want sidecar
	if _, e := openEnvelope("seed", good, &want); e != nil {
		f.Fatal(e)
	}
	f.Fuzz(func(t *testing.T, doc, sig []byte) {
		meta, err := verifierFor(root).Verify("index.json", doc, sig)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || advice[te.Check] == "" || te.Doc != "index.json" {
				t.Fatalf("error is not a refusal of index.json with a known check: %#v", err)
			}
			return
		}
		var got sidecar
		if _, e := openEnvelope("fuzz", sig, &got); e != nil {
			t.Fatalf("accepted a sidecar that does not parse: %v", e)
		}
		if !bytes.Equal(doc, indexJS) || got != want || meta.Version != want.Version {
			t.Fatalf("accepted a document or signed part that was never signed:\ndoc %q\nsigned %+v", doc, got)
		}
	})
}

// FuzzUpdateRoot feeds a trusted root any candidate successor: only the
// successor that was signed, by the old keys and its own, may be accepted.
func FuzzUpdateRoot(f *testing.F) {
	old, n1, n2 := testKey(1), testKey(2), testKey(3)
	trusted := mustRoot(f, pubs(old), 1, 1, nextYr, old)
	next := mustRoot(f, pubs(n1, n2), 2, 2, nextYr, old, n1, n2)
	f.Add(next.Bytes())
	f.Add(rawRoot(f, pubs(n1, n2), 2, 2, nextYr, n1, n2))
	f.Add(rawRoot(f, pubs(n1, n2), 2, 3, nextYr, old, n1, n2))
	f.Add(rawRoot(f, pubs(n1, n2), 2, 2, nextYr, old, n1))
	f.Add(trusted.Bytes())
	f.Add([]byte(`{"signed":{"keys":{}},"signatures":null}`))

	f.Fuzz(func(t *testing.T, raw []byte) {
		v := verifierFor(trusted)
		if err := v.UpdateRoot("2.root.json", raw); err != nil {
			var te *Error
			if !errors.As(err, &te) || advice[te.Check] == "" {
				t.Fatalf("error is not a refusal with a known check: %#v", err)
			}
			if v.Root().Version != 1 {
				t.Fatal("a refused root replaced the trusted one")
			}
			return
		}
		if !bytes.Equal(v.Root().msg, next.msg) {
			t.Fatalf("accepted a root that was never signed: %s", v.Root().msg)
		}
	})
}

// verifierFor skips NewVerifier's check of a root the test made itself:
// a quarter of each run's time otherwise.
func verifierFor(r *Root) *Verifier {
	return &Verifier{root: r, opts: atNow, trusted: map[string]int64{}, seen: map[string]int64{}}
}
