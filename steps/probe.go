package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
)

// ProbeRequest says what to measure.
type ProbeRequest struct {
	CacheDir string   `json:"cache_dir,omitempty"` // on the cache node: its cache_dir
	Reach    []string `json:"reach,omitempty"`     // URLs whose hosts must be reachable from here
	// ReachDirect: URLs reached without any proxy, as fetches from the
	// cluster's cache daemon are.
	ReachDirect []string `json:"reach_direct,omitempty"`
	// CachePeer: the ReachDirect targets are the cache daemon, verified
	// from this node as its fetches will verify it.
	CachePeer *cache.Peer `json:"cache_peer,omitempty"`
	Capacity  bool        `json:"capacity,omitempty"` // a DEA: run dea_ng's capacity hook
	// MemoryCgroup is the cgroup the node's roles run in (the cluster
	// file's memory_cgroup); "": the node as a whole.
	MemoryCgroup string `json:"memory_cgroup,omitempty"`
	// Artifacts: digests whose presence in the node cache preflight needs
	// to know (what is there needs no disk).
	Artifacts []string `json:"artifacts,omitempty"`
	// Proxy: the operator's proxy settings for Reach (nil: the node's
	// environment).
	Proxy *release.ProxySettings `json:"proxy,omitempty"`
}

// ProbeFacts is what a node reports to preflight.
type ProbeFacts struct {
	Disk        []preflight.DiskFacts  `json:"disk"` // the node root, then the cache_dir if asked
	DiskErr     string                 `json:"disk_error,omitempty"`
	Memory      preflight.MemoryFacts  `json:"memory"`
	MemoryErr   string                 `json:"memory_error,omitempty"`
	Reach       []preflight.ReachFacts `json:"reach,omitempty"`
	Capacity    *DEACapacity           `json:"capacity,omitempty"`
	CapacityErr string                 `json:"capacity_error,omitempty"`
	// Customized lists files an upgrade would replace or lose: changed in
	// installed releases under code/, or in etc/ since the last backup.
	Customized []string `json:"customized,omitempty"`
	// Cached: those of the asked Artifacts the node cache holds.
	Cached []string `json:"cached,omitempty"`
}

// DEACapacity is what a DEA's capacity hook prints.
type DEACapacity struct {
	MemoryTotalMB int64         `json:"memory_total_mb"`
	MemoryUsedMB  int64         `json:"memory_used_mb"`
	Instances     []AppInstance `json:"instances"`
}

// AppInstance is one app instance running on a DEA.
type AppInstance struct {
	App      string `json:"app"`
	MemoryMB int64  `json:"memory_mb"`
}

// reachTimeout bounds each reachability probe.
const reachTimeout = 10 * time.Second

func (a *Agent) probe(ctx context.Context, req ProbeRequest) (*ProbeFacts, error) {
	f := &ProbeFacts{}
	// The root, the node cache where fetches write, and the cache node's
	// cache_dir: one figure per file system.
	paths := []string{a.Layout.Root, a.Layout.CacheDir()}
	if req.CacheDir != "" {
		paths = append(paths, req.CacheDir)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		d, err := preflight.Disk(p)
		if err != nil {
			f.DiskErr = err.Error()
			break
		}
		if key := fmt.Sprintf("%s\x00%d", d.Mount, d.TotalBytes); d.Mount == "" || !seen[key] {
			seen[key] = true
			f.Disk = append(f.Disk, d)
		}
	}
	store := &cache.Store{Dir: a.Layout.CacheDir()}
	for _, d := range req.Artifacts {
		if store.Has(d) {
			f.Cached = append(f.Cached, d)
		}
	}
	if m, err := preflight.Memory(req.MemoryCgroup); err != nil {
		f.MemoryErr = err.Error()
	} else {
		f.Memory = m
	}
	// All targets at once: a node behind a slow proxy takes one timeout,
	// not one per host.
	f.Reach = make([]preflight.ReachFacts, len(req.Reach)+len(req.ReachDirect))
	var wg sync.WaitGroup
	ps := req.Proxy
	for i, u := range append(append([]string(nil), req.Reach...), req.ReachDirect...) {
		proxy := release.ProxyFromEnvironment
		if ps != nil {
			proxy = ps.Proxy // the operator's, sent with the request
		}
		if i >= len(req.Reach) {
			proxy = nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.Reach[i] = preflight.Reach(ctx, u, proxy, reachTimeout)
			if proxy == nil && f.Reach[i].OK && req.CachePeer != nil {
				if err := verifyCache(ctx, u, *req.CachePeer); err != nil {
					f.Reach[i].OK, f.Reach[i].Error = false, err.Error()
				}
			}
		}()
	}
	wg.Wait()
	if req.Capacity {
		f.Capacity, f.CapacityErr = a.capacity(ctx)
	}
	f.Customized = a.customized()
	return f, nil
}

// verifyCache asks the cache daemon at u for its health over TLS, verified
// as peer says: a certificate this node would refuse in a fetch is refused
// here, before anything changes.
func verifyCache(ctx context.Context, u string, peer cache.Peer) error {
	c, err := peer.HTTPClient()
	if err != nil || c == nil {
		return err
	}
	defer c.CloseIdleConnections() // a session agent lives on after this probe
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	var ce *cache.CertError
	if errors.As(err, &ce) {
		return ce
	}
	if err != nil {
		return fmt.Errorf("reaching the cache daemon at %s: %w", u, err)
	}
	resp.Body.Close()
	return nil
}

// capacity runs the current dea_ng release's capacity hook.
func (a *Agent) capacity(ctx context.Context) (*DEACapacity, string) {
	cur, err := a.currentVersion("dea_ng")
	if err != nil || cur == "" {
		return nil, "dea_ng is not installed on this node"
	}
	dir := a.Layout.ReleaseDir("dea_ng", cur)
	out, err := os.CreateTemp(a.Layout.TmpDir(), "capacity-*")
	if err != nil {
		return nil, err.Error()
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ran, err := a.runHookTo(ctx, dir, "capacity", hookEnv{Root: a.Layout.Root, Node: a.Node, Component: "dea_ng", Version: cur}, 30*time.Second, out, false)
	if !ran {
		return nil, "dea_ng " + cur + " ships no capacity hook"
	}
	if err != nil {
		return nil, err.Error()
	}
	data, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err.Error()
	}
	var c DEACapacity
	if err := json.Unmarshal(bytes.TrimSpace(data), &c); err != nil {
		return nil, fmt.Sprintf("the capacity hook of dea_ng %s printed %q, not its JSON: %v", cur, truncate(string(data), 200), err)
	}
	return &c, ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// filesRecord lists, in every release directory sentinel unpacked, the
// files as they were unpacked, to tell local changes from the release.
const filesRecord = ".sentinel-files"

type fileState struct {
	Size  int64       `json:"size"`
	Mode  fs.FileMode `json:"mode"`
	MTime int64       `json:"mtime_ns"`
}

// recordFiles writes the files record of a freshly unpacked release.
func recordFiles(dir string) error {
	files, err := scanFiles(dir)
	if err != nil {
		return err
	}
	data, err := json.Marshal(files)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, filesRecord), data, 0o444)
}

func scanFiles(dir string) (map[string]fileState, error) {
	files := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() || strings.HasPrefix(filepath.Base(rel), ".sentinel-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[rel] = fileState{Size: info.Size(), Mode: info.Mode(), MTime: info.ModTime().UnixNano()}
		return nil
	})
	return files, err
}

// customized lists local changes an upgrade would not carry over: files
// changed, added or removed in the current release of each component, and
// files of etc/ changed since the last backup (etc/sentinel is sentinel's).
func (a *Agent) customized() []string {
	var out []string
	comps, _ := os.ReadDir(filepath.Join(a.Layout.Root, "code"))
	for _, c := range comps {
		cur, err := a.currentVersion(c.Name())
		if err != nil || cur == "" {
			continue
		}
		dir := a.Layout.ReleaseDir(c.Name(), cur)
		data, err := os.ReadFile(filepath.Join(dir, filesRecord))
		if err != nil {
			continue // not unpacked by this sentinel: nothing to compare with
		}
		var was map[string]fileState
		if json.Unmarshal(data, &was) != nil {
			continue
		}
		now, err := scanFiles(dir)
		if err != nil {
			continue
		}
		for p, st := range now {
			if old, ok := was[p]; !ok {
				out = append(out, filepath.Join("code", c.Name(), "current", p)+" (added)")
			} else if old != st {
				out = append(out, filepath.Join("code", c.Name(), "current", p)+" (changed)")
			}
		}
		for p := range was {
			if _, ok := now[p]; !ok {
				out = append(out, filepath.Join("code", c.Name(), "current", p)+" (removed)")
			}
		}
	}
	out = append(out, a.etcChanges()...)
	sort.Strings(out)
	return out
}

// etcChanges compares etc/ with the newest backup of it.
func (a *Agent) etcChanges() []string {
	backups, err := filepath.Glob(filepath.Join(a.Layout.Root, "var", "sentinel", "backups", "*", "etc"))
	if err != nil || len(backups) == 0 {
		return nil
	}
	newest, newestTime := "", time.Time{}
	for _, b := range backups {
		if st, err := os.Stat(b); err == nil && st.ModTime().After(newestTime) {
			newest, newestTime = b, st.ModTime()
		}
	}
	var out []string
	_ = filepath.WalkDir(a.Layout.EtcDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.IsDir() && d.Name() == "sentinel" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(a.Layout.EtcDir(), p)
		now, err1 := os.ReadFile(p)
		then, err2 := os.ReadFile(filepath.Join(newest, rel))
		switch {
		case errors.Is(err2, fs.ErrNotExist):
			out = append(out, filepath.Join("etc", rel)+" (added since the last backup)")
		case err1 == nil && err2 == nil && !bytes.Equal(now, then):
			out = append(out, filepath.Join("etc", rel)+" (changed since the last backup)")
		}
		return nil
	})
	return out
}

// proxiedHTTP is a client through the operator's proxy settings.
func proxiedHTTP(ps release.ProxySettings) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = ps.Proxy
	return &http.Client{Transport: t}
}
