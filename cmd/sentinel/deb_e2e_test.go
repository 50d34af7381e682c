package main

// The Debian package, end to end on this machine, as root: `make deb`,
// dpkg -i, the installed command, man page and completion, the unit
// verified by systemd-analyze, the daemon started exactly as the unit's
// ExecStart says (as its user, with the packaged configuration) answering
// over TLS with the certificate postinst made, dpkg -r keeping the cache's
// data and --purge removing the rest.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/cluster"
)

const debVersion = "0.9.1"

func TestDebianPackage(t *testing.T) {
	longScenario(t)
	for _, tool := range []string{"dpkg", "make", "setpriv", "useradd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: dpkg -i installs on this machine")
	}
	if out, err := exec.Command("dpkg", "-s", "sentinel").CombinedOutput(); err == nil && strings.Contains(string(out), "Status: install ok installed") {
		t.Skip("a sentinel package is installed on this machine already: this test would replace and purge it")
	}
	bin := t.TempDir()
	mk := exec.Command("make", "-C", repoRoot(t), "deb", "BIN="+bin, "VERSION=v"+debVersion)
	mk.Env = cleanMakeEnv()
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb := filepath.Join(bin, "sentinel_"+debVersion+"-1_"+goarch(t)+".deb")
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "sentinel").Run() })

	out := run(t, "dpkg", "-i", deb)
	m := regexp.MustCompile(`fingerprint (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("postinst printed no fingerprint to pin:\n%s", out)
	}
	fingerprint := m[1]

	if v := run(t, "sentinel", "--version"); !strings.Contains(v, debVersion) {
		t.Errorf("sentinel --version: %q", v)
	}
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/sentinel-d.service"); err != nil {
		t.Errorf("sentinel-d.service not enabled by the install: %v", err)
	}
	checkManAndCompletion(t)
	checkUnitVerifies(t)
	checkReinstallKeepsCredentials(t, deb)

	execStart, userName := unitExecStart(t)
	client, addr := daemonClient(t, fingerprint)
	lab := newLab(t, 1, "3.4.1")
	configureDaemon(t, lab)
	stop := startAsUnit(t, execStart, userName)

	rep := readyz(t, client, addr, http.StatusServiceUnavailable)
	if len(rep.Reasons) != 1 || rep.Reasons[0].Check != "channel" || rep.TLS == nil || rep.TLS.Fingerprint != fingerprint {
		t.Fatalf("/readyz before the fill: %+v", rep)
	}
	digest := fillAsTheProductDoes(t, lab, fingerprint)
	if rep := readyz(t, client, addr, http.StatusOK); !rep.Ready {
		t.Errorf("/readyz after the fill: %+v", rep)
	}
	stop()
	moveCacheDir(t, execStart, userName, client, addr)

	stored := filepath.Join("/var/lib/sentinel-d", "sha256", digest)
	run(t, "dpkg", "-r", "sentinel")
	for _, p := range []string{stored, "/etc/sentinel/sentinel-d.yaml", "/etc/sentinel/sentinel-d.token", "/etc/sentinel/tls/sentinel-d.crt"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("dpkg -r removed %s: %v", p, err)
		}
	}
	if _, err := os.Stat("/usr/bin/sentinel"); err == nil {
		t.Error("dpkg -r left /usr/bin/sentinel")
	}
	run(t, "dpkg", "--purge", "sentinel")
	for _, p := range []string{"/var/lib/sentinel-d", "/etc/sentinel", "/etc/systemd/system/sentinel-d.service.d", "/etc/systemd/system/multi-user.target.wants/sentinel-d.service"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("dpkg --purge left %s", p)
		}
	}
	if _, err := user.Lookup("sentinel-d"); err == nil {
		t.Error("dpkg --purge left the user sentinel-d")
	}
}

func cleanMakeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	return env
}

func goarch(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(run(t, "go", "env", "GOARCH"))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func checkManAndCompletion(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		t.Errorf("no man (scripts/install-test-deps.sh installs man-db): %v", err)
	} else {
		cmd := exec.Command("man", "sentinel")
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
		page, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(page), "sentinel") || !strings.Contains(string(page), "SEE ALSO") {
			t.Errorf("man sentinel: %v\n%s", err, page)
		}
	}
	comp, err := os.ReadFile("/usr/share/bash-completion/completions/sentinel")
	if err != nil || !strings.Contains(string(comp), "__start_sentinel") {
		t.Errorf("bash completion: %v", err)
	}
}

func checkUnitVerifies(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Errorf("no systemd-analyze (scripts/install-test-deps.sh installs systemd): %v", err)
		return
	}
	out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/sentinel-d.service").CombinedOutput()
	if err != nil || strings.Contains(string(out), "sentinel-d.service") {
		t.Errorf("systemd-analyze verify sentinel-d.service: %v\n%s", err, out)
	}
	// The sandbox, as systemd rates it: exposure at most 2.0 of 10 ("OK";
	// the unit has 1.5). Fails if its sandboxing settings are dropped.
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=20", "/lib/systemd/system/sentinel-d.service").CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security sentinel-d.service: exposure above 2.0: %v\n%s", err, out)
	}
}

// unitExecStart reads ExecStart= and User= from the installed unit.
func unitExecStart(t *testing.T) ([]string, string) {
	t.Helper()
	data, err := os.ReadFile("/lib/systemd/system/sentinel-d.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	var userName string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "User="); ok {
			userName = strings.TrimSpace(v)
		}
	}
	if len(execStart) == 0 || userName == "" {
		t.Fatalf("the unit has no ExecStart or User:\n%s", data)
	}
	return execStart, userName
}

// daemonClient trusts the certificate postinst made, and checks that it is
// the one whose fingerprint postinst printed.
func daemonClient(t *testing.T, fingerprint string) (*http.Client, string) {
	t.Helper()
	pemBytes, err := os.ReadFile("/etc/sentinel/tls/sentinel-d.crt")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("the packaged certificate does not parse")
	}
	verify := func(cs tls.ConnectionState) error {
		if got := cache.CertFingerprint(cs.PeerCertificates[0].Raw); got != fingerprint {
			t.Errorf("the daemon presents %s, postinst printed %s", got, fingerprint)
		}
		return nil
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, VerifyConnection: verify}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}, "127.0.0.1:9077"
}

// startAsUnit runs the unit's ExecStart as its user and waits for it to
// listen.
func startAsUnit(t *testing.T, execStart []string, userName string) func() {
	t.Helper()
	args := append([]string{"--reuid", userName, "--regid", userName, "--init-groups", "--"}, execStart...)
	cmd := exec.Command("setpriv", args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		t.Fatalf("the daemon as the unit starts it: %q, %v", line, err)
	}
	return stop
}

func readyz(t *testing.T, c *http.Client, addr string, want int) cache.ReadyReport {
	t.Helper()
	resp, err := c.Get("https://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep cache.ReadyReport
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != want {
		t.Fatalf("/readyz: %d (want %d), %v\n%s", resp.StatusCode, want, err, body)
	}
	return rep
}

// fillAsTheProductDoes fills the packaged daemon the way an operator does:
// the daemon's config given the channel's root and upstream (a lab's), the
// daemon started, then `sentinel upgrade --download-only` from the lab's
// cluster file, whose cache section pins the fingerprint postinst printed
// and names the packaged token. It returns a digest the fill stored.
func fillAsTheProductDoes(t *testing.T, lab *testLab, fingerprint string) string {
	t.Helper()
	c := &cluster.CacheNode{Node: lab.core().Name, Dir: "/var/lib/sentinel-d", TokenFile: "/etc/sentinel/sentinel-d.token", TLSFingerprint: fingerprint}
	if err := lab.SetCacheDaemon(c, 9077, 0); err != nil {
		t.Fatal(err)
	}
	run(t, "sentinel", "upgrade", "3.4.2", "--download-only", "--cluster", lab.ClusterFile, "--cache-ip", lab.core().Address, "--yes")
	sha, _ := lab.artifactOf("3.4.2", "router")
	return sha
}

// configureDaemon gives the packaged configuration the lab's channel root
// (copied where the daemon's user reads it) and upstream.
func configureDaemon(t *testing.T, lab *testLab) {
	t.Helper()
	const conf = "/etc/sentinel/sentinel-d.yaml"
	// Outside /etc/sentinel, which --purge must leave empty, and readable
	// by the daemon's user (t.TempDir is not).
	dir, err := os.MkdirTemp("", "sentinel-trust-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "root.json")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, mustRead(t, lab.TrustRoot), 0o644); err != nil {
		t.Fatal(err)
	}
	data := string(mustRead(t, conf))
	for key, v := range map[string]string{"upstream": lab.upstream.URL, "trust_root": root} {
		line := regexp.MustCompile(`(?m)^` + key + `: .*$`)
		if !line.MatchString(data) {
			t.Fatalf("the packaged %s has no %s setting", conf, key)
		}
		data = line.ReplaceAllString(data, key+": "+strconv.Quote(v))
	}
	if err := os.WriteFile(conf, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// moveCacheDir follows the docs: cache_dir moved to another disk in the
// packaged configuration, `sentinel cache dropin --owner sentinel-d`, the
// daemon started again: it writes there (/readyz's store check passes; the
// new cache holds no channel yet).
func moveCacheDir(t *testing.T, execStart []string, userName string, client *http.Client, addr string) {
	t.Helper()
	moved, err := os.MkdirTemp("/mnt", "sentinel-cache-")
	if err != nil {
		t.Skipf("no /mnt to move cache_dir to: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(moved) })
	const conf = "/etc/sentinel/sentinel-d.yaml"
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "cache_dir: /var/lib/sentinel-d", "cache_dir: "+moved, 1)
	if edited == string(data) {
		t.Fatalf("no cache_dir line to edit in %s", conf)
	}
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "sentinel", "cache", "dropin", "--config", conf, "--owner", userName)
	dropIn, err := os.ReadFile(cache.DefaultDropInPath)
	if err != nil || !strings.Contains(string(dropIn), "ReadWritePaths=\""+moved+"\"") {
		t.Fatalf("the drop-in after the move: %v\n%s", err, dropIn)
	}
	checkUnitVerifies(t)
	stop := startAsUnit(t, execStart, userName)
	defer stop()
	rep := readyz(t, client, addr, http.StatusServiceUnavailable)
	if len(rep.Reasons) != 1 || rep.Reasons[0].Check != "channel" || !strings.Contains(rep.Reasons[0].Reason, moved) {
		t.Errorf("/readyz with cache_dir moved: %+v", rep)
	}
}

// checkReinstallKeepsCredentials installs the package again (postinst
// configure with the old version, as an upgrade runs it): the token, the
// certificate and the key stay as they were.
func checkReinstallKeepsCredentials(t *testing.T, deb string) {
	t.Helper()
	files := []string{"/etc/sentinel/sentinel-d.token", "/etc/sentinel/tls/sentinel-d.crt", "/etc/sentinel/tls/sentinel-d.key"}
	before := map[string]string{}
	for _, f := range files {
		before[f] = string(mustRead(t, f))
	}
	if out := run(t, "dpkg", "-i", deb); strings.Contains(out, "fingerprint") || strings.Contains(out, "made the prefetch token") {
		t.Errorf("a reinstall made new credentials:\n%s", out)
	}
	for _, f := range files {
		if string(mustRead(t, f)) != before[f] {
			t.Errorf("a reinstall changed %s", f)
		}
	}
}
