package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// The SSH transport runs `[sudo -n] REMOTE_BINARY node OP --root R --node N`
// on the node over one SSH connection per node, with the same protocol as
// the local transport. Before the first operation on a connection it makes
// sure the node runs this very build of sentinel (push.go).

// SSH defaults.
const (
	DefaultSSHPort      = 22
	DefaultRemoteBinary = "/usr/local/bin/sentinel"

	sshDialTimeout    = 10 * time.Second
	sshKeepAlive      = 15 * time.Second
	sshKeepAliveMiss  = 3               // unanswered keep-alives before the connection is given up
	sshCancelGrace    = 5 * time.Second // after a cancel, how long the remote agent has to die before the connection is dropped
	sshKeepAliveQuery = "keepalive@openssh.com"
)

// SSHPort is the node's SSH port.
func (n Node) SSHPort() int {
	if n.Port != 0 {
		return n.Port
	}
	return DefaultSSHPort
}

// SSHUser is the user the orchestrator logs in as: the node's user, else
// the local user.
func (n Node) SSHUser() string {
	if n.User != "" {
		return n.User
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

// UsesSudo says whether the agent runs through `sudo -n`: when the
// cluster file says sudo: true, and always for a login user other than
// root, since the agent needs root on the node.
func (n Node) UsesSudo() bool { return n.Sudo || n.SSHUser() != "root" }

// KnownHostsFile is the known_hosts file the node's host key is checked
// against.
func (n Node) KnownHostsFile() string {
	if n.KnownHosts != "" {
		return expandHome(n.KnownHosts)
	}
	return expandHome("~/.ssh/known_hosts")
}

// RemoteBinaryPath is where the sentinel binary lives on the node.
func (n Node) RemoteBinaryPath() string {
	if n.RemoteBinary != "" {
		return n.RemoteBinary
	}
	return DefaultRemoteBinary
}

// validateSSH checks the SSH fields of a node; the error starts with the
// field's name.
func (n Node) validateSSH() error {
	switch {
	case n.Address == "":
		return fmt.Errorf("address: node %s uses the ssh transport and has no address", n.Name)
	case n.Port < 0 || n.Port > 65535:
		return fmt.Errorf("port: node %s: %d is not a port", n.Name, n.Port)
	case n.RemoteBinary != "" && !filepath.IsAbs(n.RemoteBinary):
		return fmt.Errorf("remote_binary: node %s needs an absolute path, got %q", n.Name, n.RemoteBinary)
	}
	return nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// HostKeyError is a host key that known_hosts does not vouch for: unknown,
// changed or revoked. It is permanent: retrying cannot help, a person has
// to check the node's key.
type HostKeyError struct {
	Node       string
	Host       string // host:port as dialled
	KnownHosts string // the file consulted
	Changed    bool   // known_hosts holds another key for the host
	Revoked    bool   // known_hosts marks the key @revoked
	msg        string
}

func (e *HostKeyError) Error() string { return fmt.Sprintf("node %s: %s", e.Node, e.msg) }

// SSH is the transport to one node over SSH. It connects on the first Call,
// then reuses the connection for every call, and reconnects once when it
// finds the connection broken.
type SSH struct {
	Node        Node
	LocalBinary string // the sentinel binary pushed to the node

	addr       string // host:port
	user       string
	knownHosts string

	dialTimeout    time.Duration
	keepAlive      time.Duration
	keepAliveMiss  int
	cancelGrace    time.Duration
	remoteBinary   string
	localDigestMu  sync.Mutex
	localDigestVal string

	sem chan struct{} // held while connecting and checking the agent binary; guards sshConn.ensured

	mu        sync.Mutex // guards cur, closed and abortDial; never held while waiting on the node
	cur       *sshConn
	closed    bool
	abortDial context.CancelFunc // ends the dial under way, if any
}

// sshConn is one SSH connection and what is known about it.
type sshConn struct {
	client  *ssh.Client
	dead    chan struct{} // closed when the connection ended
	err     error         // why it ended, once dead is closed
	ensured bool          // the node's agent binary was checked on this connection
	gaveUp  atomic.Value  // string: why this side closed it, if it did
}

// giveUp closes the connection, saying why.
func (c *sshConn) giveUp(why string) {
	c.gaveUp.CompareAndSwap(nil, why)
	_ = c.client.Close()
}

func (c *sshConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// DialSSH returns the SSH transport of node n. It does not connect yet:
// the first Call does. localBinary is the sentinel binary to push to the
// node ("" means this process's executable).
func DialSSH(n Node, localBinary string) (*SSH, error) {
	if err := n.validateSSH(); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if localBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cannot find the sentinel binary to push to node %s: %w", n.Name, err)
		}
		localBinary = exe
	}
	return &SSH{
		Node:          n,
		LocalBinary:   localBinary,
		addr:          net.JoinHostPort(n.Address, strconv.Itoa(n.SSHPort())),
		user:          n.SSHUser(),
		knownHosts:    n.KnownHostsFile(),
		dialTimeout:   sshDialTimeout,
		keepAlive:     sshKeepAlive,
		keepAliveMiss: sshKeepAliveMiss,
		cancelGrace:   sshCancelGrace,
		remoteBinary:  n.RemoteBinaryPath(),
		sem:           make(chan struct{}, 1),
	}, nil
}

// Close ends the connection, and a dial under way, without waiting for
// either; the transport cannot be used afterwards.
func (s *SSH) Close() error {
	s.mu.Lock()
	s.closed = true
	c := s.cur
	s.cur = nil
	if s.abortDial != nil {
		s.abortDial()
	}
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	err := c.client.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Call implements Transport.
func (s *SSH) Call(ctx context.Context, op string, in, out any, on func(Event)) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	cmd := s.agentCommand(op)
	for attempt := 0; ; attempt++ {
		c, err := s.conn(ctx, op, on)
		if err != nil {
			return err
		}
		var final *Event
		var scanErr error
		pid := &remotePID{known: make(chan struct{})}
		stderr, opened, err := s.run(ctx, c, cmd, bytes.NewReader(payload), pid, func(r io.Reader) {
			br := bufio.NewReader(r)
			if line, err := br.ReadString('\n'); err == nil {
				pid.set(strings.TrimSpace(line))
			}
			final, scanErr = readEvents(br, on)
		})
		if !opened && ctx.Err() == nil {
			// The connection broke since the last call (the node rebooted,
			// sshd restarted): connect again, once. A server that refuses
			// one more session (MaxSessions) keeps the connection.
			var refused *ssh.OpenChannelError
			if !errors.As(err, &refused) {
				s.drop(c)
				if attempt == 0 {
					continue
				}
			}
			return s.unreachable(op, c, err)
		}
		if ctx.Err() != nil {
			return &UnreachableError{Node: s.Node.Name, Op: op, Err: ctx.Err()}
		}
		if final == nil {
			if e := s.sudoError(stderr); e != nil {
				return e
			}
			if c.isDead() {
				return s.unreachable(op, c, err)
			}
			if exit := (*ssh.ExitError)(nil); errors.As(err, &exit) && exit.ExitStatus() == 127 {
				s.recheck(c) // the node's binary vanished: push it again on the next call
			}
		}
		return finish(s.Node.Name, op, final, errors.Join(scanErr, err), stderr, out)
	}
}

// EnsureAgent connects if needed and makes sure the node has this build of
// sentinel, pushing it if not (once per connection; Call does it too).
// Pushes are reported to on as log events.
func (s *SSH) EnsureAgent(ctx context.Context, on func(Event)) error {
	_, err := s.conn(ctx, "ensure-agent", on)
	return err
}

// conn returns a live connection whose agent binary is checked, connecting
// if there is none or it broke.
func (s *SSH) conn(ctx context.Context, op string, on func(Event)) (*sshConn, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &UnreachableError{Node: s.Node.Name, Op: op, Err: ctx.Err()}
	}
	defer func() { <-s.sem }()
	c, err := s.connected(ctx, op)
	if err != nil {
		return nil, err
	}
	if !c.ensured {
		if err := s.ensureAgent(ctx, c, op, on); err != nil {
			if s.isClosed() {
				return nil, s.closedError(op)
			}
			return nil, err
		}
		c.ensured = true
	}
	return c, nil
}

// connected returns the live connection, dialling if there is none; the
// caller holds s.sem.
func (s *SSH) connected(ctx context.Context, op string) (*sshConn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, s.closedError(op)
	}
	c := s.cur
	if c != nil && c.isDead() {
		_ = c.client.Close()
		s.cur, c = nil, nil
	}
	if c != nil {
		s.mu.Unlock()
		return c, nil
	}
	dialCtx, abort := context.WithCancel(ctx)
	defer abort()
	s.abortDial = abort
	s.mu.Unlock()

	c, err := s.dial(dialCtx, op)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.abortDial = nil
	if s.closed {
		if c != nil {
			_ = c.client.Close()
		}
		return nil, s.closedError(op)
	}
	if err != nil {
		return nil, err
	}
	s.cur = c
	return c, nil
}

func (s *SSH) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *SSH) closedError(op string) error {
	return fmt.Errorf("node %s: %s: the SSH transport was closed", s.Node.Name, op)
}

// CheckSudo makes sure, before anything runs on the node, that the login
// user may run the agent as root without a password: `sudo -n true`. Not
// asked of root. A refusal is a *SudoError saying what to add.
func (s *SSH) CheckSudo(ctx context.Context) error {
	if !s.Node.UsesSudo() {
		return nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return &UnreachableError{Node: s.Node.Name, Op: "check-sudo", Err: ctx.Err()}
	}
	c, err := s.connected(ctx, "check-sudo")
	<-s.sem
	if err != nil {
		return err
	}
	stderr, opened, err := s.run(ctx, c, "sudo -n true", strings.NewReader(""), nil, func(r io.Reader) { _, _ = io.Copy(io.Discard, r) })
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return &SudoError{Node: s.Node.Name, Addr: s.addr, User: s.user, Stderr: truncate(strings.TrimSpace(stderr), 200)}
	case !opened:
		return s.unreachable("check-sudo", c, err)
	}
	return &UnreachableError{Node: s.Node.Name, Op: "check-sudo", Err: err}
}

// SudoError: the node's login user cannot run commands as root without a
// password, so no agent can run there. Nothing was changed.
type SudoError struct {
	Node, Addr, User string
	Stderr           string // what sudo said
}

func (e *SudoError) Error() string {
	return fmt.Sprintf("node %s: user %s cannot run sentinel's agent as root without a password (`sudo -n true` on %s: %s): add the line %q to a file in /etc/sudoers.d/ on the node (e.g. /etc/sudoers.d/sentinel, mode 0440; check it with visudo -cf FILE), or log in as root",
		e.Node, e.User, e.Addr, e.Stderr, SudoersLine(e.User))
}

// SudoersLine is the sudoers rule the product's docs give its admin user.
func SudoersLine(user string) string { return user + " ALL = (root) NOPASSWD: ALL" }

// recheck has the next call check the node's binary again.
func (s *SSH) recheck(c *sshConn) {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	c.ensured = false
}

// drop forgets a connection found broken.
func (s *SSH) drop(c *sshConn) {
	_ = c.client.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == c {
		s.cur = nil
	}
}

func (s *SSH) unreachable(op string, c *sshConn, err error) error {
	if c != nil && c.isDead() {
		why := c.err
		if g, ok := c.gaveUp.Load().(string); ok {
			why = errors.New(g)
		} else if why == nil || errors.Is(why, net.ErrClosed) {
			why = errors.New("closed")
		}
		err = fmt.Errorf("SSH connection to %s lost: %v", s.addr, why)
	} else if err == nil {
		err = errors.New("no answer")
	}
	return &UnreachableError{Node: s.Node.Name, Op: op, Err: err}
}

// dial connects and logs in. A host key that known_hosts does not vouch
// for is a *HostKeyError, failed authentication a plain (permanent) error,
// anything else an *UnreachableError.
func (s *SSH) dial(ctx context.Context, op string) (*sshConn, error) {
	kh, algos, err := s.hostKeys()
	if err != nil {
		return nil, err
	}
	var hkErr *HostKeyError
	cfg := &ssh.ClientConfig{
		User:              s.user,
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := kh(hostname, remote, key)
			if err != nil {
				hkErr = s.hostKeyError(key, err)
				if hkErr != nil {
					return hkErr
				}
			}
			return err
		},
		Timeout:       s.dialTimeout,
		ClientVersion: "SSH-2.0-sentinel",
	}
	auth, tried, cleanup, err := s.auth()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cfg.Auth = auth

	d := net.Dialer{Timeout: s.dialTimeout, KeepAlive: s.keepAlive}
	nc, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, &UnreachableError{Node: s.Node.Name, Op: op, Err: fmt.Errorf("cannot connect to %s: %w", s.addr, err)}
	}
	// The handshake and login are bounded by the dial timeout and ctx.
	_ = nc.SetDeadline(time.Now().Add(s.dialTimeout))
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, s.addr, cfg)
	cancelled := !stop()
	switch {
	case err != nil:
		_ = nc.Close()
		if hkErr != nil {
			return nil, hkErr
		}
		if ctx.Err() != nil {
			return nil, &UnreachableError{Node: s.Node.Name, Op: op, Err: ctx.Err()}
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("node %s: cannot log in to %s as %s (tried: %s): %w; check that the key is in ~%s/.ssh/authorized_keys on the node",
				s.Node.Name, s.addr, s.user, tried, err, s.user)
		}
		return nil, &UnreachableError{Node: s.Node.Name, Op: op, Err: fmt.Errorf("SSH handshake with %s as %s: %w", s.addr, s.user, err)}
	case cancelled:
		_ = cc.Close()
		return nil, &UnreachableError{Node: s.Node.Name, Op: op, Err: ctx.Err()}
	}
	_ = nc.SetDeadline(time.Time{})
	c := &sshConn{client: ssh.NewClient(cc, chans, reqs), dead: make(chan struct{})}
	go func() {
		c.err = c.client.Wait()
		close(c.dead)
	}()
	go keepAlive(c, s.keepAlive, s.keepAliveMiss)
	return c, nil
}

// keepAlive asks the server for a sign of life every interval, and closes
// the connection when miss requests in a row went unanswered: a node that
// vanished then fails every call on it instead of hanging it.
func keepAlive(c *sshConn, every time.Duration, miss int) {
	t := time.NewTicker(every)
	defer t.Stop()
	answered := make(chan struct{}, 1)
	pending, missed := false, 0
	for {
		select {
		case <-c.dead:
			return
		case <-answered:
			pending, missed = false, 0
		case <-t.C:
			if pending {
				if missed++; missed >= miss {
					c.giveUp(fmt.Sprintf("%d keep-alives in a row went unanswered", missed))
					return
				}
				continue
			}
			pending = true
			go func() {
				// OpenSSH answers "request failure": an answer all the same.
				if _, _, err := c.client.SendRequest(sshKeepAliveQuery, true, nil); err == nil {
					answered <- struct{}{}
				}
			}()
		}
	}
}

// agentCommand is the command line that runs the agent for op. It first
// prints its process id (the shell's, which exec keeps), so that a cancel
// can kill it even where sshd refuses signal requests (it does for root
// logins: they run without privilege separation).
func (s *SSH) agentCommand(op string) string {
	args := []string{s.remoteBinary, "node", op, "--root", s.Node.Root, "--node", s.Node.Name}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return s.command("sh", "-c", "echo $$; exec "+strings.Join(q, " "))
}

// remotePID is the process id of a remote agent, once it said it.
type remotePID struct {
	once  sync.Once
	known chan struct{}
	pid   int
}

func (p *remotePID) set(line string) {
	if n, err := strconv.Atoi(line); err == nil && n > 1 {
		p.once.Do(func() {
			p.pid = n
			close(p.known)
		})
	}
}

// run runs cmd in a new session on c with stdin, hands its stdout to read,
// and returns the tail of its stderr and how it ended. opened is false when
// no session could be opened (the connection is broken). On ctx cancel the
// remote command is sent SIGKILL (and, if pid is not nil, killed by its
// process id from a second session); if it has not ended after the grace
// period its session is closed, and after another the whole connection,
// which no longer answers.
func (s *SSH) run(ctx context.Context, c *sshConn, cmd string, stdin io.Reader, pid *remotePID, read func(io.Reader)) (stderr string, opened bool, err error) {
	sess, err := newSession(ctx, c)
	if err != nil {
		return "", false, err
	}
	defer sess.Close()
	var errBuf tailBuffer
	sess.Stdin = stdin
	sess.Stderr = &errBuf
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return "", true, err
	}
	if err := sess.Start(cmd); err != nil {
		return "", true, err
	}
	returned := make(chan struct{})
	defer close(returned)
	stop := context.AfterFunc(ctx, func() {
		// Wait for the command's end, so that the agent is gone when Call
		// returns.
		go func() { _ = sess.Signal(ssh.SIGKILL) }()
		if pid != nil {
			go s.kill(c, pid, returned)
		}
		for _, end := range []func(){
			func() { _ = sess.Close() },
			func() { c.giveUp(fmt.Sprintf("no answer within %v of a cancel", 2*s.cancelGrace)) },
		} {
			t := time.NewTimer(s.cancelGrace)
			select {
			case <-returned:
				t.Stop()
				return
			case <-t.C:
			}
			end()
		}
	})
	defer stop()
	read(stdout)
	_, _ = io.Copy(io.Discard, stdout) // a command blocked on a write must not block Wait
	err = sess.Wait()
	return errBuf.String(), true, err
}

// kill SIGKILLs a remote agent, its process group if it leads one, from
// another session.
func (s *SSH) kill(c *sshConn, pid *remotePID, returned <-chan struct{}) {
	t := time.NewTimer(s.cancelGrace)
	defer t.Stop()
	select {
	case <-pid.known:
	case <-returned:
		return
	case <-t.C:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cancelGrace)
	defer cancel()
	script := fmt.Sprintf("kill -KILL -- -%d 2>/dev/null || kill -KILL %d", pid.pid, pid.pid)
	_, _, _ = s.run(ctx, c, s.command("sh", "-c", script), strings.NewReader(""), nil, func(r io.Reader) { _, _ = io.Copy(io.Discard, r) })
}

// newSession opens a session, giving up when ctx ends or the connection
// dies (opening one on a frozen connection blocks).
func newSession(ctx context.Context, c *sshConn) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.client.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				_ = r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// command is the shell command line that runs args, with sudo -n if the
// node says so.
func (s *SSH) command(args ...string) string {
	if s.Node.UsesSudo() {
		args = append([]string{"sudo", "-n", "--"}, args...)
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sudoError recognises sudo refusing to run without a password.
func (s *SSH) sudoError(stderr string) error {
	if !s.Node.UsesSudo() {
		return nil
	}
	if strings.Contains(stderr, "a password is required") || strings.Contains(stderr, "a terminal is required") {
		return &SudoError{Node: s.Node.Name, Addr: s.addr, User: s.user, Stderr: truncate(strings.TrimSpace(stderr), 200)}
	}
	return nil
}

// auth returns the login methods: the node's key file if it names one,
// else the keys of the SSH agent at $SSH_AUTH_SOCK and ~/.ssh/id_ed25519,
// ~/.ssh/id_rsa. tried says which, for error messages; cleanup closes the
// agent connection once logged in.
func (s *SSH) auth() (methods []ssh.AuthMethod, tried string, cleanup func(), err error) {
	cleanup = func() {}
	if s.Node.KeyFile != "" {
		p := expandHome(s.Node.KeyFile)
		signer, err := loadKey(p)
		if err != nil {
			return nil, "", cleanup, fmt.Errorf("node %s: key_file: %w", s.Node.Name, err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, "publickey with key_file " + p, cleanup, nil
	}
	var signers []ssh.Signer
	var what, notes []string
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.DialTimeout("unix", sock, s.dialTimeout)
		if err != nil {
			notes = append(notes, fmt.Sprintf("ssh-agent at %s unreachable: %v", sock, err))
		} else {
			cleanup = func() { _ = conn.Close() }
			ss, err := agent.NewClient(conn).Signers()
			if err != nil {
				notes = append(notes, fmt.Sprintf("ssh-agent at %s: %v", sock, err))
			}
			signers = append(signers, ss...)
			what = append(what, fmt.Sprintf("ssh-agent at %s (%d keys)", sock, len(ss)))
		}
	} else {
		notes = append(notes, "no ssh-agent ($SSH_AUTH_SOCK unset)")
	}
	for _, name := range []string{"id_ed25519", "id_rsa"} {
		p := expandHome("~/.ssh/" + name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		signer, err := loadKey(p)
		if err != nil {
			notes = append(notes, err.Error())
			continue
		}
		signers = append(signers, signer)
		what = append(what, p)
	}
	tried = "publickey with " + strings.Join(what, ", ")
	if len(notes) > 0 {
		tried += " (" + strings.Join(notes, "; ") + ")"
	}
	if len(signers) == 0 {
		cleanup()
		return nil, "", func() {}, fmt.Errorf("node %s: no SSH key to log in to %s as %s: no key_file in the cluster file, no key in an ssh-agent, no usable ~/.ssh/id_ed25519 or ~/.ssh/id_rsa (%s)",
			s.Node.Name, s.addr, s.user, strings.Join(notes, "; "))
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, tried, cleanup, nil
}

func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("key %s is protected by a passphrase: load it into ssh-agent (ssh-add %s) and leave key_file unset", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return signer, nil
}

// hostKeys reads known_hosts: the callback that checks the node's key, and
// the key algorithms to ask for, those of the keys known for this
// host:port. Without them the server may present a key of another type
// first, and a known host looks like a changed one.
func (s *SSH) hostKeys() (ssh.HostKeyCallback, []string, error) {
	if _, err := os.Stat(s.knownHosts); err != nil {
		return nil, nil, &HostKeyError{Node: s.Node.Name, Host: s.addr, KnownHosts: s.knownHosts,
			msg: fmt.Sprintf("host key of %s is not in %s (%v): verify it out of band, then run: %s", s.addr, s.knownHosts, err, s.keyscan())}
	}
	kh, err := knownhosts.New(s.knownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: known_hosts: %w", s.Node.Name, err)
	}
	// Ask with a key nobody has: the mismatch lists every key known for
	// the address, whatever the file's syntax (hashed names, patterns).
	var want []knownhosts.KnownKey
	var ke *knownhosts.KeyError
	if err := kh(s.addr, &net.TCPAddr{}, probeKey()); errors.As(err, &ke) {
		want = ke.Want
	}
	return kh, hostKeyAlgorithms(want), nil
}

var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// hostKeyAlgorithms are the algorithms that verify the known keys, in
// x/crypto's order of preference; nil (the defaults) when none is known.
func hostKeyAlgorithms(want []knownhosts.KnownKey) []string {
	have := map[string]bool{}
	for _, k := range want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			have[ssh.KeyAlgoRSASHA512], have[ssh.KeyAlgoRSASHA256], have[ssh.KeyAlgoRSA] = true, true, true
		default:
			have[t] = true
		}
	}
	var algos []string
	for _, a := range append(ssh.SupportedAlgorithms().HostKeys, ssh.KeyAlgoRSA) {
		if have[a] && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

// hostKeyError turns a knownhosts refusal into advice.
func (s *SSH) hostKeyError(key ssh.PublicKey, err error) *HostKeyError {
	e := &HostKeyError{Node: s.Node.Name, Host: s.addr, KnownHosts: s.knownHosts}
	offered := key.Type() + " " + ssh.FingerprintSHA256(key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		e.Revoked = true
		e.msg = fmt.Sprintf("host key of %s (%s) is marked @revoked in %s:%d: refusing to connect", s.addr, offered, re.Revoked.Filename, re.Revoked.Line)
	case errors.As(err, &ke) && len(ke.Want) == 0:
		e.msg = fmt.Sprintf("host key of %s is not in %s (the node offers %s): verify it out of band, then run: %s", s.addr, s.knownHosts, offered, s.keyscan())
	case errors.As(err, &ke):
		e.Changed = true
		var known []string
		for _, k := range ke.Want {
			known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		e.msg = fmt.Sprintf("host key of %s CHANGED (possible man-in-the-middle): the node offers %s, known_hosts has %s; if the node was reinstalled, remove the old entry: ssh-keygen -R %s -f %s, verify the new key out of band, then run: %s",
			s.addr, offered, strings.Join(known, ", "), shellQuote(knownhosts.Normalize(s.addr)), shellQuote(s.knownHosts), s.keyscan())
	default:
		return nil
	}
	return e
}

// keyscan is the command that adds the node's keys to known_hosts.
func (s *SSH) keyscan() string {
	return fmt.Sprintf("ssh-keyscan -p %d %s >> %s", s.Node.SSHPort(), shellQuote(s.Node.Address), shellQuote(s.knownHosts))
}
