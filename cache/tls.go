package cache

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The daemon's certificate and token are re-read when their files change:
// every TLS handshake and every prefetch request compares the files'
// modification time, size and inode with those last read (one stat each),
// so replacing them (an atomic rename, or writing in place) takes effect
// on the next connection, with no restart and no signal. A file that does
// not parse keeps the previous one in use and is logged.

// fileStamp tells one version of a file from another.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fileSysIno(fi); ok {
		s.ino = st
	}
	return s
}

// certFiles is the daemon's certificate and key, reloaded when either
// file changes.
type certFiles struct {
	certFile, keyFile string
	logf              func(format string, args ...any)

	mu         sync.Mutex
	cert       *tls.Certificate
	leaf       *x509.Certificate
	certStamp  fileStamp
	keyStamp   fileStamp
	lastErr    string
	reloadedAt time.Time
}

// loadCertFiles reads the pair once; an error here stops the start.
func loadCertFiles(certFile, keyFile string, logf func(string, ...any)) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, logf: logf}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) stamps() (fileStamp, fileStamp, error) {
	cfi, err := os.Stat(c.certFile)
	if err != nil {
		return fileStamp{}, fileStamp{}, err
	}
	kfi, err := os.Stat(c.keyFile)
	if err != nil {
		return fileStamp{}, fileStamp{}, err
	}
	return stampOf(cfi), stampOf(kfi), nil
}

func (c *certFiles) reload() error {
	cs, ks, err := c.stamps()
	if err != nil {
		return fmt.Errorf("the TLS certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("the TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("the TLS certificate %s: %w", c.certFile, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cert, c.leaf, c.certStamp, c.keyStamp, c.lastErr = &pair, leaf, cs, ks, ""
	c.reloadedAt = time.Now()
	return nil
}

// current re-reads the files if they changed and returns the pair in use.
func (c *certFiles) current() (*tls.Certificate, *x509.Certificate) {
	cs, ks, err := c.stamps()
	c.mu.Lock()
	changed := err == nil && (cs != c.certStamp || ks != c.keyStamp)
	c.mu.Unlock()
	if changed {
		if err := c.reload(); err != nil {
			c.mu.Lock()
			if msg := err.Error(); msg != c.lastErr {
				c.lastErr = msg
				c.logf("cache: reloading the TLS certificate failed, the previous one stays in use: %v", err)
			}
			c.mu.Unlock()
		} else {
			c.logf("cache: TLS certificate reloaded from %s", c.certFile)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, c.leaf
}

// GetCertificate is tls.Config's hook.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, _ := c.current()
	return cert, nil
}

// tlsConfig is the daemon's TLS: 1.2 or later, the certificate from files.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

// tokenFile is the prefetch token, reloaded when its file changes.
type tokenFile struct {
	path string
	logf func(format string, args ...any)

	mu      sync.Mutex
	token   string
	stamp   fileStamp
	lastErr string
}

func loadTokenFile(path string, logf func(string, ...any)) (*tokenFile, error) {
	t := &tokenFile{path: path, logf: logf}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the token file: %w", err)
	}
	if err := t.read(stampOf(fi)); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tokenFile) read(st fileStamp) error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("the token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return fmt.Errorf("the token file %s is empty", t.path)
	}
	t.mu.Lock()
	t.token, t.stamp, t.lastErr = tok, st, ""
	t.mu.Unlock()
	return nil
}

// Token returns the token in use, re-reading the file if it changed.
func (t *tokenFile) Token() string {
	if fi, err := os.Stat(t.path); err == nil {
		st := stampOf(fi)
		t.mu.Lock()
		changed := st != t.stamp
		t.mu.Unlock()
		if changed {
			if err := t.read(st); err != nil {
				t.mu.Lock()
				if msg := err.Error(); msg != t.lastErr {
					t.lastErr = msg
					t.logf("cache: reloading the token failed, the previous one stays in use: %v", err)
				}
				t.mu.Unlock()
			} else {
				t.logf("cache: token reloaded from %s", t.path)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

// modTime is when the token in use was last written.
func (t *tokenFile) modTime() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stamp.mod
}

// CertFingerprint is how a certificate is pinned: "sha256:" and the
// lowercase hex of the sha256 of its DER bytes (openssl x509 -fingerprint
// -sha256 prints the same digits, upper case, with colons).
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CertRequest says what certificate to make for a cache node.
type CertRequest struct {
	IPs      []net.IP
	DNSNames []string
	ValidFor time.Duration // 0: 825 days
}

// Cert is a certificate and its key, PEM-encoded.
type Cert struct {
	CertPEM, KeyPEM []byte
	Fingerprint     string
	NotAfter        time.Time
}

// GenerateCert makes a self-signed ECDSA P-256 certificate for the cache
// node's addresses (IP SANs: the cluster addresses the cache node by IP).
func GenerateCert(req CertRequest) (Cert, error) {
	if len(req.IPs) == 0 && len(req.DNSNames) == 0 {
		return Cert{}, errors.New("a certificate needs at least one address of the cache node")
	}
	if req.ValidFor <= 0 {
		req.ValidFor = 825 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Cert{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return Cert{}, err
	}
	now := time.Now()
	name := "sentinel cache"
	if len(req.IPs) > 0 {
		name += " " + req.IPs[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sentinel-d"}},
		NotBefore:             now.Add(-time.Hour), // a node's clock a little behind
		NotAfter:              now.Add(req.ValidFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so that it can also be given to clients as their CA file
		IPAddresses:           req.IPs,
		DNSNames:              req.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Cert{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Cert{}, err
	}
	return Cert{
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Fingerprint: CertFingerprint(der),
		NotAfter:    tmpl.NotAfter,
	}, nil
}

// Names of the files WriteCert writes in its directory.
const (
	CertFileName = "sentinel-d.crt"
	KeyFileName  = "sentinel-d.key"
)

// WriteCert writes c as dir/sentinel-d.crt (0644) and dir/sentinel-d.key
// (0600). It never replaces a file: either exists, and it says so and
// writes nothing.
func WriteCert(dir string, c Cert) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: not replacing it (remove it first to make a new certificate; clients that pinned the old one must then pin the new fingerprint)", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := writeNew(keyPath, c.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, c.CertPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
