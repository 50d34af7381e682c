package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// SigName is the sidecar that signs the document at name.
func SigName(name string) string { return name + ".sig" }

// Sign returns the .sig sidecar of doc, published at name (its path
// relative to the channel), signed by every key given.
func Sign(name string, doc []byte, version int64, expires time.Time, keys ...*PrivateKey) ([]byte, error) {
	if !docName.MatchString(name) {
		return nil, fmt.Errorf("%q is not a path relative to the channel", name)
	}
	if version < 1 {
		return nil, fmt.Errorf("version %d: versions start at 1", version)
	}
	if len(doc) > MaxDocumentBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than readers accept (%d)", name, len(doc), MaxDocumentBytes)
	}
	sum := sha256.Sum256(doc)
	return sign(sidecar{
		Expires: formatExpires(expires),
		Length:  int64(len(doc)),
		Name:    name,
		SHA256:  hex.EncodeToString(sum[:]),
		Type:    typeSigned,
		Version: version,
	}, keys)
}

// Options are a run's verification policy.
type Options struct {
	// AllowExpired accepts expired documents and roots; each one accepted
	// is reported back (Meta.Expired, Meta.RootExpired) so that the caller
	// logs it. For air-gapped mirrors that cannot be re-signed in time.
	AllowExpired bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Meta is what a verified document's signature says about it.
type Meta struct {
	Name    string
	Version int64
	Expires time.Time
	Length  int64
	SHA256  string
	// Expired: the document is expired and was accepted only because
	// Options.AllowExpired is set. RootExpired: the same for the root.
	Expired, RootExpired bool
}

// Verifier checks a channel's documents against a trusted root and the
// versions trusted so far. It is not safe for concurrent use.
type Verifier struct {
	store     *Store
	opts      Options
	root      *Root
	rootDirty bool
	trusted   map[string]int64 // as loaded from the store
	seen      map[string]int64 // verified since, for Commit
}

// NewVerifier starts from the root in store. When the store has none yet
// (first use), it starts from anchor: the root file the operator installed,
// never one read from the channel. A nil store verifies without state:
// no rollback protection across runs.
func NewVerifier(store *Store, anchor []byte, opts Options) (*Verifier, error) {
	v := &Verifier{store: store, opts: opts, trusted: map[string]int64{}, seen: map[string]int64{}}
	var raw []byte
	if store != nil {
		r, versions, err := store.load()
		if err != nil {
			return nil, err
		}
		raw, v.trusted = r, versions
	}
	doc := "root.json (trusted state)"
	if raw == nil {
		if anchor == nil {
			return nil, fmt.Errorf("no trusted root for this channel yet: give the channel's root.json, obtained from its publisher out of band, as the trust anchor")
		}
		raw, doc, v.rootDirty = anchor, "root.json (trust anchor)", true
	}
	r, err := ParseRoot(doc, raw)
	if err != nil {
		return nil, err
	}
	// An anchor newer than the stored root is the operator's own decision,
	// out of band (new keys after a compromise, or a rotation a mirror
	// withheld): it replaces the stored root. An older one is ignored.
	if anchor != nil && !v.rootDirty {
		a, err := ParseRoot("root.json (trust anchor)", anchor)
		if err != nil {
			return nil, err
		}
		if a.Version > r.Version {
			r, v.rootDirty = a, true
		}
	}
	v.root = r
	return v, nil
}

// Root returns the root trusted now (after any accepted rotation).
func (v *Verifier) Root() *Root { return v.root }

// UpdateRoot accepts the next root, published at name: it must be version
// trusted+1 and signed by a threshold of the trusted keys and a threshold
// of its own. Its expiry is not checked here: an intermediate root may have
// expired since; Verify checks the root that ends up trusted.
func (v *Verifier) UpdateRoot(name string, raw []byte) error {
	next, sigs, e := parseRoot(name, raw)
	if e != nil {
		return e
	}
	if want := v.root.Version + 1; next.Version != want {
		return refuse(name, CheckRotation, "version %d follows trusted version %d: a root must take the next version, %d", next.Version, v.root.Version, want)
	}
	if e := checkThreshold(name, next.msg, sigs, v.root.Keys, v.root.Threshold); e != nil {
		return &Error{Doc: name, Check: CheckRotation, Err: fmt.Errorf("not signed by the trusted root's keys: %w", e.Err)}
	}
	if e := checkThreshold(name, next.msg, sigs, next.Keys, next.Threshold); e != nil {
		return &Error{Doc: name, Check: CheckRotation, Err: fmt.Errorf("not signed by its own keys: %w", e.Err)}
	}
	v.root, v.rootDirty = next, true
	return nil
}

// UpdateRoots walks the channel's root chain from the trusted version:
// fetch returns the document published at a name, with found false when
// there is none (the end of the chain).
func (v *Verifier) UpdateRoots(fetch func(name string) (data []byte, found bool, err error)) error {
	for {
		name := RootName(v.root.Version + 1)
		data, found, err := fetch(name)
		if err != nil {
			return err
		}
		if !found {
			return nil
		}
		if err := v.UpdateRoot(name, data); err != nil {
			return err
		}
	}
}

// Verify checks doc, published at name, against its sidecar sig (nil when
// the channel has none). On success the version is remembered for Commit.
func (v *Verifier) Verify(name string, doc, sig []byte) (*Meta, error) {
	now := v.opts.now()
	m := &Meta{}
	if now.After(v.root.Expires) {
		if !v.opts.AllowExpired {
			return nil, refuse("root.json", CheckExpired, "expired %s", formatExpires(v.root.Expires))
		}
		m.RootExpired = true
	}
	if len(doc) > MaxDocumentBytes {
		return nil, refuse(name, CheckTooLarge, "%d bytes, more than the %d allowed", len(doc), MaxDocumentBytes)
	}
	if sig == nil {
		return nil, refuse(name, CheckSignature, "%s is missing", SigName(name))
	}
	var sc sidecar
	sigs, e := openEnvelope(SigName(name), sig, &sc)
	if e != nil {
		e.Doc = name
		e.Err = fmt.Errorf("%s: %w", SigName(name), e.Err)
		return nil, e
	}
	if e := checkThreshold(name, canonical(sc), sigs, v.root.Keys, v.root.Threshold); e != nil {
		return nil, e
	}
	// Only now is the signed part worth reading.
	if sc.Type != typeSigned || sc.Version < 1 || sc.Length < 0 || !hex64.MatchString(sc.SHA256) {
		return nil, refuse(name, CheckMalformed, "signed part has type %q, version %d, length %d, sha256 %q", sc.Type, sc.Version, sc.Length, sc.SHA256)
	}
	expires, e := parseExpires(name, sc.Expires)
	if e != nil {
		return nil, e
	}
	if sc.Name != name {
		return nil, refuse(name, CheckName, "the signature is for %q", sc.Name)
	}
	if int64(len(doc)) != sc.Length {
		return nil, refuse(name, CheckLength, "%d bytes, signed as %d", len(doc), sc.Length)
	}
	sum := sha256.Sum256(doc)
	if got := hex.EncodeToString(sum[:]); got != sc.SHA256 {
		return nil, refuse(name, CheckDigest, "sha256 %s, signed as %s", got, sc.SHA256)
	}
	if now.After(expires) {
		if !v.opts.AllowExpired {
			return nil, refuse(name, CheckExpired, "expired %s", sc.Expires)
		}
		m.Expired = true
	}
	if floor := max(v.trusted[name], v.seen[name]); sc.Version < floor {
		return nil, refuse(name, CheckRollback, "version %d is older than the trusted version %d", sc.Version, floor)
	}
	v.seen[name] = max(v.seen[name], sc.Version)
	m.Name, m.Version, m.Expires, m.Length, m.SHA256 = name, sc.Version, expires, sc.Length, sc.SHA256
	return m, nil
}

// Commit persists the root and the versions verified so far, so that a
// later run refuses anything older. Call it once every document of a read
// has verified, before acting on them: a crash after that point then
// cannot let an older channel back in.
func (v *Verifier) Commit() error {
	if v.store == nil {
		return nil
	}
	merged := map[string]int64{}
	for k, n := range v.trusted {
		merged[k] = n
	}
	for k, n := range v.seen {
		merged[k] = max(merged[k], n)
	}
	var root []byte
	if v.rootDirty {
		root = v.root.raw
	}
	if err := v.store.save(root, merged); err != nil {
		return err
	}
	v.trusted, v.seen, v.rootDirty = merged, map[string]int64{}, false
	return nil
}

// CheckArtifact reads an artifact to its end and compares it with the size
// and sha256 its verified manifest gives, reading at most size+1 bytes.
func CheckArtifact(name string, r io.Reader, size int64, sha256Hex string) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	switch {
	case n > size:
		return refuse(name, CheckLength, "more than %d bytes, signed as %d", size, size)
	case n < size:
		return refuse(name, CheckLength, "%d bytes, signed as %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256Hex {
		return refuse(name, CheckDigest, "sha256 %s, signed as %s", got, sha256Hex)
	}
	return nil
}
