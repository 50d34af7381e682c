package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cache section says how the daemon is verified: exactly one of a
// fingerprint, a CA file or plain_http; nothing at all is refused when
// the daemon is used, saying what to add.
func TestCachePeer(t *testing.T) {
	const fp = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cacheAt := func(extra string) string {
		return goodInventory + "cache:\n  node: core\n  dir: /s/cache\n" + extra
	}
	cases := []struct {
		name, file string
		loadErr    string // refused when the file is read
		peerErr    string // refused when the daemon is to be used
		tls        bool
	}{
		{"pinned", cacheAt("  tls_fingerprint: " + fp + "\n"), "", "", true},
		{"pinned, openssl's form", cacheAt("  tls_fingerprint: \"sha256 Fingerprint=" + strings.ToUpper(colons(fp[7:])) + "\"\n"), "", "", true},
		{"plain HTTP asked for", cacheAt("  plain_http: true\n"), "", "", false},
		{"nothing said", cacheAt(""), "", "nothing says how to verify the cache daemon: set cache.tls_fingerprint", false},
		{"no cache section", goodInventory, "", "cache.plain_http: true", false},
		{"two ways", cacheAt("  tls_fingerprint: " + fp + "\n  plain_http: true\n"), "alternatives: keep one", "", false},
		{"a short fingerprint", cacheAt("  tls_fingerprint: sha256:0123\n"), "field cache.tls_fingerprint", "", false},
		{"a CA file, relative to the cluster file", cacheAt("  ca_file: ca.pem\n"), "", "", true},
		{"a missing CA file", cacheAt("  ca_file: nowhere.pem\n"), "", "field cache.ca_file", false},
		{"a CA file without a certificate", cacheAt("  ca_file: empty.pem\n"), "", "holds no PEM certificate", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeInventory(t, c.file)
			os.WriteFile(filepath.Join(filepath.Dir(p), "empty.pem"), []byte("not a certificate\n"), 0o644)
			os.WriteFile(filepath.Join(filepath.Dir(p), "ca.pem"), selfSignedPEM(t), 0o644)
			inv, err := LoadInventory(p)
			if c.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.loadErr) {
					t.Fatalf("LoadInventory: %v, want an error saying %q", err, c.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			peer, err := inv.CachePeer()
			if c.peerErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.peerErr) {
					t.Fatalf("CachePeer: %v, want an error saying %q", err, c.peerErr)
				}
				return
			}
			if err != nil || peer.TLS() != c.tls {
				t.Fatalf("CachePeer = %+v, %v; want TLS %v", peer, err, c.tls)
			}
			if c.tls && peer.Fingerprint != fp && peer.CAFile != filepath.Join(filepath.Dir(p), "ca.pem") {
				t.Errorf("fingerprint %q, want %q", peer.Fingerprint, fp)
			}
		})
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func colons(h string) string {
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}
