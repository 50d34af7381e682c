package steps_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// A node's agent verifies the cache daemon itself, with the pin the
// orchestrator sends in the fetch request: a daemon presenting another
// certificate is refused (a *cache.CertError naming both fingerprints) and
// nothing lands in the node cache; the pinned one serves the artifact.
// The node's preflight probe verifies it the same way, so that preflight
// refuses before any node changes.
func TestAgentFetchVerifiesTheCacheDaemon(t *testing.T) {
	served, err := fixtures.NewTLSCert(fixtures.CertSpec{Subject: "impostor", IPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := fixtures.NewTLSCert(fixtures.CertSpec{Subject: "cache", IPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("router 3.4.2 ", 4096))
	sum := sha256.Sum256(data)
	art := release.Artifact{URL: "http://127.0.0.1:1/artifacts/router-3.4.2.tar.gz", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	daemonDir := t.TempDir()
	src := filepath.Join(t.TempDir(), "router.tar.gz")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&cache.Store{Dir: daemonDir}).Fetch(t.Context(), "file://"+src, art.SHA256, art.Size); err != nil {
		t.Fatal(err)
	}
	srv, err := cache.NewServer(cache.ServerConfig{Store: &cache.Store{Dir: daemonDir}})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		serves *fixtures.TLSCert
	}{{"another certificate", served}, {"the pinned certificate", pinned}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewUnstartedServer(srv.Handler())
			hs.TLS = &tls.Config{Certificates: []tls.Certificate{tc.serves.TLS()}}
			hs.StartTLS()
			defer hs.Close()

			// What the orchestrator sends, through JSON as over the wire.
			f := source.Fetch{CacheURL: hs.URL, CachePeer: cache.Peer{Fingerprint: pinned.Fingerprint}}
			wire, err := json.Marshal(rollout.FetchRequest(f, steps.Request{Component: "router", Version: "3.4.2", Artifact: art}))
			if err != nil {
				t.Fatal(err)
			}
			var req steps.Request
			if err := json.Unmarshal(wire, &req); err != nil {
				t.Fatal(err)
			}
			a := &steps.Agent{Node: "dea-1", Layout: steps.Layout{Root: t.TempDir()}}
			_, err = a.Do(t.Context(), steps.OpFetch, req)
			cached := (&cache.Store{Dir: a.Layout.CacheDir()}).Has(art.SHA256)
			if tc.serves == pinned {
				if err != nil || !cached {
					t.Fatalf("fetch from the pinned daemon: %v (cached: %v)", err, cached)
				}
				if said := probeCache(t, a, hs.URL, pinned.Fingerprint); said != "" {
					t.Errorf("the node's preflight probe of the pinned daemon: %s", said)
				}
				return
			}
			if probeSaid := probeCache(t, a, hs.URL, pinned.Fingerprint); !strings.Contains(probeSaid, "expected "+pinned.Fingerprint) {
				t.Errorf("the node's preflight probe of the cache daemon says %q, want the refusal", probeSaid)
			}
			var ce *cache.CertError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "expected "+pinned.Fingerprint) || !strings.Contains(err.Error(), "presented "+served.Fingerprint) {
				t.Fatalf("fetch from a daemon with another certificate: %v", err)
			}
			if cached {
				t.Error("the artifact landed in the node cache anyway")
			}
		})
	}
}

// probeCache runs the node's preflight probe of the cache daemon at base,
// pinned to fp, and returns what it found wrong ("" for nothing).
func probeCache(t *testing.T, a *steps.Agent, base, fp string) string {
	t.Helper()
	res, err := a.Do(t.Context(), steps.OpProbe, steps.Request{Probe: &steps.ProbeRequest{
		ReachDirect: []string{cache.HealthURL(base)}, CachePeer: &cache.Peer{Fingerprint: fp}}})
	if err != nil || len(res.Probe.Reach) != 1 {
		t.Fatalf("probe: %v, %+v", err, res.Probe)
	}
	return res.Probe.Reach[0].Error
}
