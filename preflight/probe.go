package preflight

// The node probes: run on the node (by the agent), they return plain facts
// that travel back to the orchestrator as JSON.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
)

// DiskFacts is the free space of the file system holding Path.
type DiskFacts struct {
	Path       string `json:"path"`            // as asked; it need not exist yet
	Mount      string `json:"mount,omitempty"` // mount point of its file system, "" if unknown
	FreeBytes  uint64 `json:"free_bytes"`      // available to unprivileged users
	TotalBytes uint64 `json:"total_bytes"`
}

// Disk measures the file system holding path. A path that does not exist
// yet (a cache_dir about to be made) is measured at its nearest existing
// ancestor. Mount is found in /proc/self/mountinfo, best effort.
func Disk(path string) (DiskFacts, error) {
	facts := DiskFacts{Path: path}
	p, err := filepath.Abs(path)
	if err != nil {
		return facts, fmt.Errorf("disk space for %s: %w", path, err)
	}
	for {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, fs.ErrNotExist) || parent == p {
			return facts, fmt.Errorf("disk space for %s: %w", path, err)
		}
		p = parent
	}
	u, err := disk.Usage(p)
	if err != nil {
		return facts, fmt.Errorf("disk space for %s (measured at %s): %w", path, p, err)
	}
	facts.FreeBytes, facts.TotalBytes = u.Free, u.Total
	if resolved, err := filepath.EvalSymlinks(p); err == nil {
		p = resolved
	}
	if mounts, err := readMountinfo(); err == nil {
		facts.Mount = mountOf(mounts, p).point
	}
	return facts, nil
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	root, point, fstype string
	superOpts           []string
}

// readMountinfo reads /proc/self/mountinfo (see proc_pid_mountinfo(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func readMountinfo() ([]mount, error) { return readMountinfoFile("/proc/self/mountinfo") }

func readMountinfoFile(file string) ([]mount, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		before, after, ok := strings.Cut(sc.Text(), " - ")
		pre, post := strings.Fields(before), strings.Fields(after)
		if !ok || len(pre) < 5 || len(post) < 3 {
			continue
		}
		mounts = append(mounts, mount{
			root:      unescapeMountinfo(pre[3]),
			point:     unescapeMountinfo(pre[4]),
			fstype:    post[0],
			superOpts: strings.Split(post[2], ","),
		})
	}
	return mounts, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountOf is the mount holding the absolute, symlink-free path p: the
// longest mount point that contains it, the last mounted on a tie (it
// hides the ones beneath).
func mountOf(mounts []mount, p string) mount {
	var best mount
	for _, m := range mounts {
		if within(p, m.point) && len(m.point) >= len(best.point) {
			best = m
		}
	}
	return best
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// MemoryFacts is how much memory the processes of a node could still use.
// When a cgroup limit binds, AvailableBytes = CgroupLimitBytes -
// (CgroupUsageBytes - CgroupInactiveFileBytes - ProbeBytes).
type MemoryFacts struct {
	AvailableBytes          uint64 `json:"available_bytes"`      // min(host available, cgroup headroom)
	HostAvailableBytes      uint64 `json:"host_available_bytes"` // the kernel's MemAvailable
	CgroupLimitBytes        uint64 `json:"cgroup_limit_bytes,omitempty"`
	CgroupUsageBytes        uint64 `json:"cgroup_usage_bytes,omitempty"`         // the cgroup's usage, the probe and page cache included
	CgroupInactiveFileBytes uint64 `json:"cgroup_inactive_file_bytes,omitempty"` // page cache the kernel reclaims first: not counted as used
	ProbeBytes              uint64 `json:"probe_bytes"`                          // the probe's own charged memory (anonymous and shared): not counted as used
	Cgroup                  string `json:"cgroup,omitempty"`                     // the memory cgroup whose limit binds tightest, "" if none has a limit
	Source                  string `json:"source"`                               // what AvailableBytes comes from: "host", "cgroup v1 /x" or "cgroup v2 /x"
}

// noLimit: limits at or above this are "unlimited" (cgroup v1 writes
// 9223372036854771712, PAGE_COUNTER_MAX in bytes, for none).
const noLimit = 1 << 62

// Memory measures the memory this node's processes could still use: the
// host's available memory and, when a memory cgroup (v1 or v2) that holds
// them has a limit, here or on an ancestor, that cgroup's headroom: limit -
// (usage - inactive page cache - the probe's own memory if it runs inside).
// Which cgroup: cgroup, the one the node's roles run in (a path in the
// node's cgroup tree, e.g. /system.slice/stackato.slice, from the cluster
// file's memory_cgroup), or, when "", the node as a whole: the root of the
// cgroup tree as the node sees it (a container's own cgroup). Never the
// probe's own cgroup: over SSH that is the login session's, which says
// nothing of the roles' memory. Inactive page cache does not count, as for
// the host's MemAvailable and the kubelet's working set. The probe's own
// memory is the anonymous and shared part of its resident set (RssAnon +
// RssShmem, VmRSS on kernels without them): the part a cgroup is always
// charged for. AvailableBytes is the smaller of the host's and the
// tightest cgroup's figure, and Source says which.
func Memory(cgroup string) (MemoryFacts, error) {
	return liveView.memory(cgroup)
}

// cgroupView is where the memory facts are read: this machine's /proc and
// /sys, or a recorded tree in the tests.
type cgroupView struct {
	selfCgroup, mountinfo string // /proc/self/cgroup, /proc/self/mountinfo
	fsRoot                string // put before mount points ("" on a real node)
	meminfo               func() (uint64, error)
}

var liveView = cgroupView{selfCgroup: "/proc/self/cgroup", mountinfo: "/proc/self/mountinfo", meminfo: hostAvailable}

func hostAvailable() (uint64, error) {
	vm, err := mem.VirtualMemory()
	if err != nil {
		return 0, err
	}
	return vm.Available, nil
}

func (v cgroupView) memory(cgroup string) (MemoryFacts, error) {
	avail, err := v.meminfo()
	if err != nil {
		return MemoryFacts{}, fmt.Errorf("reading the host's available memory: %w", err)
	}
	facts := MemoryFacts{AvailableBytes: avail, HostAvailableBytes: avail, Source: "host"}
	if facts.ProbeBytes, err = chargedBytes("/proc/self/status"); err != nil {
		return facts, err
	}
	levels, version, inside, err := v.memoryCgroups(cgroup)
	if err != nil || len(levels) == 0 {
		return facts, err
	}
	own := facts.ProbeBytes
	if !inside {
		own = 0 // the probe is charged elsewhere
	}
	var tightest *cgroupLevel
	headroom := uint64(0)
	for i := range levels {
		l := &levels[i]
		if h := sub(l.limit, sub(sub(l.usage, l.inactiveFile), own)); tightest == nil || h < headroom {
			tightest, headroom = l, h
		}
	}
	facts.Cgroup, facts.CgroupLimitBytes = tightest.name, tightest.limit
	facts.CgroupUsageBytes, facts.CgroupInactiveFileBytes = tightest.usage, tightest.inactiveFile
	if headroom < facts.AvailableBytes {
		facts.AvailableBytes = headroom
		facts.Source = fmt.Sprintf("cgroup v%d %s", version, tightest.name)
	}
	return facts, nil
}

// sub is a - b, or 0 if b > a.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// cgroupLevel is a memory cgroup with a limit: this process's or an ancestor.
type cgroupLevel struct {
	name                       string // as in /proc/self/cgroup
	limit, usage, inactiveFile uint64
}

// cgroupFiles names the files of a memory cgroup version.
type cgroupFiles struct {
	limit, usage, stat string
	inactiveKey        string // in stat: hierarchical inactive page cache
	hierarchy          string // v1: a parent with 0 here does not account for its children
}

var (
	cgroupV1Files = cgroupFiles{"memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file", "memory.use_hierarchy"}
	cgroupV2Files = cgroupFiles{"memory.max", "memory.current", "memory.stat", "inactive_file", ""}
)

// memoryCgroups finds the memory cgroup to measure (see Memory) and
// returns it and its ancestors that have a limit, with the cgroup version
// and whether this process runs inside it. Cgroup v1 (the "memory"
// controller) is preferred to v2: on a hybrid system the memory controller
// lives in v1.
func (v cgroupView) memoryCgroups(cgroup string) ([]cgroupLevel, int, bool, error) {
	data, err := os.ReadFile(v.selfCgroup)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, false, nil // not Linux, or no cgroups
	} else if err != nil {
		return nil, 0, false, fmt.Errorf("reading the memory cgroup: %w", err)
	}
	var v1, v2 string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			v1 = parts[2]
		}
	}
	mounts, err := readMountinfoFile(v.mountinfo)
	if err != nil {
		return nil, 0, false, fmt.Errorf("finding the cgroup file systems: %w", err)
	}
	var m1, m2 *mount
	for i, m := range mounts {
		switch {
		case m.fstype == "cgroup" && slices.Contains(m.superOpts, "memory"):
			m1 = &mounts[i]
		case m.fstype == "cgroup2":
			m2 = &mounts[i]
		}
	}
	m, self, version, files := m1, v1, 1, cgroupV1Files
	if v1 == "" || m1 == nil {
		m, self, version, files = m2, v2, 2, cgroupV2Files
	}
	if m == nil {
		if cgroup != "" {
			return nil, 0, false, fmt.Errorf("memory cgroup %s: this node has no memory cgroup file system", cgroup)
		}
		return nil, 0, false, nil
	}
	view := *m
	view.point = filepath.Join(v.fsRoot, m.point)
	name := m.root // the node as a whole, as far as it sees
	if cgroup != "" {
		clean := path.Clean("/" + cgroup)
		if fi, err := os.Stat(filepath.Join(view.point, clean)); err != nil || !fi.IsDir() {
			return nil, 0, false, fmt.Errorf("memory cgroup %s: no such cgroup under %s (cgroup v%d): check memory_cgroup in the cluster file", cgroup, m.point, version)
		}
		name = path.Join(m.root, clean)
	}
	levels, err := cgroupLevels(view, name, files)
	return levels, version, self != "" && within(self, name), err
}

// cgroupLevels walks from the cgroup name (a path in the hierarchy
// mounted as m) up to the top of the mount, collecting the levels with a
// limit.
func cgroupLevels(m mount, name string, files cgroupFiles) ([]cgroupLevel, error) {
	rel, ok := strings.CutPrefix(name, m.root)
	if m.root == "/" {
		rel, ok = name, true
	}
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
		rel = "/" // outside the mount's view (a cgroup namespace): the mount's root is the best we have
	}
	var levels []cgroupLevel
	for {
		dir := filepath.Join(m.point, rel)
		limit, err := readCgroupValue(filepath.Join(dir, files.limit))
		if err != nil {
			return nil, err
		}
		if limit < noLimit {
			l := cgroupLevel{name: path.Join(m.root, rel), limit: limit}
			if l.usage, err = readCgroupValue(filepath.Join(dir, files.usage)); err != nil {
				return nil, err
			}
			if l.inactiveFile, err = readCgroupStat(filepath.Join(dir, files.stat), files.inactiveKey); err != nil {
				return nil, err
			}
			levels = append(levels, l)
		}
		if rel == "/" || rel == "" {
			return levels, nil
		}
		rel = path.Dir(rel)
		if files.hierarchy != "" {
			if h, err := os.ReadFile(filepath.Join(m.point, rel, files.hierarchy)); err == nil && strings.TrimSpace(string(h)) == "0" {
				return levels, nil
			}
		}
	}
}

// readCgroupValue reads a byte count; "max", a missing file (the v2 root
// has no memory.max) and absurd values all mean no limit (noLimit).
func readCgroupValue(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return noLimit, nil
	} else if err != nil {
		return 0, fmt.Errorf("reading the memory cgroup: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return noLimit, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading the memory cgroup: %s holds %q, not a byte count", file, s)
	}
	return min(n, noLimit), nil
}

// readCgroupStat reads one "key value" line of memory.stat; 0 if absent.
func readCgroupStat(file, key string) (uint64, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("reading the memory cgroup: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading the memory cgroup: odd line %q in %s", line, file)
			}
			return n, nil
		}
	}
	return 0, nil
}

// chargedBytes is the memory a process is charged for, from its
// /proc/PID/status: RssAnon + RssShmem (VmRSS before Linux 4.5), 0 where
// there is no such file.
func chargedBytes(statusFile string) (uint64, error) {
	data, err := os.ReadFile(statusFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("reading the probe's own memory use: %w", err)
	}
	kB := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		key, v, ok := strings.Cut(line, ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				kB[key] = n << 10
			}
		}
	}
	if anon, ok := kB["RssAnon"]; ok {
		return anon + kB["RssShmem"], nil
	}
	return kB["VmRSS"], nil
}

// ReachFacts says whether a node reached a host, and how.
type ReachFacts struct {
	Target string `json:"target"`        // the URL asked for (credentials redacted)
	Via    string `json:"via,omitempty"` // the proxy's host:port, "" when direct
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"` // names the target, and the proxy if one was used
	Millis int64  `json:"millis"`
}

// Reach checks that this node can reach the host of rawURL (an http or
// https URL) the way a fetch would: through the proxy that proxyFor picks
// for the URL (release.ProxyFromEnvironment in sentinel; nil for none),
// else directly. Directly, it opens a TCP connection to host:port. Through
// a proxy, for an https URL it asks the proxy to CONNECT to host:port and
// wants a 200; for an http URL it sends the proxy a HEAD for the URL and
// accepts any answer from the host (a 404 still shows the host and port
// answer) but 403 and 407 (the proxy refuses, or wants credentials) and 5xx
// (the proxy could not reach the host). The whole probe gets timeout (none if 0) and stops when ctx is done.
func Reach(ctx context.Context, rawURL string, proxyFor func(*http.Request) (*url.URL, error), timeout time.Duration) ReachFacts {
	start := time.Now()
	facts := ReachFacts{Target: rawURL}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err := reach(ctx, &facts, rawURL, proxyFor, timeout)
	facts.Millis = time.Since(start).Milliseconds()
	if err != nil {
		facts.Error = err.Error()
	} else {
		facts.OK = true
	}
	return facts
}

func reach(ctx context.Context, facts *ReachFacts, rawURL string, proxyFor func(*http.Request) (*url.URL, error), timeout time.Duration) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("reaching %q: not an http or https URL", rawURL)
	}
	facts.Target = u.Redacted()
	target := hostPort(u)
	var proxy *url.URL
	if proxyFor != nil {
		proxy, err = proxyFor(&http.Request{Method: http.MethodHead, URL: u, Host: u.Host, Header: http.Header{}})
		if err != nil {
			return fmt.Errorf("reaching %s: choosing the proxy: %w", target, err)
		}
	}
	var d net.Dialer
	if proxy == nil {
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return fmt.Errorf("reaching %s: %w", target, contextErr(ctx, err, timeout))
		}
		return conn.Close()
	}

	if proxy.Scheme != "http" && proxy.Scheme != "https" {
		return fmt.Errorf("reaching %s: proxy %s: scheme %q not supported (http or https)", target, proxy.Redacted(), proxy.Scheme)
	}
	facts.Via = hostPort(proxy)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("reaching %s through proxy %s: %s", target, facts.Via, fmt.Sprintf(format, args...))
	}
	conn, err := d.DialContext(ctx, "tcp", facts.Via)
	if err != nil {
		return fail("connecting to the proxy: %v", contextErr(ctx, err, timeout))
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: proxy.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("TLS with the proxy: %v", contextErr(ctx, err, timeout))
		}
		conn = tc
	}

	var req *http.Request
	if u.Scheme == "https" {
		req = &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return fail("%v", err)
		}
		req.Close = true
	}
	req.Header.Set("User-Agent", "sentinel-preflight")
	if proxy.User != nil {
		pw, _ := proxy.User.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(proxy.User.Username()+":"+pw)))
	}
	if u.Scheme == "https" {
		err = req.Write(conn)
	} else {
		err = req.WriteProxy(conn) // absolute-form request line
	}
	if err != nil {
		return fail("sending %s to the proxy: %v", req.Method, contextErr(ctx, err, timeout))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fail("reading the proxy's answer to %s: %v", req.Method, contextErr(ctx, err, timeout))
	}
	resp.Body.Close() // CONNECT and HEAD: nothing to read
	switch {
	case u.Scheme == "https" && resp.StatusCode != http.StatusOK:
		return fail("the proxy answered CONNECT %s with %s", target, resp.Status)
	case resp.StatusCode == http.StatusProxyAuthRequired:
		return fail("the proxy answered HEAD %s with %s: it needs credentials (user:password@ in http_proxy)", facts.Target, resp.Status)
	case resp.StatusCode >= 500:
		// Proxies report a host they cannot reach as 500 (tinyproxy), 502,
		// 503 or 504; an upstream that answers 5xx is not usable either.
		return fail("the proxy answered HEAD %s with %s: it could not reach the host (%s)", facts.Target, resp.Status, target)
	case resp.StatusCode == http.StatusForbidden:
		// Through a proxy, most often its access list refusing the host.
		return fail("HEAD %s through the proxy answered %s: the proxy (or the host) refuses it; ask for the host to be allowed", facts.Target, resp.Status)
	}
	return nil
}

// hostPort is u's host:port, with the scheme's default port.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// contextErr says "no answer within 5s" rather than "i/o timeout" when the
// probe's time ran out, and "interrupted" when it was cancelled.
func contextErr(ctx context.Context, err error, timeout time.Duration) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && timeout > 0:
		return fmt.Errorf("no answer within %s", timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return err
}
