// Package publish builds and maintains a channel: a TUF repository with
// consistent snapshots, signed with go-tuf, whose keys are files in a
// keys directory kept apart from the served tree. Roles are apart: root
// (a threshold of offline keys), targets (an offline key), snapshot and
// timestamp (online keys, short expiry).
//
// The served tree (see package channel):
//
//	DIR/metadata/N.root.json, timestamp.json, N.snapshot.json, N.targets.json
//	DIR/targets/<dir>/<sha256>.<name>
package publish

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/durable"
)

// Expiry is how long each role's metadata is valid once signed.
type Expiry struct{ Root, Targets, Snapshot, Timestamp time.Duration }

// DefaultExpiry: a year for the root, three months for targets, a week
// for the snapshot and a day for the timestamp, which the online key
// re-signs (`sentinel channel timestamp`) more often than that.
var DefaultExpiry = Expiry{Root: 365 * 24 * time.Hour, Targets: 90 * 24 * time.Hour, Snapshot: 7 * 24 * time.Hour, Timestamp: 24 * time.Hour}

// MaxExpiry bounds a validity period: longer is a typo, not a policy.
const MaxExpiry = 10 * 365 * 24 * time.Hour

// Check refuses a validity period that is not positive (metadata already
// expired when signed) or absurdly long, naming the role.
func (e Expiry) Check() error {
	for _, p := range []struct {
		role string
		d    time.Duration
	}{{metadata.ROOT, e.Root}, {metadata.TARGETS, e.Targets}, {metadata.SNAPSHOT, e.Snapshot}, {metadata.TIMESTAMP, e.Timestamp}} {
		if p.d <= 0 {
			return fmt.Errorf("the validity of the %s metadata, %s, is not positive: it would be signed already expired, and every client would refuse it; give a positive duration (default %s)", p.role, p.d, DefaultExpiry.of(p.role))
		}
		if p.d > MaxExpiry {
			return fmt.Errorf("the validity of the %s metadata, %s, is longer than %s: give a shorter duration (default %s)", p.role, p.d, MaxExpiry, DefaultExpiry.of(p.role))
		}
	}
	return nil
}

func (e Expiry) of(role string) time.Duration {
	switch role {
	case metadata.ROOT:
		return e.Root
	case metadata.TARGETS:
		return e.Targets
	case metadata.SNAPSHOT:
		return e.Snapshot
	}
	return e.Timestamp
}

// Roles are the top-level roles, in the order they are signed.
var Roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Repo is a channel's repository as its publisher holds it.
type Repo struct {
	Dir    string // the served tree
	Keys   string // the keys directory, outside Dir
	Expiry Expiry
	Now    func() time.Time

	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	keys      map[string]*Key
}

// InitOptions shape a new channel.
type InitOptions struct {
	RootKeys      int // default 2
	RootThreshold int // default RootKeys
	Expiry        Expiry
}

// Init creates an empty channel in dir (which must hold no metadata yet)
// and its keys in keysDir: RootKeys root keys, and one key each for
// targets, snapshot and timestamp. It publishes version 1 of every role.
func Init(dir, keysDir string, opt InitOptions) (*Repo, error) {
	if opt.RootKeys <= 0 {
		opt.RootKeys = 2
	}
	if opt.RootThreshold <= 0 {
		opt.RootThreshold = opt.RootKeys
	}
	if opt.RootThreshold > opt.RootKeys {
		return nil, fmt.Errorf("a root threshold of %d needs at least as many root keys, not %d", opt.RootThreshold, opt.RootKeys)
	}
	if opt.Expiry == (Expiry{}) {
		opt.Expiry = DefaultExpiry
	}
	if err := opt.Expiry.Check(); err != nil {
		return nil, err
	}
	if err := keysApart(dir, keysDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata")); err == nil {
		return nil, fmt.Errorf("%s already holds a channel (metadata/): open it instead of initialising it", dir)
	}
	r := &Repo{Dir: dir, Keys: keysDir, Expiry: opt.Expiry, Now: time.Now, keys: map[string]*Key{}}
	now := r.Now()
	r.root = metadata.Root(now.Add(opt.Expiry.Root))
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range Roles {
		n := 1
		if role == metadata.ROOT {
			n = opt.RootKeys
		}
		for i := 0; i < n; i++ {
			k, err := NewKey(keysDir, role)
			if err != nil {
				return nil, err
			}
			r.keys[k.ID] = k
			if err := r.root.Signed.AddKey(k.Public(), role); err != nil {
				return nil, err
			}
		}
	}
	r.root.Signed.Roles[metadata.ROOT].Threshold = opt.RootThreshold
	r.targets = metadata.Targets(now)
	r.snapshot = metadata.Snapshot(now)
	r.timestamp = metadata.Timestamp(now)
	r.targets.Signed.Version, r.snapshot.Signed.Version, r.timestamp.Signed.Version = 0, 0, 0
	if err := r.writeRoot(r.root, r.root); err != nil {
		return nil, err
	}
	return r, r.Publish()
}

// keysApart refuses a keys directory inside the served tree.
func keysApart(dir, keysDir string) error {
	d, err1 := filepath.Abs(dir)
	k, err2 := filepath.Abs(keysDir)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if k == d || strings.HasPrefix(k, d+string(filepath.Separator)) {
		return fmt.Errorf("the keys directory %s is inside the served channel %s: keep keys outside what is served", keysDir, dir)
	}
	return nil
}

// Open reads the channel's current metadata from dir and the keys found
// in keysDir (a machine holding only the online keys can still refresh
// the timestamp).
func Open(dir, keysDir string) (*Repo, error) {
	if err := keysApart(dir, keysDir); err != nil {
		return nil, err
	}
	r := &Repo{Dir: dir, Keys: keysDir, Expiry: DefaultExpiry, Now: time.Now}
	var err error
	if r.keys, err = LoadKeys(keysDir); err != nil {
		return nil, err
	}
	if r.root, err = latestRoot(dir); err != nil {
		return nil, err
	}
	if r.timestamp, err = metadata.Timestamp().FromFile(r.metaPath("timestamp.json")); err != nil {
		return nil, fmt.Errorf("%s: %w", r.metaPath("timestamp.json"), err)
	}
	sv := r.timestamp.Signed.Meta["snapshot.json"].Version
	if r.snapshot, err = metadata.Snapshot().FromFile(r.metaPath(fmt.Sprintf("%d.snapshot.json", sv))); err != nil {
		return nil, err
	}
	tv := r.snapshot.Signed.Meta["targets.json"].Version
	if r.targets, err = metadata.Targets().FromFile(r.metaPath(fmt.Sprintf("%d.targets.json", tv))); err != nil {
		return nil, err
	}
	return r, nil
}

func latestRoot(dir string) (*metadata.Metadata[metadata.RootType], error) {
	var best *metadata.Metadata[metadata.RootType]
	for v := 1; ; v++ {
		p := filepath.Join(dir, "metadata", strconv.Itoa(v)+".root.json")
		m, err := metadata.Root().FromFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		best = m
	}
	if best == nil {
		return nil, fmt.Errorf("%s holds no channel (no metadata/1.root.json): create one with `sentinel channel init`", dir)
	}
	return best, nil
}

func (r *Repo) metaPath(name string) string { return filepath.Join(r.Dir, "metadata", name) }

// RootBytes is the current root as published: the anchor operators
// install as trust.root.
func (r *Repo) RootBytes() ([]byte, error) {
	return os.ReadFile(r.metaPath(fmt.Sprintf("%d.root.json", r.root.Signed.Version)))
}

// RootVersion is the current root's version.
func (r *Repo) RootVersion() int64 { return r.root.Signed.Version }

// KeyIDs lists the key ids of role in the current root.
func (r *Repo) KeyIDs(role string) []string {
	return append([]string(nil), r.root.Signed.Roles[role].KeyIDs...)
}

// Versions gives each role's current version.
func (r *Repo) Versions() map[string]int64 {
	return map[string]int64{metadata.ROOT: r.root.Signed.Version, metadata.TARGETS: r.targets.Signed.Version,
		metadata.SNAPSHOT: r.snapshot.Signed.Version, metadata.TIMESTAMP: r.timestamp.Signed.Version}
}

// signers are the keys of role that root lists and the keys directory
// holds: at least the role's threshold, or an error saying which.
func (r *Repo) signers(root *metadata.RootType, role string) ([]*Key, error) {
	rr := root.Roles[role]
	var out []*Key
	for _, id := range rr.KeyIDs {
		if k, ok := r.keys[id]; ok {
			out = append(out, k)
		}
	}
	if len(out) < rr.Threshold {
		return nil, fmt.Errorf("%w: signing %s needs %d of its keys %v, and %s holds %d of them", ErrNoKeys, role, rr.Threshold, rr.KeyIDs, r.Keys, len(out))
	}
	return out, nil
}

// sign replaces m's signatures with those of keys, each key once.
func sign[T metadata.Roles](m *metadata.Metadata[T], keys []*Key) error {
	m.ClearSignatures()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.ID] {
			continue
		}
		seen[k.ID] = true
		s, err := k.signer()
		if err != nil {
			return err
		}
		if _, err := m.Sign(s); err != nil {
			return err
		}
	}
	return nil
}

// writeRoot signs root with the root keys of signedBy (the trusted root)
// and of root itself, and writes it as N.root.json.
func (r *Repo) writeRoot(root, signedBy *metadata.Metadata[metadata.RootType]) error {
	old, err := r.signers(&signedBy.Signed, metadata.ROOT)
	if err != nil {
		return err
	}
	cur, err := r.signers(&root.Signed, metadata.ROOT)
	if err != nil {
		return err
	}
	if err := sign(root, append(old, cur...)); err != nil {
		return err
	}
	if err := signedBy.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("the new root does not verify against the old one: %w", err)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("the new root does not verify against itself: %w", err)
	}
	data, err := root.ToBytes(true)
	if err != nil {
		return err
	}
	return r.write(path.Join("metadata", fmt.Sprintf("%d.root.json", root.Signed.Version)), data)
}

func (r *Repo) write(rel string, data []byte) error {
	p := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(p, data, 0o644)
}

// AddTarget puts data in the served tree under its consistent-snapshot
// name and lists it in the targets metadata (published by Publish).
func (r *Repo) AddTarget(name string, data []byte, custom *channel.Custom) error {
	if !validTarget(name) {
		return fmt.Errorf("target %q: want a clean relative path of [a-zA-Z0-9._+-] elements", name)
	}
	tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		return err
	}
	if custom != nil {
		raw, err := json.Marshal(custom)
		if err != nil {
			return err
		}
		msg := json.RawMessage(raw)
		tf.Custom = &msg
	}
	sum := sha256.Sum256(data)
	if err := r.write(path.Join("targets", channel.HashedName(name, fmt.Sprintf("%x", sum))), data); err != nil {
		return err
	}
	r.targets.Signed.Targets[name] = tf
	return nil
}

// Target returns the bytes of a listed target, from the served tree.
func (r *Repo) Target(name string) ([]byte, bool, error) {
	tf, ok := r.targets.Signed.Targets[name]
	if !ok {
		return nil, false, nil
	}
	data, err := os.ReadFile(r.TargetPath(name))
	if err == nil {
		err = tf.VerifyLengthHashes(data)
	}
	return data, true, err
}

// TargetPath is where the served tree holds a listed target ("" if none).
func (r *Repo) TargetPath(name string) string {
	tf, ok := r.targets.Signed.Targets[name]
	if !ok {
		return ""
	}
	return filepath.Join(r.Dir, "targets", filepath.FromSlash(channel.HashedName(name, tf.Hashes["sha256"].String())))
}

// TargetNames lists the targets.
func (r *Repo) TargetNames() []string {
	var out []string
	for n := range r.targets.Signed.Targets {
		out = append(out, n)
	}
	return out
}

func validTarget(name string) bool {
	if !fs.ValidPath(name) || name == "." {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el[0] == '.' {
			return false
		}
		for _, c := range el {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._+-", c)) {
				return false
			}
		}
	}
	return true
}

// Publish signs a new version of targets (offline key), snapshot and
// timestamp (online keys) and writes them, the timestamp last: a reader
// sees the new state only once all of it is there.
func (r *Repo) Publish() error {
	if err := r.Expiry.Check(); err != nil {
		return err
	}
	now := r.Now()
	r.targets.Signed.Version++
	r.targets.Signed.Expires = now.Add(r.Expiry.Targets)
	ts, err := r.signers(&r.root.Signed, metadata.TARGETS)
	if err != nil {
		return err
	}
	if err := sign(r.targets, ts); err != nil {
		return err
	}
	data, err := r.targets.ToBytes(true)
	if err != nil {
		return err
	}
	if err := r.write(path.Join("metadata", fmt.Sprintf("%d.targets.json", r.targets.Signed.Version)), data); err != nil {
		return err
	}
	r.snapshot.Signed.Meta["targets.json"] = metaFile(r.targets.Signed.Version, data)
	return r.publishSnapshot()
}

func (r *Repo) publishSnapshot() error {
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = r.Now().Add(r.Expiry.Snapshot)
	ss, err := r.signers(&r.root.Signed, metadata.SNAPSHOT)
	if err != nil {
		return err
	}
	if err := sign(r.snapshot, ss); err != nil {
		return err
	}
	data, err := r.snapshot.ToBytes(true)
	if err != nil {
		return err
	}
	if err := r.write(path.Join("metadata", fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)), data); err != nil {
		return err
	}
	r.timestamp.Signed.Meta["snapshot.json"] = metaFile(r.snapshot.Signed.Version, data)
	return r.Timestamp()
}

// Timestamp signs a new timestamp (online key) for the current snapshot:
// run it more often than the timestamp expires.
func (r *Repo) Timestamp() error {
	if err := r.Expiry.Check(); err != nil {
		return err
	}
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.Now().Add(r.Expiry.Timestamp)
	ts, err := r.signers(&r.root.Signed, metadata.TIMESTAMP)
	if err != nil {
		return err
	}
	if err := sign(r.timestamp, ts); err != nil {
		return err
	}
	data, err := r.timestamp.ToBytes(true)
	if err != nil {
		return err
	}
	return r.write("metadata/timestamp.json", data)
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	m := metadata.MetaFile(version)
	m.Length = int64(len(data))
	m.Hashes = metadata.Hashes{"sha256": sum[:]}
	return m
}

// Rotate replaces the keys of role with count new keys (threshold of them
// needed) in a new root, signed by the old root's threshold and the new
// root's, then publishes every role again with the keys now listed.
// Rotating the snapshot and timestamp keys is how a channel recovers
// from a fast-forward attack (specification 5.3.11): clients then drop
// the trusted snapshot and timestamp and accept the publisher's again.
func (r *Repo) Rotate(role string, count, threshold int) ([]*Key, error) {
	if err := r.Expiry.Check(); err != nil {
		return nil, err
	}
	if _, ok := r.root.Signed.Roles[role]; !ok {
		return nil, fmt.Errorf("no role %q: want one of %s", role, strings.Join(Roles, ", "))
	}
	if count <= 0 {
		count = 1
	}
	if threshold <= 0 || threshold > count {
		threshold = count
	}
	data, err := r.root.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromBytes(data)
	if err != nil {
		return nil, err
	}
	for _, id := range r.root.Signed.Roles[role].KeyIDs {
		if err := next.Signed.RevokeKey(id, role); err != nil {
			return nil, err
		}
	}
	var made []*Key
	for i := 0; i < count; i++ {
		k, err := NewKey(r.Keys, role)
		if err != nil {
			return nil, err
		}
		r.keys[k.ID] = k
		made = append(made, k)
		if err := next.Signed.AddKey(k.Public(), role); err != nil {
			return nil, err
		}
	}
	next.Signed.Roles[role].Threshold = threshold
	next.Signed.Version++
	next.Signed.Expires = r.Now().Add(r.Expiry.Root)
	if err := r.writeRoot(next, r.root); err != nil {
		return nil, err
	}
	r.root = next
	return made, r.Publish()
}

// RenewRoot signs a new version of the root with the same keys and a new
// expiry.
func (r *Repo) RenewRoot() error {
	data, err := r.root.ToBytes(false)
	if err != nil {
		return err
	}
	next, err := metadata.Root().FromBytes(data)
	if err != nil {
		return err
	}
	next.Signed.Version++
	next.Signed.Expires = r.Now().Add(r.Expiry.Root)
	if err := r.writeRoot(next, r.root); err != nil {
		return err
	}
	r.root = next
	return nil
}

// SignWith replaces m's signatures with those of keys: for tools that
// re-sign metadata by hand (and for tests that play an attacker holding
// leaked keys).
func SignWith[T metadata.Roles](m *metadata.Metadata[T], keys ...*Key) error { return sign(m, keys) }
