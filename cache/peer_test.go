package cache_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
)

// tlsDaemon is the real cache daemon's handler served over TLS on
// loopback with cert, holding one artifact; it counts the requests that
// got past the handshake.
type tlsDaemon struct {
	URL      string
	digest   string
	size     int64
	requests *atomic.Int64
}

func startTLSDaemon(t *testing.T, cert *fixtures.TLSCert) tlsDaemon {
	t.Helper()
	dir := t.TempDir()
	data := []byte(strings.Repeat("artifact bytes ", 1000))
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	src := filepath.Join(t.TempDir(), "a")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	store := &cache.Store{Dir: dir}
	if _, err := store.Fetch(t.Context(), "file://"+src, digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	srv, err := cache.NewServer(cache.ServerConfig{Store: store, ChannelDir: filepath.Join(dir, "channel"), Token: "s3cret", PlainHTTP: cert == nil})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	h := srv.Handler()
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	if cert != nil {
		hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS()}}
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return tlsDaemon{URL: hs.URL, digest: digest, size: int64(len(data)), requests: &n}
}

func newCert(t *testing.T, spec fixtures.CertSpec) *fixtures.TLSCert {
	t.Helper()
	if spec.Subject == "" {
		spec.Subject = "sentinel cache 127.0.0.1"
	}
	c, err := fixtures.NewTLSCert(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchWith downloads the daemon's artifact into a fresh store as a node
// does, verifying the daemon as peer says.
func fetchWith(t *testing.T, d tlsDaemon, peer cache.Peer) error {
	t.Helper()
	hc, err := peer.HTTPClient()
	if err != nil {
		return err
	}
	store := &cache.Store{Dir: t.TempDir(), HTTP: hc}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = store.Fetch(ctx, cache.ArtifactURL(d.URL, d.digest), d.digest, d.size)
	return err
}

func TestPeerVerifiesTheDaemon(t *testing.T) {
	good := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}})
	other := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}, Subject: "impostor"})
	ca := newCert(t, fixtures.CertSpec{CA: true, Subject: "cluster CA"})
	signed := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}, Parent: ca})
	wrongIP := newCert(t, fixtures.CertSpec{IPs: []string{"10.9.9.9"}, Parent: ca})
	otherCA := newCert(t, fixtures.CertSpec{CA: true, Subject: "another CA"})
	expired := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}, NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(-1, 0, 0)})

	cases := []struct {
		name   string
		served *fixtures.TLSCert // nil: plain HTTP
		peer   cache.Peer
		refuse []string // what the refusal says; none: accepted
	}{
		{"pinned fingerprint", good, cache.Peer{Fingerprint: good.Fingerprint}, nil},
		{"pin in openssl's form", good, cache.Peer{Fingerprint: opensslForm(good.Fingerprint)}, nil},
		{"CA and IP SAN", signed, cache.Peer{CAPEM: ca.CertPEM, CAFile: "/etc/ca.pem"}, nil},
		{"another certificate than the pinned one", other, cache.Peer{Fingerprint: good.Fingerprint},
			[]string{"expected " + good.Fingerprint, "presented " + other.Fingerprint, `subject "CN=impostor"`, "valid ", "pin the new fingerprint", "sentinel cache cert"}},
		{"the pinned certificate expired", expired, cache.Peer{Fingerprint: expired.Fingerprint},
			[]string{"not valid now", "presented " + expired.Fingerprint}},
		{"signed by another CA", signed, cache.Peer{CAPEM: otherCA.CertPEM, CAFile: "/etc/ca.pem"},
			[]string{"signed by the CA in /etc/ca.pem", "presented " + signed.Fingerprint, "unknown authority", "certificate signed by that CA"}},
		{"the CA's certificate for another IP", wrongIP, cache.Peer{CAPEM: ca.CertPEM, CAFile: "/etc/ca.pem"},
			[]string{"not 127.0.0.1", "presented " + wrongIP.Fingerprint, "with its IP address"}},
		{"plain HTTP where a pin is set", nil, cache.Peer{Fingerprint: good.Fingerprint},
			[]string{"does not speak TLS", "plain_http"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startTLSDaemon(t, tc.served)
			if tc.served == nil {
				d.URL = "https://" + strings.TrimPrefix(d.URL, "http://")
			}
			err := fetchWith(t, d, tc.peer)
			if tc.refuse == nil {
				if err != nil {
					t.Fatalf("fetch over TLS: %v", err)
				}
				return
			}
			var ce *cache.CertError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *cache.CertError", err)
			}
			t.Log(err)
			host := strings.TrimPrefix(d.URL, "https://")
			for _, want := range append(tc.refuse, "the cache daemon at "+host+" was refused") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}
			if n := d.requests.Load(); n != 0 {
				t.Errorf("%d requests reached the refused daemon", n)
			}
		})
	}
}

func opensslForm(fp string) string {
	h := strings.ToUpper(strings.TrimPrefix(fp, "sha256:"))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return "sha256 Fingerprint=" + strings.Join(parts, ":")
}

// The prefetch token goes only to a verified daemon over TLS: never over
// plain HTTP unless the cluster file asks for it, never to a daemon whose
// certificate is refused.
func TestPrefetchTokenOnlyOverVerifiedTLS(t *testing.T) {
	good := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}})
	other := newCert(t, fixtures.CertSpec{IPs: []string{"127.0.0.1"}})
	req := cache.PrefetchRequest{Releases: []string{"3.4.2"}}
	// These daemons hold no channel root: a request that got past TLS and
	// the token is refused for that, and only for that.
	accepted := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "prefetch is disabled: this cache daemon fetches by name only")
	}

	plain := startTLSDaemon(t, nil)
	_, err := (&cache.Client{BaseURL: plain.URL, Token: "s3cret"}).Prefetch(t.Context(), req, nil)
	if err == nil || !strings.Contains(err.Error(), "only sent over TLS") || plain.requests.Load() != 0 {
		t.Fatalf("plain HTTP without the opt-out: %v, %d requests", err, plain.requests.Load())
	}
	if _, err := (&cache.Client{BaseURL: plain.URL, Token: "s3cret", PlainHTTP: true}).Prefetch(t.Context(), req, nil); !accepted(err) {
		t.Fatalf("plain HTTP with plain_http: %v", err)
	}

	impostor := startTLSDaemon(t, other)
	hc, err := cache.Peer{Fingerprint: good.Fingerprint}.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&cache.Client{BaseURL: impostor.URL, Token: "s3cret", HTTP: hc}).Prefetch(t.Context(), req, nil)
	var ce *cache.CertError
	if !errors.As(err, &ce) || impostor.requests.Load() != 0 {
		t.Fatalf("to an impostor: %v, %d requests", err, impostor.requests.Load())
	}

	real := startTLSDaemon(t, good)
	if _, err := (&cache.Client{BaseURL: real.URL, Token: "s3cret", HTTP: hc}).Prefetch(t.Context(), req, nil); !accepted(err) {
		t.Fatalf("to the pinned daemon: %v", err)
	}
}

func TestParseFingerprint(t *testing.T) {
	const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, in := range []string{"sha256:" + hex64, "SHA256:" + strings.ToUpper(hex64), opensslForm("sha256:" + hex64)} {
		if got, err := cache.ParseFingerprint(in); err != nil || got != "sha256:"+hex64 {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", hex64, "sha256:" + hex64[:62], "md5:" + hex64, "sha256:" + hex64 + "00"} {
		if _, err := cache.ParseFingerprint(in); err == nil || !strings.Contains(err.Error(), "sentinel cache cert") {
			t.Errorf("ParseFingerprint(%q): %v, want a refusal saying where the fingerprint comes from", in, err)
		}
	}
}
