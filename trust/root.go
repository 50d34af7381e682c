package trust

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"time"
)

// RootName is the file under which a channel publishes version n of its
// root, so that a node several rotations behind can walk the chain.
func RootName(n int64) string { return fmt.Sprintf("%d.root.json", n) }

// Root is a trusted key set: the keys, how many of them must sign, and
// until when.
type Root struct {
	Version   int64
	Expires   time.Time
	Threshold int
	Keys      map[string]ed25519.PublicKey // by key id
	raw       []byte                       // the file as published, kept as is in the store
	msg       []byte                       // the canonical signed part: what signatures cover
}

type rootSigned struct {
	Expires   string             `json:"expires"`
	Keys      map[string]rootKey `json:"keys"`
	Threshold int                `json:"threshold"`
	Type      string             `json:"type"`
	Version   int64              `json:"version"`
}

type rootKey struct {
	Public string `json:"public"` // hex of the 32-byte ed25519 key
	Type   string `json:"type"`
}

// Bytes returns the root file as published.
func (r *Root) Bytes() []byte { return r.raw }

// NewRoot signs a root listing keys. A first root (version 1) is signed by
// its own keys; a rotation must also be signed by the keys of the root it
// replaces: pass those in signers too.
func NewRoot(keys []PublicKey, threshold int, version int64, expires time.Time, signers ...*PrivateKey) (*Root, error) {
	rs := rootSigned{Expires: formatExpires(expires), Keys: map[string]rootKey{}, Threshold: threshold, Type: typeRoot, Version: version}
	for _, k := range keys {
		rs.Keys[k.ID] = rootKey{Public: hex.EncodeToString(k.Key), Type: "ed25519"}
	}
	if err := rs.validate(); err != nil {
		return nil, err
	}
	raw, err := sign(rs, signers)
	if err != nil {
		return nil, err
	}
	return ParseRoot("root.json", raw)
}

func (rs *rootSigned) validate() error {
	switch {
	case rs.Type != typeRoot:
		return fmt.Errorf("type %q, want %q", rs.Type, typeRoot)
	case rs.Version < 1:
		return fmt.Errorf("version %d, want 1 or more", rs.Version)
	case len(rs.Keys) == 0:
		return fmt.Errorf("no keys")
	case rs.Threshold < 1 || rs.Threshold > len(rs.Keys):
		return fmt.Errorf("threshold %d with %d keys: want 1 to %d", rs.Threshold, len(rs.Keys), len(rs.Keys))
	}
	for id, k := range rs.Keys {
		pub, err := hex.DecodeString(k.Public)
		if err != nil || len(pub) != ed25519.PublicKeySize || k.Type != "ed25519" {
			return fmt.Errorf("key %.12q is not an ed25519 public key in hex", id)
		}
		if KeyID(pub) != id {
			return fmt.Errorf("key id %.12q is not the sha256 of its public key", id)
		}
	}
	return nil
}

// ParseRoot decodes a root and checks that a threshold of its own keys
// signed it. It does not look at expiry: an expired root is still the
// right starting point to walk to a newer one.
func ParseRoot(doc string, raw []byte) (*Root, error) {
	r, sigs, err := parseRoot(doc, raw)
	if err != nil {
		return nil, err
	}
	if err := checkThreshold(doc, r.msg, sigs, r.Keys, r.Threshold); err != nil {
		return nil, err
	}
	return r, nil
}

func parseRoot(doc string, raw []byte) (*Root, []Signature, *Error) {
	var rs rootSigned
	sigs, e := openEnvelope(doc, raw, &rs)
	if e != nil {
		return nil, nil, e
	}
	if err := rs.validate(); err != nil {
		return nil, nil, refuse(doc, CheckMalformed, "%v", err)
	}
	exp, e := parseExpires(doc, rs.Expires)
	if e != nil {
		return nil, nil, e
	}
	r := &Root{Version: rs.Version, Expires: exp, Threshold: rs.Threshold, Keys: map[string]ed25519.PublicKey{}, raw: raw, msg: canonical(rs)}
	for id, k := range rs.Keys {
		pub, _ := hex.DecodeString(k.Public)
		r.Keys[id] = pub
	}
	return r, sigs, nil
}
