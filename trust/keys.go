package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sentinel-paas/sentinel/durable"
)

// PublicKey is one ed25519 key a root trusts, with its id.
type PublicKey struct {
	ID  string // hex sha256 of the 32-byte public key
	Key ed25519.PublicKey
}

// PrivateKey is a publisher's signing key.
type PrivateKey struct {
	ID  string
	key ed25519.PrivateKey
}

// Public returns the key a root lists for this private key.
func (k *PrivateKey) Public() PublicKey {
	return PublicKey{ID: k.ID, Key: k.key.Public().(ed25519.PublicKey)}
}

func (k *PrivateKey) sign(msg []byte) Signature {
	return Signature{KeyID: k.ID, Sig: hex.EncodeToString(ed25519.Sign(k.key, msg))}
}

// KeyID names a public key by its content, so a root cannot list one key
// twice under two names to meet a threshold alone.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// NewPrivateKey wraps an ed25519 key; tests use it with fixed seeds.
func NewPrivateKey(k ed25519.PrivateKey) *PrivateKey {
	return &PrivateKey{ID: KeyID(k.Public().(ed25519.PublicKey)), key: k}
}

// GenerateKey makes a new key from rand (crypto/rand when nil) and writes it
// to path as a PKCS#8 PEM file readable by its owner only. It never
// overwrites a file: losing a signing key that a root lists is worse than a
// failed command.
func GenerateKey(path string, random io.Reader) (*PrivateKey, error) {
	if random == nil {
		random = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("writing the key: %w (a key file is never overwritten; choose another name)", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// Best effort: the key is written, and an error now would send the
	// operator to a new name while this one holds a good key.
	_ = durable.SyncDir(filepath.Dir(path))
	return NewPrivateKey(priv), nil
}

// LoadPrivateKey reads a key written by GenerateKey (or by
// `openssl genpkey -algorithm ed25519`).
func LoadPrivateKey(path string) (*PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" file (make one with `sentinel release keygen`)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New(path + ": not an ed25519 key; sentinel signs with ed25519 only")
	}
	return NewPrivateKey(priv), nil
}
