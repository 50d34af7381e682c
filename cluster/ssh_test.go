package cluster_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sentinel-paas/sentinel/cluster"
)

// factsResult is the part of the agent's facts result the tests read (the
// steps package, which defines it, imports this one).
type factsResult struct {
	Facts struct {
		Node string `json:"node"`
		Root string `json:"root"`
	} `json:"facts"`
}

// logRecorder collects the log events of calls.
type logRecorder struct {
	mu   sync.Mutex
	logs []string
}

func (r *logRecorder) on(ev cluster.Event) {
	if ev.Kind == "log" {
		r.mu.Lock()
		r.logs = append(r.logs, ev.Message)
		r.mu.Unlock()
	}
}

func (r *logRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.logs
	r.logs = nil
	return l
}

func pushes(logs []string) (n int) {
	for _, l := range logs {
		if strings.HasPrefix(l, "pushed sentinel (sha256 ") {
			n++
		}
	}
	return n
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func dialSSH(t *testing.T, n cluster.Node) *cluster.SSH {
	t.Helper()
	s, err := cluster.DialSSH(n, sentinelBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func callFacts(t *testing.T, s *cluster.SSH, on func(cluster.Event)) factsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var res factsResult
	if err := s.Call(ctx, "facts", struct{}{}, &res, on); err != nil {
		t.Fatalf("facts: %v", err)
	}
	return res
}

// The binary is pushed when the node lacks it, not when it has the same
// build, and again when its copy differs; the agent then answers.
func TestSSHPushesAgentByDigest(t *testing.T) {
	d := startSSHD(t)
	root := t.TempDir()
	n := d.node(t, root)
	local := sentinelBinary(t)
	var rec logRecorder

	s := dialSSH(t, n)
	res := callFacts(t, s, rec.on)
	if res.Facts.Node != "n1" || res.Facts.Root != root {
		t.Errorf("facts = %+v, want node n1, root %s", res.Facts, root)
	}
	logs := rec.take()
	if pushes(logs) != 1 || !strings.Contains(logs[0], fileDigest(t, local)) || !strings.Contains(logs[0], "it had none") {
		t.Fatalf("first call: logs %q, want one push of sha256 %s", logs, fileDigest(t, local))
	}
	if got, want := fileDigest(t, d.Remote), fileDigest(t, local); got != want {
		t.Fatalf("node binary sha256 %s, want %s", got, want)
	}
	if st, err := os.Stat(d.Remote); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("node binary: %v, %v; want mode 0755", st, err)
	}
	if tmps, _ := filepath.Glob(d.Remote + ".tmp-*"); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	callFacts(t, s, rec.on)
	if logs := rec.take(); pushes(logs) != 0 {
		t.Errorf("second call on the same connection: logs %q, want no push", logs)
	}

	// A new connection checks the digest again: same build, no push.
	s2 := dialSSH(t, n)
	callFacts(t, s2, rec.on)
	if logs := rec.take(); pushes(logs) != 0 {
		t.Errorf("new connection, same build: logs %q, want no push", logs)
	}

	// Another build on the node: pushed again.
	f, err := os.OpenFile(d.Remote, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("altered"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	altered := fileDigest(t, d.Remote)
	s3 := dialSSH(t, n)
	if res := callFacts(t, s3, rec.on); res.Facts.Root != root {
		t.Errorf("facts after push = %+v", res.Facts)
	}
	if logs := rec.take(); pushes(logs) != 1 || !strings.Contains(logs[0], "it had sha256 "+altered) {
		t.Errorf("altered binary: logs %q, want one push replacing sha256 %s", logs, altered)
	}
	if got, want := fileDigest(t, d.Remote), fileDigest(t, local); got != want {
		t.Errorf("node binary sha256 %s after the push, want %s", got, want)
	}

	// The binary vanishes under a connection that checked it: that call
	// fails (retryable), the next one pushes it again.
	if err := os.Remove(d.Remote); err != nil {
		t.Fatal(err)
	}
	var ue *cluster.UnreachableError
	if err := s3.Call(t.Context(), "facts", struct{}{}, nil, nil); !errors.As(err, &ue) {
		t.Fatalf("binary removed: %v (%T), want *UnreachableError", err, err)
	}
	callFacts(t, s3, rec.on)
	if logs := rec.take(); pushes(logs) != 1 {
		t.Errorf("after the binary vanished: logs %q, want one push", logs)
	}
}

// EnsureAgent alone pushes; an agent error comes back as *AgentError.
func TestSSHEnsureAgentAndAgentError(t *testing.T) {
	d := startSSHD(t)
	s := dialSSH(t, d.node(t, t.TempDir()))
	var rec logRecorder
	if err := s.EnsureAgent(t.Context(), rec.on); err != nil {
		t.Fatal(err)
	}
	if logs := rec.take(); pushes(logs) != 1 {
		t.Errorf("EnsureAgent: logs %q, want one push", logs)
	}
	err := s.Call(t.Context(), "no-such-op", struct{}{}, nil, nil)
	var ae *cluster.AgentError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "unknown operation") {
		t.Fatalf("unknown op: %v (%T), want *AgentError", err, err)
	}
}

// One TCP connection serves every call, and a broken one is replaced.
func TestSSHReusesConnection(t *testing.T) {
	d := startSSHD(t)
	proxy, accepted := countingProxy(t, d.Addr)
	host, port, _ := net.SplitHostPort(proxy)
	n := d.node(t, t.TempDir())
	n.Port, _ = strconv.Atoi(port)
	n.KnownHosts = d.knownHosts(t, proxy)
	s := dialSSH(t, n)
	for i := 0; i < 20; i++ {
		callFacts(t, s, nil)
	}
	if got := accepted.Load(); got != 1 {
		t.Fatalf("20 calls made %d TCP connections, want 1", got)
	}
	if host != d.Host {
		t.Fatalf("proxy on %s", host)
	}

	// The node's sshd drops the connection between two calls: the next
	// call connects again and works.
	sessions := d.sshdSessions()
	if len(sessions) == 0 {
		t.Fatal("no sshd session process found")
	}
	signalAll(sessions, syscall.SIGKILL)
	var rec logRecorder
	callFacts(t, s, rec.on)
	if got := accepted.Load(); got != 2 {
		t.Errorf("after the connection broke: %d TCP connections, want 2", got)
	}
	if logs := rec.take(); pushes(logs) != 0 {
		t.Errorf("reconnect: logs %q, want no push (same build)", logs)
	}
}

// A node whose sshd is gone is unreachable, at once.
func TestSSHNodeDown(t *testing.T) {
	d := startSSHD(t)
	s := dialSSH(t, d.node(t, t.TempDir()))
	callFacts(t, s, nil)
	d.Stop()
	start := time.Now()
	err := s.Call(t.Context(), "facts", struct{}{}, nil, nil)
	var ue *cluster.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("call to a stopped node: %v (%T), want *UnreachableError", err, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	t.Logf("%v", err)
}

// Closing the transport while it connects to a node that accepted the TCP
// connection and then says nothing (a hung sshd) ends the dial at once:
// Close does not wait for the dial's timeout, and the call it was for
// ends saying the transport was closed.
func TestSSHCloseEndsADialUnderWay(t *testing.T) {
	d := startSSHD(t)
	silent, err := net.Listen("tcp", net.JoinHostPort(d.Host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := silent.Accept(); err == nil {
			accepted <- c
		}
	}()
	n := d.node(t, t.TempDir())
	n.Port = silent.Addr().(*net.TCPAddr).Port
	s := dialSSH(t, n)
	s.SetDialTimeout(time.Hour)
	called := make(chan error, 1)
	go func() { called <- s.Call(t.Context(), "facts", struct{}{}, nil, nil) }()
	var held net.Conn
	select {
	case held = <-accepted:
	case err := <-called:
		t.Fatalf("the call ended before it connected: %v", err)
	}
	defer held.Close()

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close waited for the dial to a silent node (whose timeout is an hour)")
	}
	err = <-called
	if err == nil || !strings.Contains(err.Error(), "the SSH transport was closed") {
		t.Fatalf("the call whose dial was ended: %v, want it to say the transport was closed", err)
	}
	// The node's side of the connection is closed too.
	_ = held.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(io.Discard, held); err != nil {
		t.Errorf("the silent node's connection stayed open: %v", err)
	}
}

// The node's sshd processes die while an operation runs: the call ends
// with *UnreachableError instead of hanging.
func TestSSHNodeLostMidCall(t *testing.T) {
	d := startSSHD(t)
	root := t.TempDir()
	holdAgentLock(t, root)
	s := dialSSH(t, d.node(t, root))
	killed := false
	err := s.Call(t.Context(), "backup", map[string]string{"backup_id": "x"}, nil, func(ev cluster.Event) {
		if strings.Contains(ev.Message, "waiting for another sentinel agent") && !killed {
			killed = true
			signalAll(d.sshdSessions(), syscall.SIGKILL)
		}
	})
	if !killed {
		t.Fatalf("the agent never waited for the lock: %v", err)
	}
	var ue *cluster.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("call through a killed connection: %v (%T), want *UnreachableError", err, err)
	}
	t.Logf("%v", err)
}

// The node freezes (its sshd stops answering, the TCP connection stays):
// the keep-alives go unanswered, the connection is dropped and the call
// ends with *UnreachableError.
func TestSSHNodeFrozenMidCall(t *testing.T) {
	d := startSSHD(t)
	root := t.TempDir()
	holdAgentLock(t, root)
	s := dialSSH(t, d.node(t, root))
	s.SetKeepAlive(100 * time.Millisecond) // 15 s in production
	var frozen []int
	t.Cleanup(func() { signalAll(frozen, syscall.SIGCONT) })
	start := time.Now()
	var froze time.Time
	err := s.Call(t.Context(), "backup", map[string]string{"backup_id": "x"}, nil, func(ev cluster.Event) {
		if strings.Contains(ev.Message, "waiting for another sentinel agent") && frozen == nil {
			frozen = d.sshdSessions()
			froze = time.Now()
			signalAll(frozen, syscall.SIGSTOP)
		}
	})
	if frozen == nil {
		t.Fatalf("the agent never waited for the lock: %v", err)
	}
	var ue *cluster.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("call on a frozen node: %v (%T), want *UnreachableError", err, err)
	}
	if took := time.Since(froze); took > 10*time.Second {
		t.Errorf("the frozen node was given up after %v, want about 3 keep-alive intervals", took)
	}
	t.Logf("%v (call %v, frozen %v)", err, time.Since(start), time.Since(froze))
}

// Cancelling a call kills the agent on the node; the connection stays
// usable.
func TestSSHCancelKillsRemoteAgent(t *testing.T) {
	d := startSSHD(t)
	proxy, accepted := countingProxy(t, d.Addr)
	_, port, _ := net.SplitHostPort(proxy)
	root := t.TempDir()
	holdAgentLock(t, root)
	n := d.node(t, root)
	n.Port, _ = strconv.Atoi(port)
	n.KnownHosts = d.knownHosts(t, proxy)
	s := dialSSH(t, n)
	cancelCall(t, s, root)
	callFacts(t, s, nil)
	if got := accepted.Load(); got != 1 {
		t.Errorf("%d TCP connections, want 1: the cancel must not cost the connection", got)
	}
}

// cancelCall starts an operation that waits for the agent lock, cancels it
// once the agent says it waits, and checks that no agent of root is left.
func cancelCall(t *testing.T, s *cluster.SSH, root string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var running []int
	err := s.Call(ctx, "backup", map[string]string{"backup_id": "x"}, nil, func(ev cluster.Event) {
		if strings.Contains(ev.Message, "waiting for another sentinel agent") && running == nil {
			running = processesWithArg(root)
			cancel()
		}
	})
	if running == nil {
		t.Fatalf("the agent never waited for the lock (or was not found in /proc): %v", err)
	}
	var ue *cluster.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v (%T), want *UnreachableError wrapping context.Canceled", err, err)
	}
	if left := processesWithArg(root); len(left) > 0 {
		t.Fatalf("agent processes %v (of %v) still run after the cancel", left, running)
	}
}

// Host keys are checked against known_hosts, with no way around it.
func TestSSHHostKeyErrors(t *testing.T) {
	d := startSSHD(t)
	n := d.node(t, t.TempDir())
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ssh.NewPublicKey(other.Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostport := fmt.Sprintf("[%s]:%d", d.Host, d.Port)

	for _, tc := range []struct {
		name, knownHosts string
		changed          bool
		want             []string
	}{
		{name: "unknown", knownHosts: knownhosts.Line([]string{"[" + d.Host + "]:1"}, d.HostKeys["ssh-ed25519"]) + "\n",
			want: []string{"host key of " + d.Addr + " is not in ", fmt.Sprintf("then run: ssh-keyscan -p %d %s >> ", d.Port, d.Host)}},
		{name: "changed", knownHosts: knownhosts.Line([]string{hostport}, otherKey) + "\n", changed: true,
			want: []string{"host key of " + d.Addr + " CHANGED (possible man-in-the-middle)", fmt.Sprintf("ssh-keygen -R '%s' -f ", hostport)}},
		{name: "missing file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := n
			n.KnownHosts = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if tc.knownHosts != "" {
				writeFile(t, n.KnownHosts, tc.knownHosts)
			}
			s := dialSSH(t, n)
			err := s.Call(t.Context(), "facts", struct{}{}, nil, nil)
			t.Log(err)
			var he *cluster.HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("got %v (%T), want *HostKeyError", err, err)
			}
			var ue *cluster.UnreachableError
			if errors.As(err, &ue) {
				t.Errorf("a host key error must not be retryable: %v", err)
			}
			if he.Changed != tc.changed || he.Host != d.Addr || he.KnownHosts != n.KnownHosts {
				t.Errorf("HostKeyError = %+v", he)
			}
			for _, w := range append(tc.want, n.KnownHosts) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Stat(d.Remote); err == nil {
				t.Errorf("the binary was pushed to a node whose key was refused")
			}
		})
	}
}

// With several host keys on the server and one of them in known_hosts,
// the client asks for that one: the connection works whichever it is.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	d := startSSHD(t, "rsa", "ecdsa", "ed25519")
	for typ := range d.HostKeys {
		t.Run(typ, func(t *testing.T) {
			n := d.node(t, t.TempDir())
			n.KnownHosts = d.knownHosts(t, "", typ)
			callFacts(t, dialSSH(t, n), nil)
		})
	}

	// Without HostKeyAlgorithms, x/crypto asks for ECDSA or RSA before
	// Ed25519 and a known host fails: the above is not vacuous.
	kh, err := knownhosts.New(d.knownHosts(t, "", "ssh-ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	signer := loadTestKey(t, d.KeyFile)
	c, err := ssh.Dial("tcp", d.Addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: kh})
	if err == nil {
		c.Close()
		t.Fatal("plain x/crypto dial with only the ed25519 key known succeeded: the test proves nothing")
	}
	if !strings.Contains(err.Error(), "key mismatch") {
		t.Errorf("plain dial: %v, want key mismatch", err)
	}
}

func loadTestKey(t *testing.T, p string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// A key the node does not accept: a permanent error that says who, where
// and with what.
func TestSSHAuthFailure(t *testing.T) {
	d := startSSHD(t)
	n := d.node(t, t.TempDir())
	n.KeyFile = filepath.Join(t.TempDir(), "stranger")
	keygen(t, n.KeyFile)
	err := dialSSH(t, n).Call(t.Context(), "facts", struct{}{}, nil, nil)
	if err == nil {
		t.Fatal("logged in with a key the node does not know")
	}
	t.Log(err)
	var ue *cluster.UnreachableError
	var he *cluster.HostKeyError
	if errors.As(err, &ue) || errors.As(err, &he) {
		t.Errorf("auth failure is %T, want a plain permanent error", err)
	}
	for _, w := range []string{"as root", d.Addr, "key_file " + n.KeyFile} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// Without key_file: the keys of the SSH agent, else ~/.ssh/id_ed25519;
// with none, the error says what was tried.
func TestSSHAgentAndDefaultKeys(t *testing.T) {
	d := startSSHD(t)
	for _, tool := range []string{"ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: openssh-client): %v", tool, err)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home) // no default keys yet
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	stdout, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	// ssh-agent prints SSH_AUTH_SOCK=... once it listens.
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.Contains(line, "SSH_AUTH_SOCK") {
		t.Fatalf("ssh-agent: %q, %v", line, err)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	if out, err := exec.Command("ssh-add", d.KeyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	n := d.node(t, t.TempDir())
	n.KeyFile = ""
	callFacts(t, dialSSH(t, n), nil)

	t.Setenv("SSH_AUTH_SOCK", "")
	err = dialSSH(t, n).Call(t.Context(), "facts", struct{}{}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "no SSH key to log in to "+d.Addr+" as root") || !strings.Contains(err.Error(), "$SSH_AUTH_SOCK unset") {
		t.Fatalf("no credentials: %v", err)
	}
	t.Log(err)

	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(home, ".ssh", "id_ed25519"), string(key))
	callFacts(t, dialSSH(t, n), nil)
}

// sudo: true runs the agent (and the push) with sudo -n.
func TestSSHSudo(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("sudo is not installed (Debian: apt-get install sudo)")
	}
	d := startSSHD(t)
	root := t.TempDir()
	n := d.node(t, root)
	n.Sudo = true
	s := dialSSH(t, n)
	if got := s.Command("a b", "c"); got != "sudo -n -- 'a b' c" {
		t.Errorf("command = %q", got)
	}
	var rec logRecorder
	if res := callFacts(t, s, rec.on); res.Facts.Root != root {
		t.Errorf("facts = %+v", res.Facts)
	}
	if logs := rec.take(); pushes(logs) != 1 {
		t.Errorf("logs %q, want one push", logs)
	}
	holdAgentLock(t, root)
	cancelCall(t, s, root)
}
