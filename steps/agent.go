package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
)

// Agent carries out operations on the node it runs on.
type Agent struct {
	Node   string
	Layout Layout
	Logf   func(format string, args ...any)
	// Progress, if set, hears how downloads go.
	Progress func(FetchProgress)
}

// maxUnpackedBytes bounds what one artifact may unpack to.
const maxUnpackedBytes = 32 << 30

// Do runs one operation. Only one changing operation runs on a node at a
// time: a second agent waits for the first.
func (a *Agent) Do(ctx context.Context, op string, req Request) (Result, error) {
	for _, o := range operations {
		if o.name != op {
			continue
		}
		if err := o.checkSubject(req); err != nil {
			return Result{}, err
		}
		if !o.unlocked {
			unlock, err := a.lock()
			if err != nil {
				return Result{}, err
			}
			defer unlock()
		}
		return o.run(a, ctx, req)
	}
	return Result{}, fmt.Errorf("unknown operation %q (known: %s)", op, strings.Join(Ops, ", "))
}

// operation is one thing the agent does on request.
type operation struct {
	name string
	// unlocked: the operation only reads, and takes no lock, so that
	// looking at a node never writes to it and never waits behind a hung
	// step.
	unlocked bool
	// component, version: the request must name the component (and the
	// release) the step acts on, for they make its paths: an empty name
	// would have it act on <root>/code itself. release: it must name the
	// cluster release it records.
	component, version, release bool
	run                         func(a *Agent, ctx context.Context, req Request) (Result, error)
}

// checkSubject refuses a request that does not name what o acts on, or
// names it with a path in it.
func (o operation) checkSubject(req Request) error {
	switch {
	case o.component && !release.ValidComponentName(req.Component):
		return fmt.Errorf("bad %s request: component %q is not a component name; nothing was done%s", o.name, req.Component, senderBug)
	case o.version && req.Version == "", o.component && req.Version != "" && !pathSafe(req.Version):
		return fmt.Errorf("bad %s request for %s: version %q is not a release version; nothing was done%s", o.name, req.Component, req.Version, senderBug)
	case o.release && req.Release == "":
		return fmt.Errorf("bad %s request: it names no release to record; nothing was done%s", o.name, senderBug)
	}
	return nil
}

// senderBug: only sentinel's orchestrator sends steps, from manifests it
// validated, so a bad one is its fault, not the node's.
const senderBug = " (the orchestrator that sent it has a bug: please report it with this message)"

// pathSafe: s is one path element, never a way out of its directory.
func pathSafe(s string) bool {
	return s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// operations is every operation the agent accepts: Ops lists their names.
var operations = []operation{
	{name: OpFacts, unlocked: true, run: func(a *Agent, _ context.Context, _ Request) (Result, error) {
		f, err := a.facts()
		return Result{Facts: f}, err
	}},
	{name: OpFetch, run: (*Agent).fetch},
	{name: OpBackup, run: (*Agent).backup},
	{name: OpInstall, component: true, version: true, run: (*Agent).install},
	{name: OpStop, component: true, run: (*Agent).stop},
	{name: OpMigrate, component: true, version: true, run: (*Agent).migrate},
	{name: OpSwitch, component: true, run: (*Agent).switchTo},
	{name: OpStart, component: true, version: true, run: (*Agent).start},
	{name: OpHealth, component: true, version: true, run: (*Agent).health},
	{name: OpCommit, release: true, run: (*Agent).commit},
	{name: OpRestart, run: (*Agent).restart},
	{name: OpPrune, run: (*Agent).prune},
	{name: OpPruneCache, run: (*Agent).pruneCache},
	{name: OpCheckCache, run: (*Agent).checkCache},
	// A probe reads only; and it must not wait behind a hung step.
	{name: OpProbe, unlocked: true, run: func(a *Agent, ctx context.Context, req Request) (Result, error) {
		if err := os.MkdirAll(a.Layout.TmpDir(), 0o755); err != nil {
			return Result{}, err
		}
		var pr ProbeRequest
		if req.Probe != nil {
			pr = *req.Probe
		}
		p, err := a.probe(ctx, pr)
		return Result{Probe: p}, err
	}},
	{name: OpRetire, run: (*Agent).retire},
	{name: OpUnretire, run: (*Agent).unretire},
	{name: OpRecordPatch, run: (*Agent).recordPatch},
	// Reads the clock only: no lock, nothing written.
	{name: OpClock, unlocked: true, run: func(*Agent, context.Context, Request) (Result, error) {
		return Result{Clock: clockNow().UnixNano()}, nil
	}},
	// The lease is the cluster's, not this node's steps': never behind one.
	{name: OpLease, unlocked: true, run: (*Agent).lease},
	{name: OpAction, run: (*Agent).action},
	{name: OpReboot, run: (*Agent).reboot},
	// Asked over and over while a node reboots: reads only.
	{name: OpBootState, unlocked: true, run: (*Agent).bootState},
}

func opNames() []string {
	names := make([]string, len(operations))
	for i, o := range operations {
		names[i] = o.name
	}
	return names
}

// checkCache verifies, changing nothing, that the node cache holds the
// artifacts req.Keep lists, intact.
func (a *Agent) checkCache(ctx context.Context, req Request) (Result, error) {
	store := &cache.Store{Dir: a.Layout.CacheDir()}
	var res Result
	for _, d := range req.Keep {
		switch {
		case !store.Has(d):
			res.Missing = append(res.Missing, d)
		case !intact(ctx, store, d):
			res.Damaged = append(res.Damaged, d)
		}
	}
	return res, nil
}

// prune drops the node-cache artifacts that req.Keep does not list.
func (a *Agent) prune(_ context.Context, req Request) (Result, error) {
	res, err := pruned((&cache.Store{Dir: a.Layout.CacheDir()}).PruneExcept(req.Keep, false))
	if err != nil {
		return res, err
	}
	removed, err := a.pruneReleases(req.KeepReleases)
	if len(removed) > 0 {
		res.Changed = true
		res.Note = strings.TrimPrefix(res.Note+"; removed old unpacked releases: "+strings.Join(removed, ", "), "; ")
	}
	return res, err
}

// pruneCache drops, from the cache node's store, what no release from
// req.KeepFrom on needs. It is the clean-up after a finished upgrade: a
// failure is reported, never a reason to leave the run open.
func (a *Agent) pruneCache(_ context.Context, req Request) (Result, error) {
	if !filepath.IsAbs(req.CacheDir) || !filepath.IsAbs(req.ChannelDir) {
		return Result{Note: fmt.Sprintf("cache not pruned: cache_dir %q and channel dir %q must be absolute paths", req.CacheDir, req.ChannelDir)}, nil
	}
	res, err := pruned((&cache.Store{Dir: req.CacheDir}).Prune(req.ChannelDir, req.KeepFrom, false, false))
	if err != nil {
		return Result{Note: fmt.Sprintf("cache not pruned: %v; run `sentinel cache prune --dir %s --keep-from %s` later", err, req.CacheDir, req.KeepFrom)}, nil
	}
	return res, nil
}

func (a *Agent) lock() (func(), error) {
	p := a.Layout.AgentLock()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	ok, err := durable.TryLock(f, true)
	if !ok && err == nil {
		// Another agent works on this node (a stale one from a killed run
		// finishes its hook first). Say so, then wait.
		a.logf("waiting for another sentinel agent on this node to finish (lock %s)", p)
		err = durable.Lock(f, true)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	if err := os.MkdirAll(a.Layout.TmpDir(), 0o755); err != nil {
		f.Close()
		return nil, err
	}
	a.reapHookLeftovers()
	return func() { f.Close() }, nil
}

func (a *Agent) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

func (a *Agent) facts() (*Facts, error) {
	f := &Facts{Node: a.Node, Root: a.Layout.Root, Current: map[string]string{}}
	rec, err := ReadRecord(a.Layout.Root)
	if err != nil {
		f.RecordError = err.Error()
	} else {
		f.Record = rec
	}
	entries, err := os.ReadDir(filepath.Join(a.Layout.Root, "code"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if v, err := a.currentVersion(e.Name()); err == nil && v != "" {
			f.Current[e.Name()] = v
		}
	}
	entries2, err := (&cache.Store{Dir: a.Layout.CacheDir()}).List()
	if err != nil {
		return nil, err
	}
	for _, e := range entries2 {
		f.Cached = append(f.Cached, e.Digest)
	}
	return f, nil
}

// currentVersion is the release the component's current link points at, or
// "" when it has none.
func (a *Agent) currentVersion(c string) (string, error) {
	target, err := os.Readlink(a.Layout.Current(c))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return filepath.Base(target), nil
}

func (a *Agent) fetch(ctx context.Context, req Request) (Result, error) {
	store := &cache.Store{Dir: a.Layout.CacheDir()}
	if a.Progress != nil {
		store.Progress = func(p cache.TransferProgress) {
			a.Progress(FetchProgress{Digest: p.Digest, URL: p.URL, Done: p.Done, Total: p.Total, Rate: p.Rate, Retries: p.Retries, Final: p.Final, Failed: p.Err != nil})
		}
	}
	// A cached file may have been damaged since it was verified: check it
	// again (cheap next to a download) and fetch it anew if it is bad.
	if store.Has(req.Artifact.SHA256) {
		bad, err := store.VerifyEntry(ctx, req.Artifact.SHA256)
		if err != nil {
			return Result{}, err
		}
		if bad != nil {
			a.logf("%s: the cached artifact hashes to %s, not %s: quarantined as %s; downloading it again", req.Component, bad.Got, bad.Digest, bad.QuarantinedAs)
		}
	}
	if req.Offline {
		if !store.Has(req.Artifact.SHA256) {
			return Result{}, fmt.Errorf("%s %s (sha256 %s) is not in the node cache, and --skip-download forbids downloading it: run without --skip-download, or fill the cache first", req.Component, req.Version, req.Artifact.SHA256)
		}
		return Result{Note: "in the node cache, verified"}, nil
	}
	srcs := append([]FetchSource{{URL: req.Artifact.URL, Direct: req.Direct, CachePeer: req.CachePeer, Registry: req.Registry}}, req.Fallbacks...)
	if len(srcs) > 1 {
		// A source that stopped is passed over after a few attempts, not
		// the default's minute of backoff: the next one resumes the
		// partial download.
		store.MaxAttempts = fallbackAttempts
	}
	var passed, why []string
	for i, src := range srcs {
		hc, err := src.client(req.Proxy)
		if err != nil {
			return Result{}, err
		}
		store.HTTP = hc
		got, err := store.Fetch(ctx, src.URL, req.Artifact.SHA256, req.Artifact.Size)
		if hc != nil {
			// A session agent (the local transport's) lives for many
			// steps: this step's connections end with it.
			hc.CloseIdleConnections()
		}
		if err != nil && i < len(srcs)-1 && passOver(ctx, err) {
			a.logf("%s %s: %s did not serve it (%v): fetching from %s, the next source in order", req.Component, req.Version, redact(src.URL), err, redact(srcs[i+1].URL))
			passed = append(passed, redact(src.URL))
			why = append(why, fmt.Sprintf("%s: %v", redact(src.URL), err))
			continue
		}
		if err != nil && len(why) > 0 {
			// The last source's error, and what the others said: the
			// first one's may be the cause to fix.
			return Result{}, fmt.Errorf("%w (tried before it, in order: %s)", err, strings.Join(why, "; "))
		}
		if err != nil {
			return Result{}, err
		}
		note := "already in the node cache"
		if got {
			note = fmt.Sprintf("%s downloaded and verified", preflight.FormatBytes(req.Artifact.Size))
		}
		if len(passed) > 0 {
			note += fmt.Sprintf(" from %s (%s did not serve it)", redact(src.URL), strings.Join(passed, ", "))
		}
		return Result{Changed: got, Note: note}, nil
	}
	return Result{}, errors.New("no source to fetch from") // unreachable: srcs holds the request's own
}

// fallbackAttempts: attempts without progress before the next source.
const fallbackAttempts = 3

// passOver says whether a fetch error lets the next source be tried: the
// source did not answer, failed or lacks the artifact. Bytes other than
// signed are a refusal, never passed over; a cancelled run stops.
func passOver(ctx context.Context, err error) bool {
	var dm *cache.DigestMismatchError
	var sm *cache.SizeMismatchError
	var ce *cache.CertError
	return ctx.Err() == nil && !errors.As(err, &dm) && !(errors.As(err, &sm) && sm.Got > sm.Want) && !errors.As(err, &ce)
}

// redact is a source's URL without credentials, for the log.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// client is how the agent reaches src: the cache daemon or a registry
// directly, with what the orchestrator sent, anything else through the
// operator's proxy when one is set.
func (src FetchSource) client(proxy *release.ProxySettings) (*http.Client, error) {
	switch {
	case src.Registry != nil:
		u, err := url.Parse(src.URL)
		if err != nil {
			return nil, fmt.Errorf("the registry URL sent by the orchestrator: %w", err)
		}
		c, err := src.Registry.HTTPClient(u.Host)
		if err != nil {
			return nil, fmt.Errorf("the registry settings sent by the orchestrator: %w", err)
		}
		return c, nil
	case src.CachePeer != nil:
		c, err := src.CachePeer.HTTPClient()
		if err != nil {
			return nil, fmt.Errorf("the cache daemon's certificate settings sent by the orchestrator: %w", err)
		}
		return c, nil
	case src.Direct:
		return cache.DirectHTTP, nil
	case proxy != nil:
		return proxiedHTTP(*proxy), nil
	}
	return nil, nil
}

func (a *Agent) backup(_ context.Context, req Request) (Result, error) {
	dst := a.Layout.BackupDir(req.BackupID)
	if _, err := os.Stat(dst); err == nil {
		return Result{Note: "backup exists: " + dst}, nil
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return Result{}, err
	}
	if err := copyTree(a.Layout.EtcDir(), filepath.Join(tmp, "etc")); err != nil {
		return Result{}, fmt.Errorf("backing up %s: %w", a.Layout.EtcDir(), err)
	}
	if err := syncDirs(tmp); err != nil {
		return Result{}, err
	}
	if err := durable.Rename(tmp, dst); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Note: "saved " + a.Layout.EtcDir() + " to " + dst}, nil
}

func (a *Agent) install(_ context.Context, req Request) (Result, error) {
	dir := a.Layout.ReleaseDir(req.Component, req.Version)
	if marker, err := os.ReadFile(filepath.Join(dir, installedMarker)); err == nil {
		if strings.TrimSpace(string(marker)) == req.Artifact.SHA256 {
			return Result{Note: "already unpacked in " + dir}, nil
		}
		return Result{}, fmt.Errorf("%s exists but holds artifact %s, not %s: move it aside and retry", dir, strings.TrimSpace(string(marker)), req.Artifact.SHA256)
	} else if _, serr := os.Lstat(dir); serr == nil {
		return Result{}, fmt.Errorf("%s exists but was not installed by sentinel: move it aside and retry", dir)
	}
	store := &cache.Store{Dir: a.Layout.CacheDir()}
	src, err := os.Open(store.Path(req.Artifact.SHA256))
	if err != nil {
		return Result{}, fmt.Errorf("artifact %s of %s %s is not in the node cache (run the fetch step first): %w", req.Artifact.SHA256, req.Component, req.Version, err)
	}
	defer src.Close()
	if err := os.MkdirAll(a.Layout.ReleasesDir(req.Component), 0o755); err != nil {
		return Result{}, err
	}
	tmp := filepath.Join(a.Layout.ReleasesDir(req.Component), ".install-"+req.Version)
	if err := os.RemoveAll(tmp); err != nil { // left by a crash
		return Result{}, err
	}
	// Hash what we unpack: a cache file damaged since it was verified must
	// not be installed.
	fi, err := src.Stat()
	if err != nil {
		return Result{}, err
	}
	limit, rule := UnpackLimit(fi.Size(), req.Artifact.UnpackedSize)
	h := sha256.New()
	tee := io.TeeReader(src, h)
	unpackErr := Unpack(tee, tmp, limit)
	// Read to the end either way: if the bytes are not the verified ones,
	// that is the error to report, not what the unpacker made of them.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		os.RemoveAll(tmp)
		return Result{}, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != req.Artifact.SHA256 {
		os.RemoveAll(tmp)
		os.Remove(store.Path(req.Artifact.SHA256))
		return Result{}, fmt.Errorf("the cached artifact of %s %s was damaged on disk after it was verified (sha256 %s, expected %s): removed it from the node cache; the next run downloads it again", req.Component, req.Version, got, req.Artifact.SHA256)
	}
	if unpackErr != nil {
		os.RemoveAll(tmp)
		return Result{}, a.unpackError(req, tmp, limit, rule, unpackErr)
	}
	if err := recordFiles(tmp); err != nil {
		os.RemoveAll(tmp)
		return Result{}, err
	}
	if err := durable.WriteFile(filepath.Join(tmp, installedMarker), []byte(req.Artifact.SHA256+"\n"), 0o444); err != nil {
		os.RemoveAll(tmp)
		return Result{}, err
	}
	if err := durable.Rename(tmp, dir); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Note: "unpacked into " + dir}, nil
}

func (a *Agent) env(req Request, version string) hookEnv {
	return hookEnv{Root: a.Layout.Root, Node: a.Node, Component: req.Component, Version: version, FromVersion: req.FromVersion}
}

func (a *Agent) stop(ctx context.Context, req Request) (Result, error) {
	cur, err := a.currentVersion(req.Component)
	if err != nil || cur == "" {
		return Result{Note: "no current release: nothing to stop"}, err
	}
	if st, ok := a.statusOnRetry(ctx, req, cur); ok && st.State == "stopped" {
		return Result{Note: req.Component + " already stopped (status hook): stop hook not run again"}, nil
	}
	ran, err := a.runHook(ctx, a.Layout.ReleaseDir(req.Component, cur), "stop", a.env(req, cur), req.Hooks.Stop.Timeout.Or(release.DefaultHookTimeout))
	return Result{Changed: ran, Note: "stopped " + cur}, err
}

func (a *Agent) migrate(ctx context.Context, req Request) (Result, error) {
	done := a.Layout.Migrated(req.Component, req.Version)
	if _, err := os.Stat(done); err == nil {
		return Result{Note: "already migrated to " + req.Version + " (not run again)"}, nil
	}
	// The hook may have finished just before a crash that came before the
	// mark: the component itself knows.
	if st, _ := a.statusOnRetry(ctx, req, req.Version); st.Schema == req.Version {
		return Result{Note: "schema already at " + req.Version + " (status hook): migrate hook not run again"},
			durable.WriteFile(done, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
	}
	ran, err := a.runHook(ctx, a.Layout.ReleaseDir(req.Component, req.Version), "migrate", a.env(req, req.Version), req.Hooks.Migrate.Timeout.Or(release.DefaultHookTimeout))
	if err != nil {
		return Result{}, err
	}
	if !ran {
		return Result{Note: "no migrate hook"}, nil
	}
	// Durable before the step is recorded done: a crash after this point
	// finds the mark and does not migrate twice.
	return Result{Changed: true}, durable.WriteFile(done, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

func (a *Agent) switchTo(_ context.Context, req Request) (Result, error) {
	if req.Version == "" {
		// Rolling back a component the release added: it had no current.
		err := os.Remove(a.Layout.Current(req.Component))
		if errors.Is(err, fs.ErrNotExist) {
			return Result{Note: "no current link"}, nil
		}
		if err != nil {
			return Result{}, err
		}
		return Result{Changed: true, Note: "removed current link"}, durable.SyncDir(a.Layout.ComponentDir(req.Component))
	}
	target := filepath.Join("releases", req.Version)
	// Any release directory will do, installed by sentinel or not: rolling
	// back returns to whatever ran before.
	if st, err := os.Stat(a.Layout.ReleaseDir(req.Component, req.Version)); err != nil || !st.IsDir() {
		return Result{}, fmt.Errorf("cannot switch %s to %s: the release is not installed in %s", req.Component, req.Version, a.Layout.ReleaseDir(req.Component, req.Version))
	}
	cur, err := os.Readlink(a.Layout.Current(req.Component))
	if err == nil && cur == target {
		return Result{Note: "current already points at " + req.Version}, nil
	}
	tmp := a.Layout.Current(req.Component) + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return Result{}, err
	}
	// rename(2) replaces the link atomically: readers see old or new.
	if err := durable.Rename(tmp, a.Layout.Current(req.Component)); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Note: "current -> " + target}, nil
}

// requireCurrent refuses to start or check a release other than the one
// the orchestrator expects.
func (a *Agent) requireCurrent(req Request) error {
	cur, err := a.currentVersion(req.Component)
	if err != nil {
		return err
	}
	if cur != req.Version {
		return fmt.Errorf("%s: current points at %q, expected %s", req.Component, cur, req.Version)
	}
	return nil
}

func (a *Agent) start(ctx context.Context, req Request) (Result, error) {
	if err := a.requireCurrent(req); err != nil {
		return Result{}, err
	}
	if st, ok := a.statusOnRetry(ctx, req, req.Version); ok && st.State == "running" && st.Version == req.Version {
		return Result{Note: req.Component + " " + req.Version + " already running (status hook): start hook not run again"}, nil
	}
	ran, err := a.runHook(ctx, a.Layout.ReleaseDir(req.Component, req.Version), "start", a.env(req, req.Version), req.Hooks.Start.Timeout.Or(release.DefaultHookTimeout))
	if err == nil {
		err = clearRestartPending(a.Layout.Root, req.Component)
	}
	return Result{Changed: ran}, err
}

func (a *Agent) health(ctx context.Context, req Request) (Result, error) {
	if err := a.requireCurrent(req); err != nil {
		return Result{}, err
	}
	lim := req.Hooks.Health
	retries := lim.Retries
	if retries == 0 {
		retries = release.DefaultHealthRetries
	}
	interval := lim.Interval.Or(release.DefaultHealthInterval)
	var err error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			a.logf("%s %s not healthy yet (attempt %d of %d), retrying in %s", req.Component, req.Version, attempt, retries+1, interval)
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return Result{}, ctx.Err()
			case <-t.C:
			}
		}
		var ran bool
		ran, err = a.runHook(ctx, a.Layout.ReleaseDir(req.Component, req.Version), "health", a.env(req, req.Version), lim.Timeout.Or(release.DefaultHealthTimeout))
		if !ran {
			return Result{Note: "no health hook"}, nil
		}
		if err == nil {
			return Result{Note: "healthy"}, nil
		}
	}
	var he *HookError
	if errors.As(err, &he) {
		he.Reason = fmt.Sprintf("%s (after %d attempts)", he.Reason, retries+1)
	}
	return Result{}, err
}

func (a *Agent) commit(_ context.Context, req Request) (Result, error) {
	rec, err := ReadRecord(a.Layout.Root)
	if err != nil {
		rec = &Record{}
	}
	// A release supersedes the patches of the one before it. A commit of
	// the same release (upgrade --force) puts the components it lists back
	// on release versions, and node.json does not say which components a
	// patch replaced (`patch mark --installed` records none): no recorded
	// patch can be trusted to be in place any more.
	keepPatches := rec.Release == req.Release && !setsReleaseVersion(req.Components)
	if rec.Release == req.Release && sameVersions(rec.Components, req.Components) && (keepPatches || len(rec.Patches) == 0) {
		return Result{Note: "node.json already records " + req.Release}, nil
	}
	next := &Record{Release: req.Release, Components: map[string]string{}, Updated: time.Now().UTC()}
	for c, v := range rec.Components {
		next.Components[c] = v
	}
	for c, v := range req.Components {
		next.Components[c] = v
	}
	if keepPatches {
		next.Patches = rec.Patches
	}
	if err := WriteRecord(a.Layout.Root, next); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Note: "node.json records " + req.Release}, nil
}

// setsReleaseVersion reports whether a commit sets some component to a
// version that is not a patch level ("3.4.2", not "3.4.2-p1").
func setsReleaseVersion(want map[string]string) bool {
	for _, v := range want {
		if _, suffix, _ := strings.Cut(v, "-"); !isPatchLevel(suffix) {
			return true
		}
	}
	return false
}

func isPatchLevel(suffix string) bool {
	_, ok := release.PatchNumber(suffix)
	return ok
}

func sameVersions(have, want map[string]string) bool {
	for c, v := range want {
		if have[c] != v {
			return false
		}
	}
	return true
}

// restart stops every component, newest first, then starts each and checks
// its health. It goes on past a failure so that one broken component does
// not leave the others stopped, and reports every failure.
func (a *Agent) restart(ctx context.Context, req Request) (Result, error) {
	// Each item is a start's subject: all are checked before any stops.
	item := operation{name: OpRestart, component: true, version: true}
	for _, it := range req.Restart {
		if err := item.checkSubject(Request{Component: it.Component, Version: it.Version}); err != nil {
			return Result{}, err
		}
	}
	var errs []error
	for i := len(req.Restart) - 1; i >= 0; i-- {
		it := req.Restart[i]
		if _, err := a.stop(ctx, Request{Component: it.Component, Hooks: it.Hooks}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, it := range req.Restart {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		r := Request{Component: it.Component, Version: it.Version, Hooks: it.Hooks}
		if _, err := a.start(ctx, r); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := a.health(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Result{}, &RestartError{Errs: errs}
	}
	return Result{Changed: true, Note: fmt.Sprintf("restarted %d components", len(req.Restart))}, nil
}

// RestartError lists every component that did not come back.
type RestartError struct{ Errs []error }

func (e *RestartError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("%d component(s) did not restart: %s", len(e.Errs), strings.Join(msgs, "; "))
}

// Unwrap exposes the hook failures, so their output reaches the report.
func (e *RestartError) Unwrap() []error { return e.Errs }

// intact reports whether the node cache's copy of digest is whole.
func intact(ctx context.Context, store *cache.Store, digest string) bool {
	ok, _ := store.Intact(ctx, digest)
	return ok
}

// copyTree copies regular files, directories and symlinks from src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == src {
				return os.MkdirAll(dst, 0o755)
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		case d.Type().IsRegular():
			return durable.CopyFile(p, to, info.Mode().Perm())
		}
		return nil // sockets and devices are not configuration
	})
}

// syncDirs fsyncs every directory under root, so a tree copied file by file
// is durable before it is renamed into place.
func syncDirs(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return durable.SyncDir(p)
	})
}

func pruned(removed []cache.Entry, err error) (Result, error) {
	var bytes int64
	for _, e := range removed {
		bytes += e.Size
	}
	return Result{Changed: len(removed) > 0, Note: fmt.Sprintf("removed %d artifacts (%s) no longer needed", len(removed), preflight.FormatBytes(bytes))}, err
}
