package trust

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Bounds on what a verifier reads before it knows whether to trust it.
const (
	// MaxDocumentBytes matches the channel reader's bound on any metadata
	// document (release.maxDocumentBytes).
	MaxDocumentBytes = 16 << 20
	// MaxSignedBytes bounds a .sig sidecar or a root: a few keys and
	// signatures fit in a few KiB.
	MaxSignedBytes = 1 << 20
	// maxSignatures bounds the ed25519 verifications one document costs.
	maxSignatures = 64
)

// Document types, signed with the rest so that a root's signature can
// never pass for a sidecar's, or the other way round.
const (
	typeSigned = "sentinel-signed"
	typeRoot   = "sentinel-root"
)

// Signature is one key's ed25519 signature over the canonical signed part,
// both in lowercase hex.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// envelope is the shape of root.json and of every .sig sidecar.
type envelope struct {
	Signatures []Signature      `json:"signatures"`
	Signed     *json.RawMessage `json:"signed"`
}

// sidecar is the signed part of a .sig file. Fields are in key order and
// encoded without spaces (see canonical).
type sidecar struct {
	Expires string `json:"expires"`
	Length  int64  `json:"length"`
	Name    string `json:"name"`
	SHA256  string `json:"sha256"`
	Type    string `json:"type"`
	Version int64  `json:"version"`
}

var (
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// docName: a path relative to the channel, no "..", no absolute path,
	// so a signed name means the same file on every mirror.
	docName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*(/[A-Za-z0-9_][A-Za-z0-9._+-]*)*$`)
)

// canonical encodes the signed part the same way for signer and verifier:
// the structs above keep their keys sorted, maps are sorted by
// encoding/json, and there is no whitespace. Verifiers re-encode what they
// parsed rather than trusting the bytes on the wire, so whatever a reader
// acts on is exactly what was signed.
func canonical(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own plain structs come here
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the document")
	}
	return nil
}

// openEnvelope parses the outer shape and decodes the signed part into v.
func openEnvelope(doc string, data []byte, v any) ([]Signature, *Error) {
	if len(data) > MaxSignedBytes {
		return nil, refuse(doc, CheckTooLarge, "%d bytes, more than the %d allowed", len(data), MaxSignedBytes)
	}
	var env envelope
	if err := decodeStrict(data, &env); err != nil {
		return nil, refuse(doc, CheckMalformed, "%v", err)
	}
	if env.Signed == nil {
		return nil, refuse(doc, CheckMalformed, "no \"signed\" part")
	}
	if len(env.Signatures) > maxSignatures {
		return nil, refuse(doc, CheckMalformed, "%d signatures, more than the %d allowed", len(env.Signatures), maxSignatures)
	}
	if err := decodeStrict(*env.Signed, v); err != nil {
		return nil, refuse(doc, CheckMalformed, "signed part: %v", err)
	}
	return env.Signatures, nil
}

func parseExpires(doc, s string) (time.Time, *Error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, refuse(doc, CheckMalformed, "expires %q is not an RFC 3339 time", s)
	}
	return t, nil
}

func formatExpires(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// checkThreshold counts distinct keys of keys whose signature over msg
// verifies. A key that signs twice counts once. Signatures by keys the set
// does not list are ignored when the threshold is met (a root rotation
// leaves old signatures behind), and named when it is not.
func checkThreshold(doc string, msg []byte, sigs []Signature, keys map[string]ed25519.PublicKey, threshold int) *Error {
	valid := map[string]bool{}
	var bad, unknown []string
	for _, s := range sigs {
		pub, ok := keys[s.KeyID]
		if !ok {
			unknown = append(unknown, short(s.KeyID))
			continue
		}
		raw, err := hex.DecodeString(s.Sig)
		if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, raw) {
			bad = append(bad, short(s.KeyID))
			continue
		}
		valid[s.KeyID] = true
	}
	if len(valid) >= threshold {
		return nil
	}
	switch {
	case len(bad) > 0:
		return refuse(doc, CheckSignature, "the signature of trusted key %s does not verify", strings.Join(dedupe(bad), ", "))
	case len(valid) == 0 && len(unknown) > 0:
		return refuse(doc, CheckUnknownKey, "signed only by keys the trusted root does not list (%s)", strings.Join(dedupe(unknown), ", "))
	case len(valid) == 0:
		return refuse(doc, CheckSignature, "not signed")
	}
	return refuse(doc, CheckThreshold, "signed by %d distinct trusted key(s), the root requires %d", len(valid), threshold)
}

// short abbreviates a key id for messages, as git does commits.
// Quoted, because an unknown key id comes from the mirror.
func short(id string) string { return fmt.Sprintf("%.12q", id) }

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func sign(v any, keys []*PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("no signing key given")
	}
	msg := json.RawMessage(canonical(v))
	env := envelope{Signed: &msg}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.ID] {
			continue
		}
		seen[k.ID] = true
		env.Signatures = append(env.Signatures, k.sign(msg))
	}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
