package steps_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// fallbackWorld: a published channel pushed to two real registries (Basic,
// reached through a toxiproxy, and Origin), and served over loopback HTTP
// as the upstream: a run that opened the channel at Basic falls back to
// Origin, then to the upstream.
type fallbackWorld struct {
	regs    *fixtures.RegistrySet
	repoDir string
	ch      *fixtures.Channel
	up      *fixtures.Upstream
	proxy   *toxiproxy.Proxy
	first   source.Registry // Basic, through the proxy
	fetch   source.Fetch
}

func newFallbackWorld(t *testing.T) *fallbackWorld {
	t.Helper()
	regs := fixtures.TestRegistrySet(t)
	served, err := fixtures.ServeChannel(t.TempDir(), fixtures.Options{PayloadBytes: map[string]int64{"router": 3 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { served.Close() })
	w := &fallbackWorld{regs: regs, repoDir: served.RepoDir, ch: served.Channel, up: served.Upstream}
	settings := oci.Settings{CAFile: regs.CAFile, AuthFile: regs.AuthFile}
	var refs []oci.Ref
	for _, r := range []*fixtures.Registry{regs.Basic, regs.Origin} {
		ref, _ := oci.ParseRef("oci://" + r.Addr + "/sentinel/stable")
		acc, err := settings.ForHost(t.Context(), ref.Host)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oci.Push(t.Context(), w.repoDir, ref, acc); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}

	zerolog.SetGlobalLevel(zerolog.Disabled)
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	w.proxy = toxiproxy.NewProxy(server, "basic", "127.0.0.1:0", regs.Basic.Addr)
	if err := server.Collection.Add(w.proxy, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.proxy.Stop)
	// Slow enough that the transfer is seen in the middle.
	if _, err := w.proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"slow","type":"bandwidth","stream":"downstream","toxicity":1,"attributes":{"rate":2048}}`)); err != nil {
		t.Fatal(err)
	}
	basicAcc, _ := settings.ForHost(t.Context(), regs.Basic.Addr)
	originAcc, _ := settings.ForHost(t.Context(), regs.Origin.Addr)
	via, _ := oci.ParseRef("oci://" + w.proxy.Listen + "/sentinel/stable")
	w.first = source.Registry{Ref: via, Access: basicAcc}
	w.fetch = source.Fetch{Registry: &w.first,
		Next:  []source.Alt{{Registry: &source.Registry{Ref: refs[1], Access: originAcc}}, {Base: w.up.URL}},
		Bases: []string{via.String() + "/", refs[1].String() + "/", w.up.URL}}
	return w
}

// planned is the request of a fetch step for the component's artifact of
// release v, its URL as a run that opened the channel at base plans it.
func (w *fallbackWorld) planned(t *testing.T, base, component, v string) steps.Request {
	t.Helper()
	for _, c := range w.ch.Manifests[v].Components {
		if c.Name == component {
			a := c.Artifact
			rel, err := filepath.Rel(w.repoDir, servedFile(t, w.repoDir, a.SHA256))
			if err != nil {
				t.Fatal(err)
			}
			a.URL = base + filepath.ToSlash(rel)
			return steps.Request{Component: component, Version: v, Artifact: a}
		}
	}
	t.Fatalf("release %s has no component %s", v, component)
	return steps.Request{}
}

// fetch sends the request as the orchestrator does (through JSON).
func fetch(t *testing.T, a *steps.Agent, f source.Fetch, req steps.Request) (steps.Result, error) {
	t.Helper()
	wire, err := json.Marshal(rollout.FetchRequest(f, req))
	if err != nil {
		t.Fatal(err)
	}
	var got steps.Request
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	return a.Do(t.Context(), steps.OpFetch, got)
}

// TestFetchFallsBackWhenASourceStops: the registry a run opened the
// channel at stops in the middle of a node's transfer; the node goes on
// from the next registry in order, resuming, and says so; with that one
// stopped too, from the upstream. A source that serves other bytes is a
// refusal, not passed over.
func TestFetchFallsBackWhenASourceStops(t *testing.T) {
	w := newFallbackWorld(t)
	var once sync.Once
	var midway bool
	a := &steps.Agent{Node: "dea-1", Layout: steps.Layout{Root: t.TempDir()}, Progress: func(p steps.FetchProgress) {
		if !p.Final && p.Done > 0 && p.Done < p.Total && strings.Contains(p.URL, w.proxy.Listen) {
			once.Do(func() { midway = true; w.proxy.Stop() }) // the registry stops mid-transfer
		}
	}}
	node := &cache.Store{Dir: a.Layout.CacheDir()}

	router := w.planned(t, w.first.Ref.String()+"/", "router", "3.4.2")
	res, err := fetch(t, a, w.fetch, router)
	if err != nil {
		t.Fatalf("fetch with the first registry stopped mid-transfer: %v", err)
	}
	if !midway {
		t.Fatal("the transfer from the first registry was never seen in the middle: the test stopped nothing")
	}
	if !node.Has(router.Artifact.SHA256) || !strings.Contains(res.Note, w.regs.Origin.Addr) || !strings.Contains(res.Note, w.proxy.Listen) {
		t.Errorf("fetch result %+v (cached: %v): want the artifact from %s, saying %s did not serve it", res, node.Has(router.Artifact.SHA256), w.regs.Origin.Addr, w.proxy.Listen)
	}

	if err := w.regs.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	downloads := w.up.ArtifactDownloads()
	kato := w.planned(t, w.first.Ref.String()+"/", "kato", "3.4.2")
	res, err = fetch(t, a, w.fetch, kato)
	if err != nil || !node.Has(kato.Artifact.SHA256) || !strings.Contains(res.Note, w.up.URL) {
		t.Fatalf("fetch with both registries stopped: %+v, %v; want it from the upstream %s", res, err, w.up.URL)
	}
	if w.up.ArtifactDownloads() == downloads {
		t.Error("the upstream served no artifact")
	}

	// A mirror serving other bytes (of the right size) under the path.
	dea := w.planned(t, "", "dea_ng", "3.4.2")
	bad := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Write(make([]byte, dea.Artifact.Size))
	}))
	defer bad.Close()
	dea.Artifact.URL = bad.URL + "/" + dea.Artifact.URL
	tampering := source.Fetch{Next: []source.Alt{{Base: w.up.URL}}, Bases: []string{bad.URL + "/", w.up.URL}}
	_, err = fetch(t, a, tampering, dea)
	var dm *cache.DigestMismatchError
	if !errors.As(err, &dm) || node.Has(dea.Artifact.SHA256) {
		t.Errorf("a mirror serving other bytes: %v (cached: %v); want a *cache.DigestMismatchError, not passed over to the upstream", err, node.Has(dea.Artifact.SHA256))
	}
}

// servedFile is the channel repository's file of the target with this sha256.
func servedFile(t *testing.T, repoDir, sha string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(filepath.Join(repoDir, "targets"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), sha+".") {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no target %s below %s", sha, repoDir)
	}
	return found
}
