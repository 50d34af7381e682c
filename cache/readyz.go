package cache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// readyPath answers whether the daemon can do its job: 200 when it can,
// 503 with the reasons when it cannot. /healthz only says it is alive.
const readyPath = "/readyz"

// certExpiryWarning: a certificate that expires sooner is still served,
// and /readyz warns.
const certExpiryWarning = 30 * 24 * time.Hour

// ReadyReport is the JSON body of /readyz.
type ReadyReport struct {
	Ready     bool          `json:"ready"`
	Reasons   []ReadyReason `json:"reasons"`  // why not ready; empty when ready
	Warnings  []string      `json:"warnings"` // served all the same
	PlainHTTP bool          `json:"plain_http"`
	// Proxy is what the daemon's own upstream fetches go through (its
	// configuration's proxy, else its environment's), as host:port; ""
	// when direct. The orchestrator compares it with the operator's.
	Proxy string      `json:"proxy"`
	TLS   *ReadyTLS   `json:"tls,omitempty"`
	Token *ReadyToken `json:"token,omitempty"`
	Disk  *ReadyDisk  `json:"disk,omitempty"`
}

// ReadyReason is one failed check: store, disk, channel or tls.
type ReadyReason struct {
	Check  string `json:"check"`
	Reason string `json:"reason"`
}

// ReadyTLS is the certificate in use.
type ReadyTLS struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	ExpiresInS  int64     `json:"expires_in_s"`
	ReloadedAt  time.Time `json:"reloaded_at"`
}

// ReadyToken is the prefetch token in use (never its value).
type ReadyToken struct {
	File     string    `json:"file"`
	Modified time.Time `json:"modified"`
	AgeS     int64     `json:"age_s"`
}

// ReadyDisk is the free space under the cache directory.
type ReadyDisk struct {
	FreeBytes    uint64 `json:"free_bytes"`
	MinFreeBytes uint64 `json:"min_free_bytes"`
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	rep := s.Ready()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep.Ready {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}

// Ready runs the readiness checks: the store readable and writable, the
// disk not full, a channel present, the certificate valid.
func (s *Server) Ready() ReadyReport {
	rep := ReadyReport{Reasons: []ReadyReason{}, Warnings: []string{}, PlainHTTP: s.cfg.PlainHTTP, Proxy: s.reportedProxy()}
	fail := func(check, format string, args ...any) {
		rep.Reasons = append(rep.Reasons, ReadyReason{Check: check, Reason: fmt.Sprintf(format, args...)})
	}
	dir := s.cfg.Store.Dir
	if err := probeStore(dir); err != nil {
		fail("store", "%v (the daemon runs as uid %d; check cache_dir's owner and, under systemd, that cache_dir is among the unit's ReadWritePaths: `sentinel cache dropin`)", err, os.Getuid())
	}
	if free, err := freeBytes(dir); err != nil {
		fail("disk", "cannot tell the free space of %s: %v", dir, err)
	} else {
		rep.Disk = &ReadyDisk{FreeBytes: free, MinFreeBytes: s.cfg.MinFreeDisk}
		if free < s.cfg.MinFreeDisk {
			fail("disk", "%s has %d MiB free, less than min_free_disk_mib (%d): prune with `sentinel cache prune` or move cache_dir to a larger disk", dir, free>>20, s.cfg.MinFreeDisk>>20)
		}
	}
	if !channelPresent(s.cfg.ChannelDir) {
		fail("channel", "no channel in %s: fill the cache from a machine that reaches the upstream, `sentinel upgrade VERSION --download-only --cache-ip <this node's address>`", s.cfg.ChannelDir)
	}
	if s.cfg.PlainHTTP {
		rep.Warnings = append(rep.Warnings, PlainHTTPWarning)
	}
	s.readyCredentials(&rep, fail)
	rep.Ready = len(rep.Reasons) == 0
	return rep
}

func (s *Server) readyCredentials(rep *ReadyReport, fail func(check, format string, args ...any)) {
	now := time.Now()
	if s.certs != nil {
		cert, leaf := s.certs.current()
		s.certs.mu.Lock()
		reloaded := s.certs.reloadedAt
		s.certs.mu.Unlock()
		rep.TLS = &ReadyTLS{Fingerprint: CertFingerprint(cert.Certificate[0]), NotAfter: leaf.NotAfter.UTC(),
			ExpiresInS: int64(leaf.NotAfter.Sub(now).Seconds()), ReloadedAt: reloaded.UTC()}
		switch {
		case now.After(leaf.NotAfter):
			fail("tls", "the certificate %s expired on %s: make a new one (`sentinel cache cert`) and pin its fingerprint in the cluster file", s.certs.certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
		case leaf.NotAfter.Sub(now) < certExpiryWarning:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the certificate %s expires on %s", s.certs.certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if s.tokens != nil {
		s.tokens.Token() // reload if changed
		mod := s.tokens.modTime()
		rep.Token = &ReadyToken{File: s.tokens.path, Modified: mod.UTC(), AgeS: int64(now.Sub(mod).Seconds())}
	} else if s.cfg.Token == "" {
		rep.Warnings = append(rep.Warnings, "no token_file: prefetch is disabled, so `--download-only` cannot fill this cache")
	}
}

// channelPresent: the cache holds a channel's index.
func channelPresent(channelDir string) bool {
	if channelDir == "" {
		return false
	}
	fi, err := os.Stat(filepath.Join(channelDir, "index.json"))
	return err == nil && fi.Mode().IsRegular()
}

// probeStore checks that the cache directory can be listed and written.
func probeStore(dir string) error {
	if _, err := os.ReadDir(dir); err != nil {
		return fmt.Errorf("cannot read the cache directory: %v", err)
	}
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return fmt.Errorf("cannot write in the cache directory: %v", err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	os.Remove(name)
	if werr != nil || cerr != nil {
		return fmt.Errorf("cannot write in the cache directory: %v", firstErr(werr, cerr))
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func fileSysIno(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}
