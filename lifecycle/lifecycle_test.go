package lifecycle_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/lifecycle"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// inProcess is a transport that runs the node agent in this process: the
// lifecycle is driven without a sentinel binary, an SSH server or a
// subprocess per step.
type inProcess struct {
	node cluster.Node
	mu   *sync.Mutex
	ops  *[]string
}

func (t inProcess) Call(ctx context.Context, op string, in, out any, on func(cluster.Event)) error {
	t.mu.Lock()
	*t.ops = append(*t.ops, t.node.Name+" "+op)
	t.mu.Unlock()
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var req steps.Request
	if err := json.Unmarshal(data, &req); err != nil {
		return err
	}
	agent := &steps.Agent{Node: t.node.Name, Layout: steps.Layout{Root: t.node.Root}, Logf: func(string, ...any) {}}
	res, err := agent.Do(ctx, op, req)
	if err != nil {
		return &cluster.AgentError{Node: t.node.Name, Op: op, Message: err.Error()}
	}
	data, err = json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// recorder is a Printer that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	lines []string
	steps []string
}

func (p *recorder) add(s string) { p.mu.Lock(); p.lines = append(p.lines, s); p.mu.Unlock() }
func (p *recorder) StepStarted(node string, s rollout.Step) {
	p.mu.Lock()
	p.steps = append(p.steps, node+" "+s.ID)
	p.mu.Unlock()
}
func (p *recorder) StepFinished(string, rollout.Step, steps.Result, error) {}
func (p *recorder) Logf(node, format string, args ...any)                  { p.add(fmt.Sprintf(format, args...)) }
func (p *recorder) Transfer(string, rollout.Step, steps.FetchProgress)     {}
func (p *recorder) Notef(format string, args ...any)                       { p.add(fmt.Sprintf(format, args...)) }
func (p *recorder) Warnf(format string, args ...any) {
	p.add("warning: " + fmt.Sprintf(format, args...))
}
func (p *recorder) Textf(format string, args ...any)  { p.add(fmt.Sprintf(format, args...)) }
func (p *recorder) Result(string, any) error          { return nil }
func (p *recorder) JSON() bool                        { return false }
func (p *recorder) Preflight(*preflight.Report) error { return nil }
func (p *recorder) Plan(plan *rollout.Plan) error {
	p.add("plan " + plan.To)
	p.add("plan artifacts from " + plan.Source)
	return nil
}
func (p *recorder) Confirm(_ *rollout.Plan, _, refusal string) error {
	return &lifecycle.UsageError{Msg: refusal}
}
func (p *recorder) Close() {}
func (p *recorder) said(sub string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

type world struct {
	lab *fixtures.Lab
	inv *cluster.Inventory
	env lifecycle.Env
	out *recorder
	ops []string
}

// newWorld is a one-node lab on 3.4.1 whose channel is read from disk
// (file://) and whose node agent runs in this process.
func newWorld(t *testing.T) *world {
	t.Helper()
	lab, err := fixtures.CreateLab(context.Background(), fixtures.LabOptions{Dir: t.TempDir(), Nodes: 1, Release: "3.4.1"})
	if err != nil {
		t.Fatal(err)
	}
	return worldOf(t, lab)
}

func worldOf(t *testing.T, lab *fixtures.Lab) *world {
	t.Helper()
	inv, err := cluster.LoadInventory(lab.ClusterFile)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{lab: lab, inv: inv, out: &recorder{}}
	var mu sync.Mutex
	w.env = lifecycle.Env{Printer: w.out, Dial: func(inv *cluster.Inventory) (map[string]cluster.Transport, error) {
		tr := map[string]cluster.Transport{}
		for _, n := range inv.Nodes {
			tr[n.Name] = inProcess{node: n, mu: &mu, ops: &w.ops}
		}
		return tr, nil
	}}
	return w
}

func (w *world) options() lifecycle.Options {
	ignore, _ := preflight.ParseIgnore("all", preflight.Names()) // the test machine's own disk and memory are not the point
	return lifecycle.Options{Command: []string{"sentinel", "test"}, Version: "dev", Yes: true, NoSelfUpdate: true, Ignore: ignore}
}

func (w *world) release(t *testing.T) string {
	t.Helper()
	tr, _ := w.env.Dial(w.inv)
	var res steps.Result
	if err := tr[w.inv.Core().Name].Call(context.Background(), steps.OpFacts, steps.Request{}, &res, nil); err != nil {
		t.Fatal(err)
	}
	if res.Facts == nil || res.Facts.Record == nil {
		t.Fatalf("no node record: %+v", res.Facts)
	}
	return res.Facts.Record.Release
}

// An upgrade, a dry run and a patch install go through the one lifecycle:
// the same phases, the same journal, different plans and words.
func TestLifecycleUpgradeAndPatchInProcess(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)

	dry := w.options()
	dry.DryRun = true
	if err := lifecycle.Do(ctx, w.inv, w.env, dry, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if got := w.release(t); got != "3.4.1" || !w.out.said("plan 3.4.2") {
		t.Fatalf("dry run: node on %s, plan shown: %v", got, w.out.said("plan 3.4.2"))
	}
	if last, _, _ := (rollout.Runs{Dir: w.inv.State()}).Latest(); last != nil {
		t.Fatalf("a dry run journaled run %s", last.ID)
	}

	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatalf("upgrade: %v\n%v", err, w.out.lines)
	}
	if got := w.release(t); got != "3.4.2" || !w.out.said("Cluster upgraded to 3.4.2") {
		t.Fatalf("after the upgrade the node is on %s; said %v", got, w.out.lines)
	}
	last, _, err := rollout.Runs{Dir: w.inv.State()}.Latest()
	if err != nil || last == nil || last.Status != "succeeded" || last.Plan.To != "3.4.2" {
		t.Fatalf("journal: %+v %v", last, err)
	}

	// Again: nothing to do, nothing journaled.
	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil || !w.out.said("already on 3.4.2") {
		t.Fatalf("second upgrade: %v %v", err, w.out.lines)
	}

	// A patch run: same phases, its own plan (and a staging of artifacts).
	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Patch(lifecycle.PatchOptions{Kind: patches.KindInstall})); err != nil {
		t.Fatalf("patch install: %v\n%v", err, w.out.lines)
	}
	if !w.out.said("Installed ") {
		t.Fatalf("patch install said %v", w.out.lines)
	}
	st, err := lifecycle.PatchStatus(ctx, w.inv, w.env, w.options())
	if err != nil || st.Available() != 0 {
		t.Fatalf("patch status after install: %d available, %v", st.Available(), err)
	}
	// Reinstall: the same run again where node.json records the patch.
	name := st.Patches[0].Name
	before := len(w.out.steps)
	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Patch(lifecycle.PatchOptions{Kind: patches.KindInstall, Names: []string{name}, Reinstall: true})); err != nil {
		t.Fatalf("patch reinstall: %v", err)
	}
	if len(w.out.steps) == before {
		t.Fatalf("reinstalling %s ran no step", name)
	}
	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Patch(lifecycle.PatchOptions{Kind: patches.KindRevert})); err != nil {
		t.Fatalf("patch revert: %v", err)
	}
	if st, err := lifecycle.PatchStatus(ctx, w.inv, w.env, w.options()); err != nil || st.Available() == 0 {
		t.Fatalf("patch status after revert: %v", err)
	}
}

// A new run is refused while one is unfinished, naming the command that
// finishes it; resuming with the wrong kind of job is refused too.
func TestLifecycleUnfinishedRunRefusesANewOne(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	o := w.options()
	o.Skip = []string{"execute", "result"} // plan and journal nothing: start a run by hand below
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatal(err)
	}
	runs := rollout.Runs{Dir: w.inv.State()}
	j, _, err := runs.Start("r1", []string{"sentinel", "upgrade"}, "dev", &rollout.Plan{From: "3.4.1", To: "3.4.2"})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	err = lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Patch(lifecycle.PatchOptions{Kind: patches.KindInstall}))
	var ue *lifecycle.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "sentinel upgrade --resume") {
		t.Fatalf("a patch run beside an unfinished upgrade: %v", err)
	}
	resume := w.options()
	resume.Resume = true
	err = lifecycle.Do(ctx, w.inv, w.env, resume, lifecycle.Patch(lifecycle.PatchOptions{Kind: patches.KindInstall}))
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "is an upgrade, not a patch run") {
		t.Fatalf("patch --resume of an upgrade: %v", err)
	}
}

// Phases are named; a name that is none is refused before anything runs.
func TestRunnerRefusesUnknownPhase(t *testing.T) {
	ran := false
	r := &lifecycle.Runner{Phases: []lifecycle.Phase{{Name: "a", Do: func(*lifecycle.Run, context.Context) error { ran = true; return nil }}}, Skip: []string{"b"}}
	err := r.Run(context.Background(), &lifecycle.Run{})
	if err == nil || ran || !strings.Contains(err.Error(), `no phase "b"`) {
		t.Fatalf("unknown phase: %v, ran %v", err, ran)
	}
	r.Skip = []string{"a"}
	if err := r.Run(context.Background(), &lifecycle.Run{}); err != nil || ran {
		t.Fatalf("skipped phase ran: %v %v", err, ran)
	}
	names := lifecycle.Phases()
	var got []string
	for _, p := range names {
		got = append(got, p.Name)
	}
	if want := "lock source self-update nodes plan preflight stage confirm detach execute result"; strings.Join(got, " ") != want {
		t.Fatalf("phases %q, want %q", got, want)
	}
}

// Download-only goes through the same lifecycle: it fills a cache daemon
// (in process, on loopback, over TLS with the certificate the cluster file
// pins) and changes no node; then an upgrade runs from that cache with the
// upstream's files gone.
func TestLifecycleDownloadOnlyThenUpgradeFromCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lab, err := fixtures.CreateLab(ctx, fixtures.LabOptions{Dir: t.TempDir(), Nodes: 1, Release: "3.4.1"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := fixtures.ServeUpstream(lab.UpstreamDir, "127.0.0.1:0") // the daemon fetches over HTTP
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if err := lab.SetUpstream(up.URL, 0); err != nil {
		t.Fatal(err)
	}
	w := worldOf(t, lab)
	cacheAddr := startCacheDaemon(ctx, t, w, up.URL)
	t.Setenv("SENTINEL_CACHE_TOKEN", "t0k3n")

	o := w.options()
	o.CacheAddr = cacheAddr
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatalf("download-only: %v\n%v", err, w.out.lines)
	}
	if got := w.release(t); got != "3.4.1" || !w.out.said("The cache holds everything for 3.4.2") {
		t.Fatalf("download-only changed the node (%s) or said %v", got, w.out.lines)
	}
	for _, op := range w.ops {
		if !strings.HasSuffix(op, " facts") && !strings.HasSuffix(op, " probe") && !strings.HasSuffix(op, " clock") {
			t.Fatalf("download-only ran %q on a node", op)
		}
	}

	// The upstream goes away: the upgrade reads everything from the cache.
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatalf("upgrade from the cache: %v\n%v", err, w.out.lines)
	}
	if got := w.release(t); got != "3.4.2" {
		t.Fatalf("after the upgrade from the cache the node is on %s", got)
	}
}

// startCacheDaemon serves an empty cache daemon (TLS, pinned in w's
// cluster file) on the core node, filled from upstream; its address.
func startCacheDaemon(ctx context.Context, t *testing.T, w *world, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	cert, err := fixtures.NewTLSCert(fixtures.CertSpec{Subject: "cache", IPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	w.inv.Cache = &cluster.CacheNode{Node: w.inv.Core().Name, Dir: dir, TLSFingerprint: cert.Fingerprint}
	// The daemon holds the channel's root and the upstream: prefetch is by name.
	root, err := os.ReadFile(w.lab.TrustRoot)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := cache.NewServer(cache.ServerConfig{Store: &cache.Store{Dir: dir}, ChannelDir: filepath.Join(dir, "channel"), Token: "t0k3n",
		Root: root, Upstream: upstream, TLS: &tls.Config{Certificates: []tls.Certificate{cert.TLS()}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, "127.0.0.1:0", func(a net.Addr) { addr <- a }) }()
	select {
	case a := <-addr:
		return a.String()
	case err := <-served:
		t.Fatal(err)
	}
	return ""
}

// A cluster whose channel is a registry has nothing to fill: the refusal
// prints the copy into a registry of the operator's own with the cluster
// file's registry settings, ready to run.
func TestLifecycleRegistryChannelDownloadOnlyKeepsRegistrySettings(t *testing.T) {
	w := newWorld(t)
	w.inv.Channel = "oci://127.0.0.1:9/sentinel/stable" // never reached
	w.inv.RegistryCA, w.inv.RegistryAuth = "/etc/sentinel/registry-ca.pem", "/etc/sentinel/registry-auth.json"
	err := lifecycle.Do(context.Background(), w.inv, w.env, w.options(), lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.2"}))
	if err == nil || !strings.Contains(err.Error(), "--registry-auth /etc/sentinel/registry-auth.json --registry-ca /etc/sentinel/registry-ca.pem") {
		t.Fatalf("download-only on a registry channel: %v", err)
	}
}

// A cluster with a cache section and a registry mirror: download-only
// cannot fill the cache node, so its advice, and that of the empty cache
// node, is the run with --no-cache, never --download-only again.
func TestLifecycleCacheAndRegistryMirrorAdviseNoCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWorld(t)
	cacheAddr := startCacheDaemon(ctx, t, w, "http://127.0.0.1:9/")
	t.Setenv("SENTINEL_CACHE_TOKEN", "t0k3n")
	w.inv.Mirrors = []string{"oci://127.0.0.1:9/sentinel/lab"} // never reached

	o := w.options()
	o.CacheAddr = cacheAddr // as the cluster file's cache section makes it
	err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.2"}))
	if err == nil || !strings.Contains(err.Error(), "sentinel channel copy") || !strings.Contains(err.Error(), "then run `sentinel upgrade 3.4.2 --no-cache`") {
		t.Fatalf("download-only with a cache section and a registry mirror: %v", err)
	}
	err = lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"}))
	var miss *source.CacheMissError
	if !errors.As(err, &miss) || !strings.Contains(err.Error(), "Run `sentinel upgrade 3.4.2 --no-cache`") || strings.Contains(err.Error(), "fill it first") {
		t.Fatalf("upgrade from the empty cache node of a cluster reading a registry: %v", err)
	}
	// A cluster on the release already: nothing to copy, and no command
	// that would copy it anyway.
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.1"})); err != nil || !w.out.said("nothing to copy into the registry") {
		t.Fatalf("download-only of the release the cluster is on: %v", err)
	}
	if got := w.release(t); got != "3.4.1" {
		t.Fatalf("the refused runs changed the node: %s", got)
	}
}

// Plain HTTP to the cache daemon only when the cluster file asks for it,
// with a warning on every run; a cluster file that says nothing about how
// to verify the daemon is refused before anything reaches it.
func TestLifecyclePlainHTTPCacheOnlyWhenAsked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lab, err := fixtures.CreateLab(ctx, fixtures.LabOptions{Dir: t.TempDir(), Nodes: 1, Release: "3.4.1"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := fixtures.ServeUpstream(lab.UpstreamDir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if err := lab.SetUpstream(up.URL, 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, err := os.ReadFile(lab.TrustRoot)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := cache.NewServer(cache.ServerConfig{Store: &cache.Store{Dir: dir}, ChannelDir: filepath.Join(dir, "channel"), Token: "t0k3n", PlainHTTP: true,
		Root: root, Upstream: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	go func() { _ = srv.Serve(ctx, "127.0.0.1:0", func(a net.Addr) { addr <- a }) }()
	cacheAddr := (<-addr).String()
	t.Setenv("SENTINEL_CACHE_TOKEN", "t0k3n")

	w := worldOf(t, lab)
	w.inv.Cache = &cluster.CacheNode{Node: w.inv.Core().Name, Dir: dir}
	o := w.options()
	o.CacheAddr = cacheAddr
	err = lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.2"}))
	var ie *cluster.InventoryError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "nothing says how to verify the cache daemon") {
		t.Fatalf("no TLS setting: %v, want the cluster file refused", err)
	}

	w.inv.Cache.PlainHTTP = true
	for run := 0; run < 2; run++ {
		w.out = &recorder{}
		w.env.Printer = w.out
		if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.DownloadOnly(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
			t.Fatalf("download-only over plain HTTP (plain_http: true): %v\n%v", err, w.out.lines)
		}
		if !w.out.said("warning: the cache daemon " + cacheAddr + " is reached over plain HTTP (cache.plain_http in ") {
			t.Errorf("run %d: no warning about plain HTTP: %v", run+1, w.out.lines)
		}
	}
}

// A run started with --mirror (a registry, with --registry-ca and
// --registry-auth) and stopped is resumed from the same registry, though
// the cluster file lists no mirror, and says so. Its dry run names the
// registry as where the artifacts come from, not the upstream.
func TestLifecycleResumeKeepsTheMirrorsItStartedWith(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	mirror, regs := registryMirror(t, w)

	first := *w.inv // as the command line makes it
	first.Mirrors, first.RegistryCA, first.RegistryAuth = []string{mirror}, regs.CAFile, regs.AuthFile
	// The dry run names where the artifacts come from: the registry.
	o := w.options()
	o.DryRun = true
	if err := lifecycle.Do(ctx, &first, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatal(err)
	}
	if !w.out.said("plan artifacts from " + mirror) {
		t.Errorf("the dry run read from %s says otherwise:\n%s", mirror, strings.Join(w.out.lines, "\n"))
	}
	o = w.options()
	o.Command = []string{"sentinel", "upgrade", "3.4.2", "--mirror", mirror, "--registry-ca", regs.CAFile, "--registry-auth=" + regs.AuthFile}
	stop := make(chan struct{})
	close(stop)
	env := w.env
	env.Stopping = stop
	var ir *rollout.InterruptedError
	if err := lifecycle.Do(ctx, &first, env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); !errors.As(err, &ir) {
		t.Fatalf("the stopped run: %v\n%v", err, w.out.lines)
	}

	o = w.options()
	o.Command, o.Resume = []string{"sentinel", "upgrade", "--resume"}, true
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{})); err != nil {
		t.Fatalf("resume: %v\n%v", err, w.out.lines)
	}
	if !w.out.said("artifacts from "+mirror) || !w.out.said("was started with --mirror "+mirror+" --registry-ca "+regs.CAFile+" --registry-auth "+regs.AuthFile) {
		t.Errorf("the resume did not say it reads %s as the run started:\n%s", mirror, strings.Join(w.out.lines, "\n"))
	}
	if got := w.release(t); got != "3.4.2" {
		t.Fatalf("after the resume the node is on %s", got)
	}
}

// A mirror serving another channel is named when refused, with where it
// was given; when no source answers, every one tried is listed with where
// it was given and why, in the error and in the warning of a run that
// falls back to the channel kept at an earlier run.
func TestLifecycleNamesTheSourcesOfTheChannel(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	other, err := fixtures.ServeChannel(t.TempDir(), fixtures.Options{}) // other keys
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	o := w.options()
	o.DryRun = true
	o.Command = []string{"sentinel", "upgrade", "3.4.2", "--mirror", other.Upstream.URL}
	inv := *w.inv
	inv.Mirrors = []string{other.Upstream.URL}
	err = lifecycle.Do(ctx, &inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"}))
	var ce *channel.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "reading the channel from the mirror "+other.Upstream.URL+" (--mirror): channel document") {
		t.Fatalf("a mirror serving another channel: %v", err)
	}

	// Every source stops: a cluster with no kept channel is refused, one
	// whose last run kept it warns and reads that.
	fresh := newWorld(t)
	if err := lifecycle.Do(ctx, w.inv, w.env, w.options(), lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []*world{fresh, w} {
		dead := *tc.inv
		dead.Channel = "http://127.0.0.1:9/upstream/"
		dead.Mirrors = []string{"http://127.0.0.1:9/first/", "http://127.0.0.1:9/second/"}
		o := tc.options()
		o.DryRun = true
		err := lifecycle.Do(ctx, &dead, tc.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.3"}))
		said := fmt.Sprintf("%v\n%s", err, strings.Join(tc.out.lines, "\n"))
		if tc == fresh && !errors.As(err, new(*source.UnavailableError)) {
			t.Errorf("no source answering and nothing kept: %v, want a *source.UnavailableError", err)
		}
		if tc == w && !tc.out.said("warning: no source of the channel answers (") {
			t.Errorf("no source answering, the channel kept: no warning in\n%s", said)
		}
		for _, want := range []string{"no source of the channel answers",
			"http://127.0.0.1:9/first/ (the mirrors in the cluster file) did not answer: cannot read http://127.0.0.1:9/first/",
			"http://127.0.0.1:9/second/ (the mirrors in the cluster file) did not answer: cannot read",
			"http://127.0.0.1:9/upstream/ (the channel URL in the cluster file) did not answer: cannot read http://127.0.0.1:9/upstream/"} {
			if !strings.Contains(said, want) {
				t.Errorf("no source answering: want %q in\n%s", want, said)
			}
		}
		if strings.Contains(said, `Get "`) {
			t.Errorf("nested HTTP client errors: %s", said)
		}
		// What happened at each source on a line of its own, the advice once.
		if strings.Contains(said, "and that it is reachable") {
			t.Errorf("advice repeated per source: %s", said)
		}
		if tc == fresh {
			msg := err.Error()
			for _, src := range []string{"first/", "second/", "upstream/"} {
				if !strings.Contains(msg, "\n  http://127.0.0.1:9/"+src+" (") {
					t.Errorf("no source answering: %s not on a line of its own in\n%s", src, msg)
				}
			}
			if strings.Count(msg, "reachable") != 1 || !strings.HasSuffix(msg, "or give a mirror that runs with --mirror or in the cluster file's mirrors.") {
				t.Errorf("no source answering: want the advice once, last, in\n%s", msg)
			}
		}
	}
}

// httpMirror serves the lab's channel over loopback HTTP, as a mirror.
func httpMirror(t *testing.T, w *world) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(w.lab.UpstreamDir)))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// registryMirror pushes the world's channel to a registry with TLS and
// basic auth (skipping the test where there is none) and returns it as a
// mirror, with the registries' CA and auth files.
func registryMirror(t *testing.T, w *world) (string, *fixtures.RegistrySet) {
	t.Helper()
	regs := fixtures.TestRegistrySet(t)
	mirror := "oci://" + regs.Basic.Addr + "/sentinel/lab"
	ref, _ := oci.ParseRef(mirror)
	ctx := context.Background()
	acc, err := oci.Settings{CAFile: regs.CAFile, AuthFile: regs.AuthFile}.ForHost(ctx, ref.Host)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Push(ctx, w.lab.UpstreamDir, ref, acc); err != nil {
		t.Fatal(err)
	}
	return mirror, regs
}

// A run stopped after reading an http mirror is resumed from it: the
// resuming line names the mirror, as the first run's plan did, not the
// upstream.
func TestLifecycleResumeNamesTheHTTPMirror(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	mirror := httpMirror(t, w)
	first := *w.inv
	first.Mirrors = []string{mirror}
	o := w.options()
	o.Command = []string{"sentinel", "upgrade", "3.4.2", "--mirror", mirror}
	stop := make(chan struct{})
	close(stop)
	env := w.env
	env.Stopping = stop
	var ir *rollout.InterruptedError
	if err := lifecycle.Do(ctx, &first, env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); !errors.As(err, &ir) {
		t.Fatalf("the stopped run: %v\n%v", err, w.out.lines)
	}
	w.out.lines = nil
	o = w.options()
	o.Command, o.Resume = []string{"sentinel", "upgrade", "--resume"}, true
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{})); err != nil {
		t.Fatalf("resume: %v\n%v", err, w.out.lines)
	}
	if !w.out.said("; artifacts from "+mirror) || w.out.said("artifacts from upstream") {
		t.Errorf("the resuming line does not name the mirror %s:\n%s", mirror, strings.Join(w.out.lines, "\n"))
	}
}

// The window's command a staging run ends with repeats every source flag
// staging was given: --mirror and the registry settings.
func TestLifecycleStageHintRepeatsTheSourceFlags(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	mirror := httpMirror(t, w)
	ca, auth := filepath.Join(t.TempDir(), "ca.pem"), filepath.Join(t.TempDir(), "auth.json")
	inv := *w.inv // as the command line makes it
	inv.Mirrors, inv.RegistryCA, inv.RegistryAuth = []string{mirror}, ca, auth
	o := w.options()
	o.Command = []string{"sentinel", "upgrade", "3.4.2", "--stage", "--mirror", mirror, "--registry-ca", ca, "--registry-auth=" + auth}
	if err := lifecycle.Do(ctx, &inv, w.env, o, lifecycle.Stage(lifecycle.UpgradeOptions{Target: "3.4.2"}, 8)); err != nil {
		t.Fatalf("staging: %v\n%v", err, w.out.lines)
	}
	want := "`sentinel upgrade 3.4.2 --mirror " + mirror + " --registry-ca " + ca + " --registry-auth " + auth + "`"
	if !w.out.said(want) {
		t.Errorf("the window's command: want %s in\n%s", want, strings.Join(w.out.lines, "\n"))
	}
}

// A run started with relative --registry-ca and --registry-auth in one
// directory is resumed from another: the resume reads the files the run
// was given, not the same names in its own directory.
func TestLifecycleResumeElsewhereReadsTheRegistryFilesGiven(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	mirror, regs := registryMirror(t, w)
	dirA, dirB := t.TempDir(), t.TempDir()
	for from, to := range map[string]string{regs.CAFile: "ca.pem", regs.AuthFile: "auth.json"} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirA, to), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Chdir(dirA)
	first := *w.inv // as the command line makes it
	first.Mirrors, first.RegistryCA, first.RegistryAuth = []string{mirror}, filepath.Join(dirA, "ca.pem"), filepath.Join(dirA, "auth.json")
	o := w.options()
	o.Command = []string{"sentinel", "upgrade", "3.4.2", "--mirror", mirror, "--registry-ca", "ca.pem", "--registry-auth=auth.json"}
	stop := make(chan struct{})
	close(stop)
	env := w.env
	env.Stopping = stop
	var ir *rollout.InterruptedError
	if err := lifecycle.Do(ctx, &first, env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{Target: "3.4.2"})); !errors.As(err, &ir) {
		t.Fatalf("the stopped run: %v\n%v", err, w.out.lines)
	}

	t.Chdir(dirB)
	o = w.options()
	o.Command, o.Resume = []string{"sentinel", "upgrade", "--resume"}, true
	if err := lifecycle.Do(ctx, w.inv, w.env, o, lifecycle.Upgrade(lifecycle.UpgradeOptions{})); err != nil {
		t.Fatalf("resume from another directory: %v\n%v", err, w.out.lines)
	}
	if !w.out.said("--registry-ca " + filepath.Join(dirA, "ca.pem") + " --registry-auth " + filepath.Join(dirA, "auth.json")) {
		t.Errorf("the resume does not read the files of %s:\n%s", dirA, strings.Join(w.out.lines, "\n"))
	}
	if got := w.release(t); got != "3.4.2" {
		t.Fatalf("after the resume the node is on %s", got)
	}
}
