package cache

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Peer says how a client verifies the cache daemon: exactly one leaf
// certificate (Fingerprint), or any certificate a CA signed for the
// daemon's IP address (CAPEM). The orchestrator builds it from the cluster
// file and sends it to the node agents with each fetch, so that every
// connection to the daemon, from any node, is verified the same way. The
// zero Peer is plain HTTP, which the cluster file must ask for.
type Peer struct {
	Fingerprint string `json:"fingerprint,omitempty"` // sha256:<64 hex> of the leaf's DER
	CAPEM       []byte `json:"ca_pem,omitempty"`
	// CAFile names where CAPEM came from, for messages.
	CAFile string `json:"ca_file,omitempty"`
}

// TLS says whether the daemon is reached over https.
func (p Peer) TLS() bool { return p.Fingerprint != "" || len(p.CAPEM) > 0 }

// Scheme is the daemon's URL scheme.
func (p Peer) Scheme() string {
	if p.TLS() {
		return "https"
	}
	return "http"
}

// Fingerprint is how sentinel names a certificate: sha256 of its DER.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseFingerprint accepts sha256:<hex>, with or without colons between
// the bytes (as `openssl x509 -fingerprint -sha256` prints them), in
// either case, and returns it as Fingerprint writes it.
func ParseFingerprint(s string) (string, error) {
	rest, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if !ok {
		rest, ok = strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256 fingerprint=")
	}
	h := strings.ReplaceAll(rest, ":", "")
	if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a certificate fingerprint: want sha256:<64 hex digits>, as `sentinel cache cert` prints it", s)
	}
	return "sha256:" + h, nil
}

// ClientTLS is the TLS configuration that verifies the daemon as p says;
// nil for plain HTTP. With a fingerprint, the chain is not looked at: the
// leaf must be exactly the pinned certificate, and within its validity
// dates.
func ClientTLS(p Peer) (*tls.Config, error) {
	switch {
	case p.Fingerprint != "":
		want, err := ParseFingerprint(p.Fingerprint)
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The pin replaces the chain check; VerifyConnection does it.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return &certRefused{reason: "the server sent no certificate"}
				}
				leaf := cs.PeerCertificates[0]
				if got := Fingerprint(leaf.Raw); got != want {
					return &certRefused{cert: leaf, reason: "its certificate is not the pinned one"}
				}
				if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
					return &certRefused{cert: leaf, reason: fmt.Sprintf("the pinned certificate is not valid now (%s)", now.UTC().Format(time.RFC3339))}
				}
				return nil
			},
		}, nil
	case len(p.CAPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(p.CAPEM) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", p.CAFile)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
	}
	return nil, nil
}

// HTTPClient reaches the daemon directly (no proxy: it is on the cluster's
// own network), verified as p says. A refused certificate comes back as a
// *CertError, which no retry can fix.
func (p Peer) HTTPClient() (*http.Client, error) {
	tc, err := ClientTLS(p)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	if tc == nil {
		return &http.Client{Transport: t}, nil
	}
	t.TLSClientConfig = tc
	return &http.Client{Transport: &peerTransport{next: t, peer: p}}, nil
}

type peerTransport struct {
	next http.RoundTripper
	peer Peer
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath: an agent that lives for many steps closes what
// each step opened.
func (t *peerTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t *peerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if ce := t.peer.Refusal(r.URL.Host, err); ce != nil {
		return nil, &permanentError{ce}
	}
	return resp, err
}

// certRefused is VerifyConnection's verdict, with the certificate seen.
type certRefused struct {
	cert   *x509.Certificate
	reason string
}

func (e *certRefused) Error() string { return e.reason }

// CertError: the cache daemon at Host is not the one the cluster file
// pins. Nothing was sent to it but a TLS handshake.
type CertError struct {
	Host   string
	Want   string // the pinned fingerprint, or "a certificate signed by the CA in FILE"
	Seen   *x509.Certificate
	Reason string
	CA     bool // verified against a CA file rather than a pin
}

func (e *CertError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the cache daemon at %s was refused: %s; expected %s", e.Host, e.Reason, e.Want)
	if c := e.Seen; c != nil {
		fmt.Fprintf(&b, "; it presented %s (subject %q, valid %s to %s)", Fingerprint(c.Raw), c.Subject.String(),
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if e.CA {
		b.WriteString(". Give the cache node a certificate signed by that CA with its IP address among the certificate's IP addresses, or name the CA that signed it in cache.ca_file")
	} else {
		b.WriteString(". If the cache node's certificate was replaced, pin the new fingerprint that the package's postinst or `sentinel cache cert` printed there (cache.tls_fingerprint in the cluster file)")
	}
	b.WriteString("; if not, find out what answers at that address: nothing was sent to it")
	return b.String()
}

// Refusal turns err, from a connection to host, into a *CertError when
// the daemon's certificate (or its lack of TLS) was the reason; nil
// otherwise.
func (p Peer) Refusal(host string, err error) *CertError {
	if err == nil || !p.TLS() {
		return nil
	}
	var ce *CertError
	if errors.As(err, &ce) {
		return ce
	}
	want := p.Fingerprint
	if want == "" {
		want = "a certificate for this IP address signed by the CA in " + p.CAFile
	}
	var (
		cr *certRefused
		cv *tls.CertificateVerificationError
		rh tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &cr):
		return &CertError{Host: host, Want: want, Seen: cr.cert, Reason: cr.reason, CA: p.Fingerprint == ""}
	case errors.As(err, &cv):
		var seen *x509.Certificate
		if len(cv.UnverifiedCertificates) > 0 {
			seen = cv.UnverifiedCertificates[0]
		}
		return &CertError{Host: host, Want: want, Seen: seen, Reason: cv.Err.Error(), CA: p.Fingerprint == ""}
	case errors.As(err, &rh):
		return &CertError{Host: host, Want: want, CA: p.Fingerprint == "", Reason: "it does not speak TLS (a plain HTTP daemon? configure its certificate, or set cache.plain_http: true in the cluster file to accept plain HTTP)"}
	}
	return nil
}
