package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// now is the tests' clock; documents expire a year after it unless a test
// says otherwise.
var (
	now     = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	nextYr  = now.AddDate(1, 0, 0)
	lastYr  = now.AddDate(-1, 0, 0)
	atNow   = Options{Now: func() time.Time { return now }}
	indexJS = []byte(`{"channel":"stable","releases":[{"version":"3.4.1","manifest":"releases/3.4.1/manifest.json"}],"upgrade_paths":[]}` + "\n")
)

// testKey is a fixed key per seed byte: tests need keys, not randomness.
func testKey(seed byte) *PrivateKey {
	return NewPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

func pubs(keys ...*PrivateKey) []PublicKey {
	var out []PublicKey
	for _, k := range keys {
		out = append(out, k.Public())
	}
	return out
}

func mustRoot(t testing.TB, keys []PublicKey, threshold int, version int64, expires time.Time, signers ...*PrivateKey) *Root {
	t.Helper()
	r, err := NewRoot(keys, threshold, version, expires, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rawRoot signs a root without NewRoot's own check, to make roots that a
// verifier must refuse.
func rawRoot(t testing.TB, keys []PublicKey, threshold int, version int64, expires time.Time, signers ...*PrivateKey) []byte {
	t.Helper()
	rs := rootSigned{Expires: formatExpires(expires), Keys: map[string]rootKey{}, Threshold: threshold, Type: typeRoot, Version: version}
	for _, k := range keys {
		rs.Keys[k.ID] = rootKey{Public: hex.EncodeToString(k.Key), Type: "ed25519"}
	}
	raw, err := sign(rs, signers)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustSign(t testing.TB, name string, doc []byte, version int64, expires time.Time, keys ...*PrivateKey) []byte {
	t.Helper()
	sig, err := Sign(name, doc, version, expires, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// editSidecar rewrites a sidecar with f, keeping its signatures.
func editSidecar(t testing.TB, sig []byte, f func(env *envelope, sc *sidecar)) []byte {
	t.Helper()
	var env envelope
	var sc sidecar
	if err := json.Unmarshal(sig, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(*env.Signed, &sc); err != nil {
		t.Fatal(err)
	}
	f(&env, &sc)
	raw := json.RawMessage(canonical(sc))
	env.Signed = &raw
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkOf(err error) string {
	var te *Error
	if errors.As(err, &te) {
		return te.Check
	}
	if err != nil {
		return "not a *trust.Error: " + err.Error()
	}
	return ""
}

func TestVerify(t *testing.T) {
	k1, k2, k3, stranger := testKey(1), testKey(2), testKey(3), testKey(9)
	root := mustRoot(t, pubs(k1, k2, k3), 2, 1, nextYr, k1, k2, k3)
	good := mustSign(t, "index.json", indexJS, 5, nextYr, k1, k2)

	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	tests := []struct {
		name      string
		doc, sig  []byte
		docName   string
		opts      Options
		rootExp   time.Time
		trusted   int64
		wantCheck string
		wantMeta  func(*Meta) bool
	}{
		{name: "two of three sign", doc: indexJS, sig: good,
			wantMeta: func(m *Meta) bool {
				return m.Version == 5 && !m.Expired && !m.RootExpired && m.Length == int64(len(indexJS))
			}},
		{name: "all three sign", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, nextYr, k1, k2, k3)},
		{name: "threshold met, plus a stranger and a garbled trusted signature", doc: indexJS,
			sig: editSidecar(t, mustSign(t, "index.json", indexJS, 5, nextYr, k1, k2, stranger, k3), func(env *envelope, _ *sidecar) {
				env.Signatures[3].Sig = strings.Repeat("00", 64)
			})},
		{name: "a flipped byte in the document", doc: flip(indexJS, 10), sig: good, wantCheck: CheckDigest},
		{name: "one byte more", doc: append(bytes.Clone(indexJS), ' '), sig: good, wantCheck: CheckLength},
		{name: "truncated", doc: indexJS[:len(indexJS)-1], sig: good, wantCheck: CheckLength},
		{name: "empty document", doc: []byte{}, sig: good, wantCheck: CheckLength},
		{name: "signed part changed after signing", doc: indexJS,
			sig: editSidecar(t, good, func(_ *envelope, sc *sidecar) { sc.Version = 6 }), wantCheck: CheckSignature},
		{name: "one signature bit flipped, below the threshold then", doc: indexJS,
			sig: editSidecar(t, good, func(env *envelope, _ *sidecar) {
				raw, _ := hex.DecodeString(env.Signatures[0].Sig)
				raw[7] ^= 0x10
				env.Signatures[0].Sig = hex.EncodeToString(raw)
			}), wantCheck: CheckSignature},
		{name: "signature not hex", doc: indexJS,
			sig: editSidecar(t, good, func(env *envelope, _ *sidecar) { env.Signatures[1].Sig = "zz" }), wantCheck: CheckSignature},
		{name: "only unknown keys", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, nextYr, stranger, testKey(8)), wantCheck: CheckUnknownKey},
		{name: "one trusted key of the two required", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, nextYr, k1), wantCheck: CheckThreshold},
		{name: "one trusted key and a stranger", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, nextYr, k1, stranger), wantCheck: CheckThreshold},
		{name: "one key signing twice counts once", doc: indexJS,
			sig: editSidecar(t, mustSign(t, "index.json", indexJS, 5, nextYr, k1), func(env *envelope, _ *sidecar) {
				env.Signatures = append(env.Signatures, env.Signatures[0])
			}), wantCheck: CheckThreshold},
		{name: "no signatures", doc: indexJS,
			sig: editSidecar(t, good, func(env *envelope, _ *sidecar) { env.Signatures = nil }), wantCheck: CheckSignature},
		{name: "no sidecar", doc: indexJS, sig: nil, wantCheck: CheckSignature},
		{name: "sidecar not JSON", doc: indexJS, sig: []byte("-----BEGIN PGP SIGNATURE-----"), wantCheck: CheckMalformed},
		{name: "sidecar with an unknown field", doc: indexJS, sig: replaceOnce(t, good, `"signatures"`, `"extra":1,"signatures"`), wantCheck: CheckMalformed},
		{name: "sidecar with trailing data", doc: indexJS, sig: append(bytes.Clone(good), []byte("{}")...), wantCheck: CheckMalformed},
		{name: "signed with a bad sha256 field", doc: indexJS,
			sig: func() []byte {
				s := editSidecar(t, good, func(_ *envelope, sc *sidecar) { sc.SHA256 = "XYZ" })
				return resign(t, s, k1, k2)
			}(), wantCheck: CheckMalformed},
		{name: "signature for another document", doc: indexJS, sig: mustSign(t, "releases/3.4.1/manifest.json", indexJS, 5, nextYr, k1, k2), wantCheck: CheckName},
		{name: "served under another name", doc: indexJS, sig: good, docName: "releases/3.4.2/manifest.json", wantCheck: CheckName},
		{name: "expired", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, lastYr, k1, k2), wantCheck: CheckExpired},
		{name: "expired one second ago", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, now.Add(-time.Second), k1, k2), wantCheck: CheckExpired},
		{name: "expires this very second", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, now, k1, k2)},
		{name: "expired but allowed, and reported", doc: indexJS, sig: mustSign(t, "index.json", indexJS, 5, lastYr, k1, k2),
			opts: Options{AllowExpired: true}, wantMeta: func(m *Meta) bool { return m.Expired && !m.RootExpired }},
		{name: "root expired", doc: indexJS, sig: good, rootExp: lastYr, wantCheck: CheckExpired},
		{name: "root expired but allowed, and reported", doc: indexJS, sig: good, rootExp: lastYr,
			opts: Options{AllowExpired: true}, wantMeta: func(m *Meta) bool { return m.RootExpired && !m.Expired }},
		{name: "lower version than trusted", doc: indexJS, sig: good, trusted: 6, wantCheck: CheckRollback},
		{name: "equal version", doc: indexJS, sig: good, trusted: 5},
		{name: "higher version", doc: indexJS, sig: good, trusted: 4},
		{name: "document over 16 MiB", doc: make([]byte, MaxDocumentBytes+1), sig: good, wantCheck: CheckTooLarge},
		{name: "sidecar over 1 MiB", doc: indexJS, sig: append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxSignedBytes)...), wantCheck: CheckTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := root
			if !tc.rootExp.IsZero() {
				r = mustRoot(t, pubs(k1, k2, k3), 2, 1, tc.rootExp, k1, k2)
			}
			tc.opts.Now = atNow.Now
			v, err := NewVerifier(nil, r.Bytes(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.trusted > 0 {
				v.trusted["index.json"] = tc.trusted
			}
			name := "index.json"
			if tc.docName != "" {
				name = tc.docName
			}
			meta, err := v.Verify(name, tc.doc, tc.sig)
			if got := checkOf(err); got != tc.wantCheck {
				t.Fatalf("check %q, want %q (err: %v)", got, tc.wantCheck, err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.wantCheck) || !strings.HasPrefix(err.Error(), checkDoc(err)) {
					t.Errorf("message %q does not name the document and the check", err)
				}
				return
			}
			if meta.Name != name || meta.SHA256 == "" {
				t.Errorf("meta %+v", meta)
			}
			if tc.wantMeta != nil && !tc.wantMeta(meta) {
				t.Errorf("meta %+v", meta)
			}
		})
	}
}

func replaceOnce(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	if bytes.Count(b, []byte(old)) != 1 {
		t.Fatalf("%q is not once in %s", old, b)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

func checkDoc(err error) string {
	var te *Error
	errors.As(err, &te)
	return te.Doc
}

// resign signs an edited signed part again, as a publisher with broken
// tooling would.
func resign(t testing.TB, sig []byte, keys ...*PrivateKey) []byte {
	t.Helper()
	var env envelope
	var sc sidecar
	if err := json.Unmarshal(sig, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(*env.Signed, &sc); err != nil {
		t.Fatal(err)
	}
	out, err := sign(sc, keys)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyRememberedVersionsRefuseRollbackWithinARun(t *testing.T) {
	k := testKey(1)
	v, err := NewVerifier(nil, mustRoot(t, pubs(k), 1, 1, nextYr, k).Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 7, nextYr, k)); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 6, nextYr, k))
	if checkOf(err) != CheckRollback {
		t.Fatalf("got %v, want a rollback refusal", err)
	}
}

func TestRotation(t *testing.T) {
	o1, o2, o3 := testKey(1), testKey(2), testKey(3) // the trusted root's keys, threshold 2
	n1, n2 := testKey(4), testKey(5)                 // the new root's keys, threshold 2
	trusted := mustRoot(t, pubs(o1, o2, o3), 2, 1, nextYr, o1, o2)
	newKeys := pubs(n1, n2)

	tests := []struct {
		name      string
		next      func() []byte
		wantCheck string
	}{
		{name: "signed by old and new thresholds", next: func() []byte { return mustRoot(t, newKeys, 2, 2, nextYr, o1, o3, n1, n2).Bytes() }},
		{name: "not signed by the old keys", next: func() []byte { return mustRoot(t, newKeys, 2, 2, nextYr, n1, n2).Bytes() }, wantCheck: CheckRotation},
		{name: "one old key of two", next: func() []byte { return mustRoot(t, newKeys, 2, 2, nextYr, o1, n1, n2).Bytes() }, wantCheck: CheckRotation},
		{name: "below its own threshold", next: func() []byte { return rawRoot(t, newKeys, 2, 2, nextYr, o1, o2, n1) }, wantCheck: CheckRotation},
		{name: "skips a version", next: func() []byte { return mustRoot(t, newKeys, 2, 3, nextYr, o1, o2, n1, n2).Bytes() }, wantCheck: CheckRotation},
		{name: "same version again", next: func() []byte { return mustRoot(t, newKeys, 2, 1, nextYr, o1, o2, n1, n2).Bytes() }, wantCheck: CheckRotation},
		{name: "tampered after signing", next: func() []byte {
			raw := mustRoot(t, newKeys, 2, 2, nextYr, o1, o2, n1, n2).Bytes()
			return replaceOnce(t, raw, `"threshold": 2`, `"threshold": 1`)
		}, wantCheck: CheckRotation},
		{name: "not a root", next: func() []byte { return mustSign(t, "root.json", indexJS, 2, nextYr, o1, o2) }, wantCheck: CheckMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(nil, trusted.Bytes(), atNow)
			if err != nil {
				t.Fatal(err)
			}
			err = v.UpdateRoot("2.root.json", tc.next())
			if got := checkOf(err); got != tc.wantCheck {
				t.Fatalf("check %q, want %q (err: %v)", got, tc.wantCheck, err)
			}
			// Whatever happened, documents must verify under exactly the
			// root now trusted: the new keys after a rotation, the old ones
			// after a refusal.
			signers, others := []*PrivateKey{n1, n2}, []*PrivateKey{o1, o2}
			if err != nil {
				signers, others = others, signers
			}
			if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 1, nextYr, signers...)); err != nil {
				t.Errorf("signed by the trusted keys: %v", err)
			}
			if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 1, nextYr, others...)); checkOf(err) != CheckUnknownKey {
				t.Errorf("signed by the other keys: %v, want unknown-key", err)
			}
		})
	}
}

func TestUpdateRootsWalksTheChain(t *testing.T) {
	a, b, c := testKey(1), testKey(2), testKey(3)
	published := map[string][]byte{
		"2.root.json": mustRoot(t, pubs(b), 1, 2, lastYr, a, b).Bytes(), // expired since: only the last link must be current
		"3.root.json": mustRoot(t, pubs(c), 1, 3, nextYr, b, c).Bytes(),
	}
	fetch := func(name string) ([]byte, bool, error) { d, ok := published[name]; return d, ok, nil }

	v, err := NewVerifier(nil, mustRoot(t, pubs(a), 1, 1, nextYr, a).Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.UpdateRoots(fetch); err != nil {
		t.Fatal(err)
	}
	if v.Root().Version != 3 || v.Root().Keys[c.ID] == nil {
		t.Fatalf("trusted root version %d, want 3 with key c", v.Root().Version)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 1, nextYr, c)); err != nil {
		t.Fatalf("signed by the last root's key: %v", err)
	}

	// A chain with a link not signed by its predecessor stops there.
	published["3.root.json"] = mustRoot(t, pubs(c), 1, 3, nextYr, c).Bytes()
	v, _ = NewVerifier(nil, mustRoot(t, pubs(a), 1, 1, nextYr, a).Bytes(), atNow)
	if err := v.UpdateRoots(fetch); checkOf(err) != CheckRotation {
		t.Fatalf("got %v, want a rotation refusal", err)
	}
	if v.Root().Version != 2 {
		t.Fatalf("trusted root version %d after a refused link, want 2", v.Root().Version)
	}
	// And the root the walk stopped at has expired: documents are refused.
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 1, nextYr, b)); checkOf(err) != CheckExpired {
		t.Fatalf("under an expired root: %v, want expired", err)
	}
}

func TestStorePersistsRootAndVersions(t *testing.T) {
	a, b := testKey(1), testKey(2)
	anchor := mustRoot(t, pubs(a), 1, 1, nextYr, a)
	st, err := OpenStore(t.TempDir(), "stable")
	if err != nil {
		t.Fatal(err)
	}

	// First run: from the anchor, a rotation, one document.
	v, err := NewVerifier(st, anchor.Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.UpdateRoot("2.root.json", mustRoot(t, pubs(b), 1, 2, nextYr, a, b).Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 4, nextYr, b)); err != nil {
		t.Fatal(err)
	}
	// Nothing is trusted across runs before Commit.
	if _, err := os.Stat(filepath.Join(st.Dir(), "versions.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("versions.json before Commit: %v", err)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}

	// Next run: the stored root wins over the anchor; version 4 is the floor.
	v, err = NewVerifier(st, anchor.Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if v.Root().Version != 2 {
		t.Fatalf("root version %d after reopening, want 2", v.Root().Version)
	}
	tests := []struct {
		version   int64
		wantCheck string
	}{{3, CheckRollback}, {4, ""}, {5, ""}}
	for _, tc := range tests {
		_, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, tc.version, nextYr, b))
		if got := checkOf(err); got != tc.wantCheck {
			t.Errorf("version %d: check %q, want %q (%v)", tc.version, got, tc.wantCheck, err)
		}
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(st.Dir(), "versions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var versions map[string]int64
	if err := json.Unmarshal(data, &versions); err != nil || versions["index.json"] != 5 {
		t.Fatalf("versions.json %s (%v), want index.json at 5", data, err)
	}
}

func TestStoreRefuses(t *testing.T) {
	a := testKey(1)
	anchor := mustRoot(t, pubs(a), 1, 1, nextYr, a).Bytes()
	tests := []struct {
		name     string
		id       string
		versions string
		anchor   []byte
		want     string
	}{
		{name: "no root and no anchor", id: "stable", anchor: nil, want: "trust anchor"},
		{name: "anchor not signed by its own keys", id: "stable", anchor: rawRoot(t, pubs(a), 1, 1, nextYr, testKey(2)), want: CheckUnknownKey},
		{name: "damaged versions.json", id: "stable", versions: `{"index.json": 3`, anchor: anchor, want: CheckMalformed},
		{name: "zero version in versions.json", id: "stable", versions: `{"index.json": 0}`, anchor: anchor, want: CheckMalformed},
		{name: "channel id with a slash", id: "../etc", anchor: anchor, want: "channel id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := OpenStore(t.TempDir(), tc.id)
			if err == nil {
				if tc.versions != "" {
					os.MkdirAll(st.Dir(), 0o755)
					if err := os.WriteFile(filepath.Join(st.Dir(), "versions.json"), []byte(tc.versions), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				_, err = NewVerifier(st, tc.anchor, atNow)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKeyFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "publisher.key")
	k, err := GenerateKey(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	if _, err := GenerateKey(path, nil); err == nil {
		t.Error("GenerateKey overwrote an existing key file")
	}
	loaded, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID != k.ID || loaded.ID != KeyID(k.Public().Key) {
		t.Fatalf("loaded key id %s, generated %s", loaded.ID, k.ID)
	}
	// The loaded key signs what the generated key's root trusts.
	v, err := NewVerifier(nil, mustRoot(t, pubs(k), 1, 1, nextYr, k).Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 1, nextYr, loaded)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("loaded a missing key")
	}
	notKey := filepath.Join(t.TempDir(), "root.json")
	os.WriteFile(notKey, indexJS, 0o600)
	if _, err := LoadPrivateKey(notKey); err == nil || !strings.Contains(err.Error(), "keygen") {
		t.Errorf("loading a non-key: %v", err)
	}
}

func TestNewRootRefusesBadKeySets(t *testing.T) {
	a, b := testKey(1), testKey(2)
	tests := []struct {
		name      string
		keys      []PublicKey
		threshold int
		version   int64
	}{
		{"no keys", nil, 1, 1},
		{"threshold zero", pubs(a, b), 0, 1},
		{"threshold above the key count", pubs(a, b), 3, 1},
		{"version zero", pubs(a), 1, 0},
		{"key id that is not the key's", []PublicKey{{ID: a.ID, Key: b.Public().Key}}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRoot(tc.keys, tc.threshold, tc.version, nextYr, a, b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestCheckArtifact(t *testing.T) {
	art := []byte("an artifact")
	digest := sha256.Sum256(art)
	sum := hex.EncodeToString(digest[:])
	tests := []struct {
		name      string
		data      []byte
		size      int64
		sum       string
		wantCheck string
	}{
		{"matches", art, int64(len(art)), sum, ""},
		{"shorter", art[:4], int64(len(art)), sum, CheckLength},
		{"longer", append(bytes.Clone(art), 'x'), int64(len(art)), sum, CheckLength},
		{"same size, other bytes", bytes.ToUpper(art), int64(len(art)), sum, CheckDigest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckArtifact("artifacts/router-3.4.2.tar.gz", bytes.NewReader(tc.data), tc.size, tc.sum)
			if got := checkOf(err); got != tc.wantCheck {
				t.Fatalf("check %q, want %q (%v)", got, tc.wantCheck, err)
			}
		})
	}
}

func TestErrorSaysWhatToDo(t *testing.T) {
	k := testKey(1)
	v, _ := NewVerifier(nil, mustRoot(t, pubs(k), 1, 1, nextYr, k).Bytes(), atNow)
	_, err := v.Verify("releases/3.4.2/manifest.json", indexJS, mustSign(t, "releases/3.4.2/manifest.json", indexJS, 1, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), k))
	want := "releases/3.4.2/manifest.json: expired check failed: expired 2026-03-01T00:00:00Z; the channel's metadata is stale; ask the publisher to re-sign, or pass --allow-expired-metadata if you knowingly run an air-gapped mirror"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	for check := range advice {
		if advice[check] == "" {
			t.Errorf("check %s has no advice", check)
		}
	}
}

// An anchor newer than the stored root is the operator's out-of-band
// word (new keys after a compromise, a rotation a mirror withheld): it
// replaces the stored root, and the trusted versions stay. An older
// anchor changes nothing.
func TestNewerAnchorReplacesStoredRoot(t *testing.T) {
	a, c := testKey(1), testKey(3)
	st, err := OpenStore(t.TempDir(), "stable")
	if err != nil {
		t.Fatal(err)
	}
	v1 := mustRoot(t, pubs(a), 1, 1, nextYr, a)
	v, err := NewVerifier(st, v1.Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 4, nextYr, a)); err != nil {
		t.Fatal(err)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}

	// The operator installs root version 3, with key c only.
	v3 := mustRoot(t, pubs(c), 1, 3, nextYr, c)
	v, err = NewVerifier(st, v3.Bytes(), atNow)
	if err != nil {
		t.Fatal(err)
	}
	if v.Root().Version != 3 {
		t.Fatalf("root version %d with a newer anchor, want 3", v.Root().Version)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 4, nextYr, a)); checkOf(err) != CheckUnknownKey {
		t.Errorf("a document signed by the replaced key: %v, want %s", err, CheckUnknownKey)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 3, nextYr, c)); checkOf(err) != CheckRollback {
		t.Errorf("the trusted versions were lost with the new root: %v", err)
	}
	if _, err := v.Verify("index.json", indexJS, mustSign(t, "index.json", indexJS, 5, nextYr, c)); err != nil {
		t.Fatal(err)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	// The old anchor again: the stored version 3 stays.
	v, err = NewVerifier(st, v1.Bytes(), atNow)
	if err != nil || v.Root().Version != 3 {
		t.Fatalf("with an older anchor: root %v, %v; want version 3", v.Root(), err)
	}
}
