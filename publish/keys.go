package publish

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key is a private signing key, read from its file in the keys directory.
type Key struct {
	ID      string // the TUF key id
	Role    string // the role it was made for (its file name says so)
	Path    string
	private ed25519.PrivateKey
}

// Public is the key as root metadata lists it.
func (k *Key) Public() *metadata.Key {
	pk, _ := metadata.KeyFromPublicKey(k.private.Public())
	return pk
}

func (k *Key) signer() (signature.Signer, error) {
	return signature.LoadSigner(k.private, crypto.Hash(0))
}

// NewKey makes an ed25519 key for role and writes it (PKCS#8 PEM, 0600)
// to dir/<role>-<keyid prefix>.key. Nothing prints it.
func NewKey(dir, role string) (*Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k := &Key{Role: role, private: priv}
	if k.ID, err = k.Public().ID(); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	k.Path = filepath.Join(dir, fmt.Sprintf("%s-%s.key", role, k.ID[:16]))
	f, err := os.OpenFile(k.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}

// LoadKey reads a key file NewKey wrote.
func LoadKey(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", path)
	}
	pk, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := pk.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	role, _, _ := strings.Cut(filepath.Base(path), "-")
	k := &Key{Role: role, Path: path, private: priv}
	k.ID, err = k.Public().ID()
	return k, err
}

// LoadKeys reads every *.key of dir, by key id.
func LoadKeys(dir string) (map[string]*Key, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	keys := map[string]*Key{}
	for _, n := range names {
		k, err := LoadKey(n)
		if err != nil {
			return nil, err
		}
		keys[k.ID] = k
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys (*.key) in %s", dir)
	}
	return keys, nil
}

// ErrNoKeys: the keys directory lacks the keys a role needs.
var ErrNoKeys = errors.New("not enough keys")
