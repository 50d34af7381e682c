package cluster

// Test helpers for the SSH transport: a real OpenSSH sshd on a loopback
// address, the real sentinel binary, and a few /proc walkers.

import (
	"bufio"
	"bytes"
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
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const sshdPath = "/usr/sbin/sshd"

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
		out, err := exec.Command("go", "build", "-o", b.path, "github.com/sentinel-paas/sentinel/cmd/sentinel").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build ./cmd/sentinel: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// needSSHD skips the test when the machine cannot run a test sshd.
func needSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("needs OpenSSH's %s (Debian: openssh-server; scripts/install-test-deps.sh installs it): %v", sshdPath, err)
	}
	for _, tool := range []string{"ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: openssh-client): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd's privilege separation runs only as root")
	}
}

// testSSHD is a running sshd.
type testSSHD struct {
	Host, Addr string
	Port       int
	Dir        string
	ClientKey  string                   // private key that may log in as root
	HostKeys   map[string]ssh.PublicKey // by key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256)
	Remote     string                   // where the node's sentinel binary goes

	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	log    bytes.Buffer
}

var keygenTypes = map[string]string{"ed25519": "ssh-ed25519", "rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256"}

// startSSHD runs /usr/sbin/sshd in the foreground on a free port of
// 127.0.0.2 with host keys of the given ssh-keygen types (default ed25519),
// and stops it when the test ends.
func startSSHD(t *testing.T, keyTypes ...string) *testSSHD {
	t.Helper()
	needSSHD(t)
	if len(keyTypes) == 0 {
		keyTypes = []string{"ed25519"}
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation directory
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &testSSHD{Host: "127.0.0.2", Dir: dir, HostKeys: map[string]ssh.PublicKey{}, Remote: filepath.Join(dir, "node", "bin", "sentinel")}
	var hostKeyLines []string
	for _, kt := range keyTypes {
		p := filepath.Join(dir, "ssh_host_"+kt+"_key")
		keygen(t, kt, p)
		d.HostKeys[keygenTypes[kt]] = readPublicKey(t, p+".pub")
		hostKeyLines = append(hostKeyLines, "HostKey "+p)
	}
	d.ClientKey = filepath.Join(dir, "client_key")
	keygen(t, "ed25519", d.ClientKey)
	pub, err := os.ReadFile(d.ClientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(pub))

	for try := 0; ; try++ {
		d.Port = freePort(t, d.Host)
		d.Addr = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
		cfg := filepath.Join(dir, "sshd_config")
		writeFile(t, cfg, fmt.Sprintf(`ListenAddress %s
%s
AuthorizedKeysFile %s
PermitRootLogin yes
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PrintMotd no
PidFile %s
LogLevel VERBOSE
`, d.Addr, strings.Join(hostKeyLines, "\n"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid")))
		err := d.start(cfg)
		if err == nil {
			break
		}
		if try == 2 {
			t.Fatalf("sshd did not start: %v\n%s", err, d.Log())
		}
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("sshd log:\n%s", d.Log())
		}
	})
	return d
}

// start runs sshd and waits, at most 10 s, for it to listen.
func (d *testSSHD) start(cfg string) error {
	d.cmd = exec.Command(sshdPath, "-D", "-e", "-f", cfg)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.exited = make(chan struct{})
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if !said && strings.Contains(sc.Text(), "Server listening on") {
				said = true
				close(listening)
			}
		}
	}()
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	select {
	case <-listening:
		return nil
	case <-d.exited:
		return fmt.Errorf("sshd exited")
	case <-time.After(10 * time.Second):
		d.Stop()
		return fmt.Errorf("sshd did not listen within 10 s")
	}
}

// Log is what sshd wrote so far.
func (d *testSSHD) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// Stop kills sshd and every connection it serves.
func (d *testSSHD) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
	default:
		sessions := d.Sessions()
		_ = d.cmd.Process.Kill()
		<-d.exited
		signalAll(sessions, syscall.SIGKILL)
	}
}

// Sessions are the per-connection sshd processes (not the listener, not
// the commands they run).
func (d *testSSHD) Sessions() []int {
	var out []int
	for _, p := range descendants(d.cmd.Process.Pid) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.HasPrefix(string(comm), "sshd") {
			out = append(out, p)
		}
	}
	return out
}

// KnownHosts writes a known_hosts file holding the host keys of the given
// types (all if none given) for hostport (default the sshd's address).
func (d *testSSHD) KnownHosts(t *testing.T, hostport string, types ...string) string {
	t.Helper()
	if hostport == "" {
		hostport = d.Addr
	}
	if len(types) == 0 {
		for typ := range d.HostKeys {
			types = append(types, typ)
		}
	}
	var lines []string
	for _, typ := range types {
		k, ok := d.HostKeys[typ]
		if !ok {
			t.Fatalf("sshd has no %s host key", typ)
		}
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(hostport)}, k))
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, p, strings.Join(lines, "\n")+"\n")
	return p
}

// Node is a node reached through this sshd with root as its root.
func (d *testSSHD) Node(t *testing.T, root string) Node {
	return Node{Name: "n1", Address: d.Host, Port: d.Port, Roles: []string{"dea"}, Root: root, Transport: TransportSSH,
		User: "root", KeyFile: d.ClientKey, KnownHosts: d.KnownHosts(t, ""), RemoteBinary: d.Remote}
}

func keygen(t *testing.T, typ, path string) {
	t.Helper()
	args := []string{"-q", "-t", typ, "-N", "", "-C", "", "-f", path}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
}

func readPublicKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

// descendants lists the processes below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
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
