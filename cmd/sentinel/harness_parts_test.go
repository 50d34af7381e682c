package main

// The real parts beside sentinel that several scenarios run against: an
// OpenSSH sshd per lab node, Debian's tinyproxy, and the fixtures' DEA
// controller with apps deployed.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
)

// sshLab is a lab on 3.4.1 whose every node, the core included, is reached
// over SSH: a real OpenSSH sshd per node on the node's loopback address.
// The sshds are stopped when the test ends.
func sshLab(t *testing.T, nodes int) (*testLab, map[string]*fixtures.SSHD) {
	t.Helper()
	return sshLabWith(t, fixtures.LabOptions{Nodes: nodes, Release: "3.4.1"})
}

// sshLabWith is sshLab with every lab option.
func sshLabWith(t *testing.T, opt fixtures.LabOptions) (*testLab, map[string]*fixtures.SSHD) {
	t.Helper()
	return sshLabAs(t, opt, func(string) string { return "root" })
}

// sshLabAs is sshLabWith logging in to each node as userOf(node): root,
// or a lab user (fixtures.EnsureLabUser), whom sentinel runs its agent as
// root through `sudo -n`.
func sshLabAs(t *testing.T, opt fixtures.LabOptions, userOf func(node string) string) (*testLab, map[string]*fixtures.SSHD) {
	t.Helper()
	if err := fixtures.CheckSSHD(); err != nil {
		t.Skip(err)
	}
	lab := newLabWith(t, opt)
	sshds := map[string]*fixtures.SSHD{}
	for _, n := range lab.Nodes {
		s, err := lab.ServeSSHAs(n.Name, userOf(n.Name))
		if err != nil {
			t.Fatal(err)
		}
		sshds[n.Name] = s
		t.Cleanup(func() {
			_ = s.Stop()
			if t.Failed() {
				t.Logf("sshd of %s (%s) log:\n%s", n.Name, s.Addr, s.Log())
			}
		})
	}
	for _, n := range lab.Nodes {
		if n.Transport != cluster.TransportSSH {
			t.Fatalf("node %s still uses the %s transport", n.Name, n.Transport)
		}
	}
	return lab, sshds
}

// checkReachedOverSSH fails unless every node's sshd let the orchestrator
// in: the run went over SSH, not around it.
func checkReachedOverSSH(t *testing.T, sshds map[string]*fixtures.SSHD) {
	t.Helper()
	for name, s := range sshds {
		if !strings.Contains(s.Log(), "Accepted publickey for "+s.User+" ") {
			t.Errorf("node %s: its sshd logged no login as %s", name, s.User)
		}
	}
}

// tinyproxy is Debian's tinyproxy, run in the foreground on loopback.
type tinyproxy struct {
	addr string
	log  string
	cmd  *exec.Cmd
}

func startTinyproxy(t *testing.T) *tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy is not installed (scripts/install-test-deps.sh installs it; CI runs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	p := &tinyproxy{addr: addr, log: filepath.Join(dir, "tinyproxy.log")}
	conf := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 60\nLogFile %q\nLogLevel Info\nMaxClients 100\n", port, p.log)
	if err := os.WriteFile(filepath.Join(dir, "tinyproxy.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-d", "-c", filepath.Join(dir, "tinyproxy.conf"))
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	// Ready when it accepts connections; bounded, not a fixed sleep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *tinyproxy) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

func (p *tinyproxy) logText(t *testing.T) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

type app struct {
	name      string
	instances int
	mb        int64
}

// withDEAController points every DEA of the lab at a fixture DEA
// controller that gives each memoryMB and runs apps.
func withDEAController(t *testing.T, lab *testLab, memoryMB int64, apps []app) *fixtures.DEAController {
	t.Helper()
	deas := map[string]int64{}
	for _, n := range lab.Nodes {
		if n.HasRole(release.RoleDEA) {
			deas[n.Name] = memoryMB
		}
	}
	ctl, err := fixtures.StartDEAController("127.0.0.1:0", deas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	for name := range deas {
		n, _ := lab.Node(name)
		if err := fixtures.UseDEAController(n.Root, ctl.URL()); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range apps {
		if err := ctl.Deploy(a.name, a.instances, a.mb); err != nil {
			t.Fatal(err)
		}
	}
	return ctl
}

// checkRetiredOneAtATime: the controller saw each DEA retired, then
// unretired, before the next one was retired.
func checkRetiredOneAtATime(t *testing.T, ctl *fixtures.DEAController, deas int) {
	t.Helper()
	retiring := ""
	seen := 0
	for _, e := range ctl.Events() {
		switch e.Kind {
		case fixtures.DEAEventRetire:
			if retiring != "" {
				t.Errorf("DEA %s retired while %s was retired", e.DEA, retiring)
			}
			retiring = e.DEA
			seen++
		case fixtures.DEAEventUnretire:
			if e.DEA != retiring {
				t.Errorf("DEA %s unretired while %q was the one retired", e.DEA, retiring)
			}
			retiring = ""
		}
	}
	if seen != deas {
		t.Errorf("%d retirements, want one per DEA (%d)", seen, deas)
	}
}
