package oci_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

const testUser, testPassword = "publisher", "s3cret-registry"

// startRegistries starts fixtures.RegistrySet, or skips without
// docker-registry.
func startRegistries(t *testing.T) *fixtures.RegistrySet {
	t.Helper()
	if err := fixtures.CheckRegistry(); err != nil {
		t.Skip(err)
	}
	rs, err := fixtures.StartRegistrySet(t.TempDir(), testUser, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	return rs
}

// publishedChannel is a signed channel repository and its trust anchor.
func publishedChannel(t *testing.T) (repoDir string, anchor []byte, ch *fixtures.Channel) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	ch, err := fixtures.Generate(src, fixtures.Options{PayloadBytes: map[string]int64{"router": 3 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	repoDir = filepath.Join(dir, "repo")
	r, err := fixtures.Publish(src, repoDir, filepath.Join(dir, "keys"), fixtures.LabExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if anchor, err = r.RootBytes(); err != nil {
		t.Fatal(err)
	}
	return repoDir, anchor, ch
}

func access(t *testing.T, r *fixtures.RegistrySet, host string) oci.Access {
	t.Helper()
	a, err := oci.Settings{CAFile: r.CAFile, AuthFile: r.AuthFile}.ForHost(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ref(t *testing.T, raw string) oci.Ref {
	t.Helper()
	r, err := oci.ParseRef(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestChannelThroughRegistryAndMirror pushes a channel to a registry with
// basic auth and to one with bearer tokens, copies it from the first to
// a repository of the second, then reads it, verified, from each and from
// the second one's pull-through mirror; artifacts come by
// digest in ranges (206, the digest as ETag).
func TestChannelThroughRegistryAndMirror(t *testing.T) {
	regs := startRegistries(t)
	repoDir, anchor, _ := publishedChannel(t)
	ctx := context.Background()
	basic := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/stable")
	origin := ref(t, "oci://"+regs.Origin.Addr+"/sentinel/stable")
	if _, err := oci.Push(ctx, repoDir, basic, access(t, regs, basic.Host)); err != nil {
		t.Fatalf("pushing to the registry with basic auth: %v", err)
	}
	pushed, err := oci.Push(ctx, repoDir, origin, access(t, regs, origin.Host))
	if err != nil {
		t.Fatalf("pushing to the registry with bearer tokens: %v", err)
	}
	if pushed.Uploaded == 0 || pushed.Uploaded != pushed.Files {
		t.Fatalf("first push: %+v, want every file uploaded", pushed)
	}
	again, err := oci.Push(ctx, repoDir, origin, access(t, regs, origin.Host))
	if err != nil {
		t.Fatal(err)
	}
	if again.Uploaded != 0 || again.Manifest != pushed.Manifest {
		t.Errorf("second push of the same channel: %+v, want nothing uploaded and the same manifest %s", again, pushed.Manifest)
	}

	// The operator's copy: from the registry with basic auth into another
	// repository of the one with tokens.
	copied := ref(t, "oci://"+regs.Origin.Addr+"/operator/copy")
	digest, err := oci.Copy(ctx, basic, access(t, regs, basic.Host), copied, access(t, regs, copied.Host))
	if err != nil {
		t.Fatalf("copying %s to %s: %v", basic, copied, err)
	}
	if digest != pushed.Manifest {
		t.Errorf("the copy's manifest is %s, the original's %s", digest, pushed.Manifest)
	}
	mirror := ref(t, "oci://"+regs.Mirror.Addr+"/sentinel/stable")
	servers := map[oci.Ref]*fixtures.Registry{basic: regs.Basic, origin: regs.Origin, mirror: regs.Mirror, copied: regs.Origin}
	for _, r := range []oci.Ref{basic, origin, mirror, copied} {
		t.Run(r.Host, func(t *testing.T) {
			rem, err := oci.NewRemote(r, access(t, regs, r.Host))
			if err != nil {
				t.Fatal(err)
			}
			c, err := channel.Open(ctx, channel.Config{URL: r.String(), Anchor: anchor, StateDir: t.TempDir(), HTTP: rem.HTTPClient()})
			if err != nil {
				t.Fatalf("opening the channel at %s: %v", r, err)
			}
			defer c.Close()
			chl, err := release.OpenChannel(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			m, err := chl.Manifest(ctx, chl.Index.Releases[len(chl.Index.Releases)-1].Version)
			if err != nil {
				t.Fatal(err)
			}
			a := m.Components[0].Artifact
			if !strings.HasPrefix(a.URL, r.String()+"/targets/") {
				t.Errorf("artifact URL %s is not below the registry channel %s", a.URL, r)
			}
			checkRange(t, blobClient(t, rem.Access, r.Host), r.BlobURL("https", a.SHA256), a, servers[r])
		})
	}
}

// checkRange reads the blob whole, then from byte 10 on. The first read
// fills a pull-through mirror: distribution streams a blob it does not
// hold yet from its upstream whole (200), ranges or not.
func checkRange(t *testing.T, hc *http.Client, blobURL string, a release.Artifact, reg *fixtures.Registry) {
	t.Helper()
	whole, err := hc.Get(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, whole.Body)
	whole.Body.Close()
	if whole.StatusCode != http.StatusOK || n != a.Size {
		t.Fatalf("GET %s: %s, %d bytes; want 200 and %d bytes", blobURL, whole.Status, n, a.Size)
	}
	if err := reg.WaitBlob(a.SHA256, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, blobURL, nil)
	req.Header.Set("Range", "bytes=10-")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || int64(len(body)) != a.Size-10 {
		t.Fatalf("GET %s with Range bytes=10-: %s, %d bytes; want 206 and %d bytes", blobURL, resp.Status, len(body), a.Size-10)
	}
	if etag := strings.Trim(resp.Header.Get("ETag"), `"`); etag != "sha256:"+a.SHA256 {
		t.Errorf("ETag %q, want the digest sha256:%s", etag, a.SHA256)
	}
}

func blobClient(t *testing.T, a oci.Access, host string) *http.Client {
	t.Helper()
	hc, err := a.HTTPClient(host)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// TestBlobTransferResumesThroughRegistry fetches an artifact blob from the
// registry (TLS, basic auth) with sentinel's own transfer, through a proxy
// that cuts every connection after 1 MiB: the transfer resumes with ranges
// and ends with the right bytes.
func TestBlobTransferResumesThroughRegistry(t *testing.T) {
	regs := startRegistries(t)
	repoDir, _, ch := publishedChannel(t)
	ctx := context.Background()
	origin := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/stable")
	if _, err := oci.Push(ctx, repoDir, origin, access(t, regs, origin.Host)); err != nil {
		t.Fatal(err)
	}
	var a release.Artifact
	for _, m := range ch.Manifests {
		for _, c := range m.Components {
			if c.Name == "router" {
				a = c.Artifact
			}
		}
	}
	zerolog.SetGlobalLevel(zerolog.Disabled)
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(server, "registry", "127.0.0.1:0", regs.Basic.Addr)
	if err := server.Collection.Add(proxy, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	js := fmt.Sprintf(`{"name":"cut","type":"limit_data","stream":"downstream","toxicity":1,"attributes":{"bytes":%d}}`, 1<<20)
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatal(err)
	}
	via := ref(t, "oci://"+proxy.Listen+"/sentinel/stable")
	acc := access(t, regs, origin.Host) // the credentials of the registry behind the proxy
	hc, err := acc.HTTPClient(via.Host)
	if err != nil {
		t.Fatal(err)
	}
	var retries int
	store := &cache.Store{Dir: t.TempDir(), HTTP: hc, CheckpointBytes: 256 << 10,
		Progress: func(p cache.TransferProgress) { retries = max(retries, p.Retries) }}
	got, err := store.Fetch(ctx, via.BlobURL("https", a.SHA256), a.SHA256, a.Size)
	if err != nil || !got {
		t.Fatalf("fetching %s (%d bytes) through a link cut every MiB: got=%v, %v", a.SHA256, a.Size, got, err)
	}
	if !store.Has(a.SHA256) {
		t.Fatal("the blob is not in the store after a successful fetch")
	}
	if retries < 2 {
		t.Errorf("the transfer reported %d retries through a link cut every MiB of a %d-byte blob: want at least 2 (it resumed)", retries, a.Size)
	}
}

// TestUnverifiedCopyRefusesAnotherChannel: the copy without --root does
// not replace another channel (another first root) at the destination,
// and says how to proceed; into a repository of its own it copies, and
// from a repository with no publication it says to check the name.
func TestUnverifiedCopyRefusesAnotherChannel(t *testing.T) {
	ctx := context.Background()
	regs := startRegistries(t)
	a := access(t, regs, regs.Basic.Addr)
	mine, other := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/mine"), ref(t, "oci://"+regs.Basic.Addr+"/sentinel/other")
	repoA, _, _ := publishedChannel(t)
	repoB, _, _ := publishedChannel(t) // other keys: another first root
	if _, err := oci.Push(ctx, repoA, mine, a); err != nil {
		t.Fatal(err)
	}
	pushedB, err := oci.Push(ctx, repoB, other, a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = oci.Copy(ctx, mine, a, other, a)
	var re *oci.RefError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "holds another channel") || !strings.Contains(err.Error(), "a repository of its own") ||
		!strings.Contains(err.Error(), "DELETE /v2/sentinel/other/manifests/"+pushedB.Manifest) {
		t.Fatalf("unverified copy over another channel: %v; want a *oci.RefError saying how to proceed", err)
	}
	if m := latestDigest(t, other, a); m != pushedB.Manifest {
		t.Fatalf("the refused copy moved %s's latest to %s", other, m)
	}
	fresh := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/fresh")
	if _, err := oci.Copy(ctx, mine, a, fresh, a); err != nil {
		t.Fatalf("copy into a repository of its own: %v", err)
	}
	if _, err := oci.Copy(ctx, mine, a, fresh, a); err != nil {
		t.Fatalf("the same channel copied again: %v", err)
	}
	var np *oci.NoPublicationError
	if _, err := oci.Copy(ctx, ref(t, "oci://"+regs.Basic.Addr+"/lab2"), a, fresh, a); !errors.As(err, &np) || !strings.Contains(err.Error(), "check the repository name") {
		t.Fatalf("copy from a repository with no publication: %v", err)
	}
}

func latestDigest(t *testing.T, r oci.Ref, a oci.Access) string {
	t.Helper()
	repo, err := oci.Repository(r, a)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := repo.Resolve(context.Background(), oci.LatestTag)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}

// TestRegistryErrorsSayWhatToDo: a push without or with wrong
// credentials, a registry whose CA was not given, one that speaks plain
// HTTP and a repository with no publication each say what happened and
// what to do, once, without the registry's raw error body or nested
// `Get "URL":`.
func TestRegistryErrorsSayWhatToDo(t *testing.T) {
	ctx := context.Background()
	regs := startRegistries(t)
	repoDir, anchor, _ := publishedChannel(t)
	dst := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/stable")
	good := access(t, regs, regs.Basic.Addr)
	if _, err := oci.Push(ctx, repoDir, dst, good); err != nil {
		t.Fatal(err)
	}
	noCreds, badCreds, noCA := good, good, good
	noCreds.Username, noCreds.Password = "", ""
	badCreds.Password = "wrong"
	noCA.CAPEM = ""
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()

	open := func(r oci.Ref, a oci.Access) error {
		rem, err := oci.NewRemote(r, a)
		if err != nil {
			t.Fatal(err)
		}
		c, err := channel.Open(ctx, channel.Config{URL: r.String(), Anchor: anchor, HTTP: rem.HTTPClient()})
		if err == nil {
			c.Close()
		}
		return err
	}
	push := func(a oci.Access) error { _, err := oci.Push(ctx, repoDir, dst, a); return err }
	for _, tc := range []struct {
		name string
		err  error
		want []string
		as   any
	}{
		{"push without credentials", push(noCreds), []string{"asks for credentials", "--registry-auth FILE", "an entry for " + regs.Basic.Addr}, new(*oci.ReachError)},
		{"push with wrong credentials", push(badCreds), []string{"refused the credentials", "--registry-auth"}, new(*oci.ReachError)},
		{"read without the CA", open(dst, noCA), []string{"not signed by a CA sentinel trusts", "--registry-ca FILE"}, new(*oci.ReachError)},
		{"read a plain HTTP server", open(ref(t, "oci://"+strings.TrimPrefix(plain.URL, "http://")+"/sentinel/stable"), oci.Access{}), []string{"answers plain HTTP", "HTTPS only"}, new(*oci.ReachError)},
		{"read a misspelt repository", open(ref(t, "oci://"+regs.Basic.Addr+"/lab2"), good), []string{"no publication tagged latest in oci://" + regs.Basic.Addr + "/lab2: check the repository name"}, new(*oci.NoPublicationError)},
	} {
		msg := fmt.Sprint(tc.err)
		if tc.err == nil || !errors.As(tc.err, tc.as) {
			t.Errorf("%s: %v, want a %T", tc.name, tc.err, tc.as)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %s\nwant %q", tc.name, msg, w)
			}
		}
		if strings.Contains(msg, "map[") || strings.Count(msg, `Get "`) > 0 || strings.Count(msg, "pushing ") > 1 || strings.Contains(msg, "check the channel URL") {
			t.Errorf("%s: raw, repeated or wrong advice in: %s", tc.name, msg)
		}
	}
}

// TestRegistryAdviceNamesTheSettingsTheCommandReads: a channel command
// reads no cluster file, so its advice names its flags only; a run's names
// the flags and the cluster file's keys.
func TestRegistryAdviceNamesTheSettingsTheCommandReads(t *testing.T) {
	ctx := context.Background()
	regs := startRegistries(t)
	repoDir, _, _ := publishedChannel(t)
	dst := ref(t, "oci://"+regs.Basic.Addr+"/sentinel/advice")
	for _, tc := range []struct {
		from       oci.SettingsFrom
		want, dont []string
	}{
		{oci.FlagsOnly, []string{"give them with --registry-auth FILE: a Docker config.json", "check the entry for " + regs.Basic.Addr + " in the file given with --registry-auth"}, []string{"cluster file"}},
		{oci.FlagsOrClusterFile, []string{"give them with --registry-auth FILE, or registry_auth in the cluster file:", "--registry-auth (or registry_auth in the cluster file)"}, nil},
	} {
		good, err := oci.Settings{CAFile: regs.CAFile, AuthFile: regs.AuthFile, From: tc.from}.ForHost(ctx, regs.Basic.Addr)
		if err != nil {
			t.Fatal(err)
		}
		noCreds, badCreds := good, good
		noCreds.Username, noCreds.Password = "", ""
		badCreds.Password = "wrong"
		for i, a := range []oci.Access{noCreds, badCreds} {
			_, err := oci.Push(ctx, repoDir, dst, a)
			msg := fmt.Sprint(err)
			if !strings.Contains(msg, tc.want[i]) {
				t.Errorf("settings from %d: %s\nwant %q", tc.from, msg, tc.want[i])
			}
			for _, d := range tc.dont {
				if strings.Contains(msg, d) {
					t.Errorf("settings from %d: %s\nnames %q, which the command does not read", tc.from, msg, d)
				}
			}
		}
	}
	_, err := oci.Settings{CAFile: filepath.Join(t.TempDir(), "missing-ca.pem"), From: oci.FlagsOnly}.ForHost(ctx, regs.Basic.Addr)
	if msg := fmt.Sprint(err); !strings.Contains(msg, "(--registry-ca)") || strings.Contains(msg, "cluster file") {
		t.Errorf("a missing --registry-ca of a channel command: %s", msg)
	}
}
