package cluster_test

// A node reached over SSH for the transport's tests: a real OpenSSH sshd
// on a loopback address, started by the fixtures (the repository's one
// sshd starter), the real sentinel binary, and a few /proc walkers.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/fixtures"
)

var testTmp string // removed after the tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sentinel-cluster-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testTmp = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var sentinelBuild struct {
	once sync.Once
	path string
	err  error
}

// sentinelBinary builds the real sentinel binary, once per test process.
func sentinelBinary(t *testing.T) string {
	t.Helper()
	b := &sentinelBuild
	b.once.Do(func() {
		b.path = filepath.Join(testTmp, "sentinel")
		build := exec.Command("go", "build", "-o", b.path, "github.com/sentinel-paas/sentinel/cmd/sentinel")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build is
		out, err := build.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build ./cmd/sentinel: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// testSSHD is a node's sshd and where the node's sentinel binary goes.
type testSSHD struct {
	*fixtures.SSHD
	Remote string
}

// startSSHD runs sshd on a free port of 127.0.0.2 with host keys of the
// given ssh-keygen types (default ed25519), and stops it when the test
// ends. It skips the test when the machine cannot run one.
func startSSHD(t *testing.T, keyTypes ...string) *testSSHD {
	t.Helper()
	if err := fixtures.CheckSSHD(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	s, err := fixtures.StartSSHD(dir, "127.0.0.2", keyTypes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Log())
		}
	})
	return &testSSHD{SSHD: s, Remote: filepath.Join(dir, "node", "bin", "sentinel")}
}

// sshdSessions are the per-connection sshd processes (not the listener,
// not the commands they run): killing them cuts the connections, stopping
// them freezes the node.
func (d *testSSHD) sshdSessions() []int {
	var out []int
	for _, p := range d.Sessions() {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.HasPrefix(string(comm), "sshd") {
			out = append(out, p)
		}
	}
	return out
}

// knownHosts writes a known_hosts file holding the host keys of the given
// algorithms (all if none given) for hostport (default the sshd's address).
func (d *testSSHD) knownHosts(t *testing.T, hostport string, algos ...string) string {
	t.Helper()
	if hostport == "" {
		hostport = d.Addr
	}
	if len(algos) == 0 {
		for algo := range d.HostKeys {
			algos = append(algos, algo)
		}
	}
	var lines []string
	for _, algo := range algos {
		k, ok := d.HostKeys[algo]
		if !ok {
			t.Fatalf("sshd has no %s host key", algo)
		}
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(hostport)}, k))
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, p, strings.Join(lines, "\n")+"\n")
	return p
}

// node is a node reached through this sshd with root as its root.
func (d *testSSHD) node(t *testing.T, root string) cluster.Node {
	return cluster.Node{Name: "n1", Address: d.Host, Port: d.Port, Roles: []string{"dea"}, Root: root, Transport: cluster.TransportSSH,
		User: "root", KeyFile: d.KeyFile, KnownHosts: d.knownHosts(t, ""), RemoteBinary: d.Remote}
}

// keygen makes an ed25519 key pair without a passphrase at path.
func keygen(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -f %s: %v\n%s", path, err, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// countingProxy forwards 127.0.0.2:PORT to target and counts the TCP
// connections it accepted.
func countingProxy(t *testing.T, target string) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), accepted
}

// processesWithArg lists the processes with arg among their arguments.
func processesWithArg(arg string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			out = append(out, p)
		}
	}
	return out
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// holdAgentLock takes the node agent's lock of root, so that an agent
// operation that changes the node blocks (saying so in a log event) until
// the test ends. Agents left waiting are killed first.
func holdAgentLock(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, "var", "sentinel", "agent.lock")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		signalAll(processesWithArg(root), syscall.SIGKILL)
		f.Close()
	})
}
