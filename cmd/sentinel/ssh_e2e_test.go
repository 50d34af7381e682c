package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// checkPushed: each node got this build of sentinel at its remote_binary.
func checkPushed(t *testing.T, lab *testLab) {
	t.Helper()
	want := fileSum(t, sentinelBin)
	for _, n := range lab.Nodes {
		p := filepath.Join(n.Root, "bin", "sentinel")
		if n.RemoteBinary != p {
			t.Errorf("node %s: remote_binary %s, want %s", n.Name, n.RemoteBinary, p)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Errorf("node %s: the sentinel binary was not pushed: %v", n.Name, err)
			continue
		}
		if info.Mode()&0o111 == 0 {
			t.Errorf("node %s: %s is not executable (%v)", n.Name, p, info.Mode())
		}
		if got := fileSum(t, p); got != want {
			t.Errorf("node %s: %s is another build (sha256 %s, want %s)", n.Name, p, got, want)
		}
	}
}

// firstStepOrder is the order in which the run's journal first started a
// step on each node.
func firstStepOrder(t *testing.T, lab *testLab) []string {
	t.Helper()
	rep, err := resume.Read(lab.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range rep.Records {
		if r.Type != "step-start" {
			continue
		}
		var ref struct {
			Node string `json:"node"`
		}
		if err := json.Unmarshal(r.Data, &ref); err != nil {
			t.Fatalf("journal record %d: %v", r.Seq, err)
		}
		if !slices.Contains(order, ref.Node) {
			order = append(order, ref.Node)
		}
	}
	return order
}

// The docs' five-node cluster (core; data services; three DEAs running
// apps) over SSH as the product's docs set nodes up (the admin user
// stackato, passwordless sudo), its cache node filled over TLS while the
// upstream is still there. With the upstream gone, a cluster file that
// pins another certificate than the cache node's is refused (exit 2,
// nothing changed, no journal; a fill too, before any request, the
// token's included, reaches the daemon);
// with the right pin the upgrade runs from
// the cache over TLS, pushes this build of sentinel to every node, and
// upgrades the nodes in role order, the core node last, DEAs retired one
// at a time with no app down.
func TestUpgradeOverSSHFromCache(t *testing.T) {
	t.Parallel()
	if err := fixtures.EnsureLabUser(fixtures.SudoUser, true); err != nil {
		t.Skip(err)
	}
	lab, sshds := sshLabAs(t, fixtures.LabOptions{Layout: "five", Release: "3.4.1"}, func(string) string { return fixtures.SudoUser })
	lab.SetMaintenanceHook("true")
	ctl := withDEAController(t, lab, 2048, []app{{"shop", 2, 512}, {"blog", 3, 256}, {"cron", 1, 128}})
	lab.startCache(nil)
	checkWrongPinRefused(t, lab, "upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if _, err := os.Stat(filepath.Join(lab.Cache.ChannelDirectory(), "index.json")); err == nil {
		t.Error("the refused fill reached the cache daemon: it stored the channel")
	}
	lab.mustSucceed("upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	tw := lab.cutUpstream()
	cacheHost := strings.Split(lab.cacheIP, ":")[0]

	checkWrongPinRefused(t, lab, "upgrade", "3.4.2", "--cache-ip", cacheHost, "--yes")
	out := lab.mustSucceed("upgrade", "3.4.2", "--cache-ip", cacheHost, "--yes")
	if n := tw.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests during the upgrade from the cache", n)
	}
	checkAllOn(t, lab, "3.4.2")
	checkPushed(t, lab)
	checkReachedOverSSH(t, sshds)

	var want []string
	for _, n := range rollout.Order(lab.Nodes) {
		want = append(want, n.Name)
	}
	if !slices.Equal(want, []string{"dea-1", "dea-2", "dea-3", "services", "core"}) {
		t.Errorf("rollout.Order of the five-node lab: %v", want) // the documented role order
	}
	got := firstStepOrder(t, lab)
	if !slices.Equal(got, want) {
		t.Errorf("nodes upgraded in the order %v, want %v\n%s", got, want, out.stdout)
	}
	if len(got) == 0 || got[len(got)-1] != "core" {
		t.Errorf("the core node was not upgraded last: %v", got)
	}
	// Zero downtime over SSH too: the DEAs' hooks reached the controller.
	if err := ctl.CheckAvailability(); err != nil {
		t.Errorf("availability broke during the rollout: %v", err)
	}
	checkRetiredOneAtATime(t, ctl, 3)
}

// A node lost in the middle of its upgrade (its sshd and every connection
// to it gone) stops the run, resumable (exit 75), naming the node; once
// the node is back, --resume finishes every node.
func TestNodeLossOverSSH(t *testing.T) {
	lab, sshds := sshLab(t, 5)
	cmd := exec.Command(sentinelBin, "upgrade", "3.4.2", "--yes", "--node-retries", "2")
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+lab.ClusterFile)
	var stderr bytes.Buffer // read once the process has ended
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &background{t: t, cmd: cmd, stdout: bufio.NewReader(pipe)}
	t.Cleanup(b.kill)
	waitForLine(t, b.stdout, "[router-3] 3.4.2/router/install ")

	router := sshds["router-3"]
	sessions := router.Sessions()
	if len(sessions) == 0 {
		t.Fatal("router-3's sshd serves no connection: the run does not reach it over SSH")
	}
	// The node is lost, its connections with it: Stop kills the listener
	// and every process below it, the one connection the SSH transport
	// keeps open and the agent it may be running.
	if err := router.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range sessions {
		if processAlive(p) {
			t.Errorf("router-3's session process %d survived the loss", p)
		}
	}

	rest := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(b.stdout)
		rest <- string(data)
	}()
	var stdout string
	select {
	case stdout = <-rest:
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not stop within 60s of losing router-3")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 75 {
		t.Fatalf("run that lost router-3: %v, want exit 75\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr.String())
	}
	if !strings.Contains(stderr.String(), "run interrupted at node router-3") || !strings.Contains(stderr.String(), "sentinel upgrade --resume") {
		t.Errorf("the error does not name router-3 and --resume:\n%s", stderr.String())
	}
	if !strings.Contains(stdout, "cannot reach node router-3") || !strings.Contains(stdout, "(2 of 2)") {
		t.Errorf("the run did not try router-3 again before giving up:\n%s", stdout)
	}
	for _, name := range []string{"services-4", "core"} {
		n, _ := lab.Node(name)
		if rec, _ := steps.ReadRecord(n.Root); rec == nil || rec.Release != "3.4.1" {
			t.Errorf("node %s was upgraded past the lost router-3: %+v", name, rec)
		}
	}

	if err := router.Restart(); err != nil { // the node is back
		t.Fatal(err)
	}
	lab.mustSucceed("upgrade", "--resume")
	checkAllOn(t, lab, "3.4.2")
	checkPushed(t, lab)
}

// A node whose host key known_hosts does not vouch for is refused before
// anything changes: an unknown key with the ssh-keyscan advice, a changed
// one with CHANGED and ssh-keygen -R.
func TestUnknownHostKeyRefused(t *testing.T) {
	t.Parallel()
	lab, sshds := sshLab(t, 2)
	dea, _ := lab.Node("dea-1")
	s := sshds["dea-1"]
	before := map[string]string{}
	for _, n := range lab.Nodes {
		before[n.Name] = nodeDigest(t, n.Root)
	}
	useKnownHosts := func(content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		a := s.Access(dea.RemoteBinary)
		a.KnownHosts = p
		if err := lab.UseSSH("dea-1", a); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unchanged := func(what string) {
		t.Helper()
		for _, n := range lab.Nodes {
			if nodeDigest(t, n.Root) != before[n.Name] {
				t.Errorf("%s changed node %s", what, n.Name)
			}
		}
		if p, err := (rollout.Runs{Dir: lab.inventory().State()}).LatestPath(); err != nil || p != "" {
			t.Errorf("%s left a run journal %q (%v)", what, p, err)
		}
	}
	port := strconv.Itoa(s.Port)

	kh := useKnownHosts("")
	for _, args := range [][]string{{"upgrade", "3.4.2", "--dry-run"}, {"upgrade", "3.4.2", "--yes"}, {"preflight", "3.4.2"}} {
		r := lab.sentinel(nil, args...)
		// Permanent: no retry can help, so not the resumable 75 but bad
		// input (2), as a preflight check (3) where preflight reports it.
		if r.code != 2 && !(r.code == 3 && args[0] == "preflight") {
			t.Fatalf("sentinel %v with dea-1's host key unknown: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		all := r.stdout + r.stderr
		for _, want := range []string{"dea-1", s.Addr, "is not in " + kh, "ssh-keyscan -p " + port + " " + s.Host + " >> " + kh} {
			if !strings.Contains(all, want) {
				t.Errorf("sentinel %v (exit %d) does not say %q:\n%s", args, r.code, want, all)
			}
		}
		unchanged(strings.Join(args, " "))
	}

	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	kh = useKnownHosts(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, other) + "\n")
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--dry-run")
	all := r.stdout + r.stderr
	if r.code != 2 || !strings.Contains(all, "CHANGED") || !strings.Contains(all, "ssh-keygen -R '["+s.Host+"]:"+port+"'") || !strings.Contains(all, "dea-1") {
		t.Errorf("dry-run with a changed host key: exit %d\n%s", r.code, all)
	}
	unchanged("a changed host key")

	// With the lab's own known_hosts the same dry-run goes through.
	useKnownHosts(string(mustRead(t, s.KnownHosts)))
	lab.mustSucceed("upgrade", "3.4.2", "--dry-run")
	unchanged("dry-run")
}

// processAlive: pid runs (a zombie, dead but not yet reaped, does not).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	st := string(stat)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// checkWrongPinRefused runs sentinel with args while the cluster file pins
// another certificate than the one the lab's cache daemon serves, wants
// exit 2 with the message that names the host, both fingerprints and what
// to do, and nothing changed: no node, no journal. It puts the right pin
// back.
func checkWrongPinRefused(t *testing.T, lab *testLab, args ...string) {
	t.Helper()
	other, err := fixtures.NewTLSCert(fixtures.CertSpec{Subject: "another cache", IPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	served := lab.Cache.TLSFingerprint
	c := *lab.Cache
	c.TLSFingerprint = other.Fingerprint
	if err := lab.SetCacheDaemon(&c, c.Port, lab.CachePID); err != nil {
		t.Fatal(err)
	}
	before := lab.nodeDigests()
	r := lab.sentinel(nil, args...)
	t.Logf("wrong pin: stderr:\n%s", r.stderr)
	host := lab.cacheIP
	for _, want := range []string{"the cache daemon at " + host + " was refused", "expected " + other.Fingerprint, "presented " + served,
		`subject "CN=sentinel cache `, "valid ", "pin the new fingerprint", "sentinel cache cert"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed although the cache daemon was refused", name)
		}
	}
	if p, err := (rollout.Runs{Dir: lab.inventory().State()}).LatestPath(); err != nil || p != "" {
		t.Errorf("a journal was written (%q, %v)", p, err)
	}
	c.TLSFingerprint = served
	if err := lab.SetCacheDaemon(&c, c.Port, lab.CachePID); err != nil {
		t.Fatal(err)
	}
}

// Nodes reached as a user without passwordless sudo are named, each with
// the sudoers line to add, before any agent runs there: preflight refuses
// (exit 3), no node changed, no journal. Once the line is there, the same
// command upgrades every node.
func TestSudoMissingNamedBeforeAnythingChanges(t *testing.T) {
	t.Parallel()
	for _, u := range []struct {
		name string
		sudo bool
	}{{fixtures.SudoUser, true}, {fixtures.NoSudoUser, false}} {
		if err := fixtures.EnsureLabUser(u.name, u.sudo); err != nil {
			t.Skip(err)
		}
	}
	lacking := map[string]bool{"dea-2": true, "core": true}
	lab, _ := sshLabAs(t, fixtures.LabOptions{Nodes: 3, Release: "3.4.1"}, func(n string) string {
		if lacking[n] {
			return fixtures.NoSudoUser
		}
		return fixtures.SudoUser
	})
	before := lab.nodeDigests()
	r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes")
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != 3 {
		t.Errorf("exit %d, want 3 (preflight)", r.code)
	}
	line := fmt.Sprintf("%q", fixtures.NoSudoUser+" ALL = (root) NOPASSWD: ALL")
	for _, n := range lab.Nodes {
		said := strings.Contains(r.stderr, "node "+n.Name+": user "+fixtures.NoSudoUser+" cannot run sentinel's agent as root without a password")
		if said != lacking[n.Name] {
			t.Errorf("node %s (lacks sudo: %v) named: %v", n.Name, lacking[n.Name], said)
		}
	}
	for _, want := range []string{"preflight failed, nothing was changed", line, "/etc/sudoers.d/"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %s", want)
		}
	}
	for name, d := range lab.nodeDigests() {
		if d != before[name] {
			t.Errorf("node %s changed although preflight refused", name)
		}
	}
	if p, err := (rollout.Runs{Dir: lab.inventory().State()}).LatestPath(); err != nil || p != "" {
		t.Errorf("a journal was written (%q, %v)", p, err)
	}

	if err := fixtures.EnsureLabUser(fixtures.NoSudoUser, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fixtures.EnsureLabUser(fixtures.NoSudoUser, false) })
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	checkAllOn(t, lab, "3.4.2")
}
