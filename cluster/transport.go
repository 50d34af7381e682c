package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The orchestrator reaches a node by running `sentinel node <op>` there with
// one JSON document on stdin; the agent answers with JSON lines on stdout:
// any number of "log" events, then exactly one "result" or "error".

// Event is one line of the node agent's output.
type Event struct {
	Kind     string          `json:"kind"` // "log", "progress", "result" or "error"
	Message  string          `json:"message,omitempty"`
	Output   string          `json:"output,omitempty"` // tail of a failed hook's output
	Result   json.RawMessage `json:"result,omitempty"`
	Progress json.RawMessage `json:"progress,omitempty"`
	// Retryable marks an error that leaves the run resumable as it is
	// (a DEA that did not drain in time): the run is interrupted, not failed.
	Retryable bool `json:"retryable,omitempty"`
}

// Transport runs one agent operation on one node. out receives the result
// document; on, if not nil, receives the agent's log and progress events.
type Transport interface {
	Call(ctx context.Context, op string, in, out any, on func(Event)) error
}

// AgentError is a failure the agent reported: the node was reached and the
// operation itself failed.
type AgentError struct {
	Node      string
	Op        string
	Message   string
	Output    string
	Retryable bool
}

func (e *AgentError) Error() string { return fmt.Sprintf("node %s: %s: %s", e.Node, e.Op, e.Message) }

// UnreachableError means the agent could not be run or died without an
// answer: the operation may or may not have happened, and is safe to retry.
type UnreachableError struct {
	Node string
	Op   string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("node %s: %s: agent did not answer: %v", e.Node, e.Op, e.Err)
}
func (e *UnreachableError) Unwrap() error { return e.Err }

// Local runs the agent as a subprocess of this process: one agent per node
// that answers a session of requests (`sentinel node session`), kept
// between calls and started again when it died, was killed by a cancel,
// or its binary changed.
type Local struct {
	Node   Node
	Binary string // the sentinel binary to run as agent

	mu     sync.Mutex
	idle   []*localAgent // agents waiting for a request; a call takes one or starts one
	closed bool          // Close was called: an agent that answers ends
}

// OpSession is the agent's operation that answers a session of requests
// on stdin, each a SessionCall, rather than one.
const OpSession = "session"

// SessionCall is one request of a session: the operation, and its request
// document as `sentinel node OP` reads it on stdin.
type SessionCall struct {
	Op      string          `json:"op"`
	Request json.RawMessage `json:"request"`
}

// closeWait bounds how long CloseAll waits for the transports to close:
// one stuck behind a call that never returns is left to the process's end.
const closeWait = 10 * time.Second

// CloseAll closes, all at once, every transport that holds something
// open (a local transport's agent, an SSH connection), and waits for them
// up to closeWait.
func CloseAll(tr map[string]Transport) {
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, t := range tr {
			if c, ok := t.(io.Closer); ok {
				wg.Go(func() { _ = c.Close() })
			}
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

// Dial returns the transport for a node. binary is the sentinel executable
// the local transport runs, and the SSH transport pushes to nodes that lack
// it ("" means this process's own executable).
func Dial(n Node, binary string) (Transport, error) {
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cannot find the sentinel binary to run on node %s: %w", n.Name, err)
		}
		binary = exe
	}
	switch n.Transport {
	case TransportLocal:
		return &Local{Node: n, Binary: binary}, nil
	case TransportSSH:
		s, err := DialSSH(n, binary)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("node %s: unsupported transport %q", n.Name, n.Transport)
	}
}

// Call implements Transport.
func (l *Local) Call(ctx context.Context, op string, in, out any, on func(Event)) error {
	req, err := json.Marshal(in)
	if err != nil {
		return err
	}
	line, err := json.Marshal(SessionCall{Op: op, Request: req})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	for attempt := 0; ; attempt++ {
		a, fresh, err := l.agent(attempt > 0)
		if err != nil {
			return &UnreachableError{Node: l.Node.Name, Op: op, Err: err}
		}
		// Killing the agent's group on cancel stops the operation and what
		// it runs outside a hook, as when the agent was a process per call.
		stop := context.AfterFunc(ctx, a.kill)
		var errMark int64 // a new agent's stderr is all this call's
		if !fresh {
			errMark = a.stderr.mark()
		}
		if _, err := a.stdin.Write(line); err != nil {
			stop()
			a.discard()
			if ctx.Err() != nil {
				return &UnreachableError{Node: l.Node.Name, Op: op, Err: ctx.Err()}
			}
			if !fresh {
				continue // it died while idle, before this request reached it
			}
			return finish(l.Node.Name, op, nil, errors.Join(err, a.waitErr), a.stderr.since(errMark), out)
		}
		final, scanErr := readFinal(a.events, on)
		stop()
		if ctx.Err() != nil {
			a.discard()
			return &UnreachableError{Node: l.Node.Name, Op: op, Err: ctx.Err()}
		}
		if final == nil {
			// The agent died without an answer, or broke the protocol.
			a.discard()
			return finish(l.Node.Name, op, nil, errors.Join(scanErr, a.waitErr), a.stderr.since(errMark), out)
		}
		l.release(a)
		return finish(l.Node.Name, op, final, nil, "", out)
	}
}

// localAgent is one `sentinel node session` process.
type localAgent struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File // read by events, closed once the agent is let go
	events *bufio.Scanner
	stderr *tailBuffer
	// binary is the file the agent was started from, to see it removed or
	// replaced; nil when it could not be found from here (a prefix may
	// look elsewhere): such an agent answers one call only.
	binary os.FileInfo

	mu      sync.Mutex
	reaped  bool
	exited  chan struct{} // closed once the process is reaped; waitErr is then set
	waitErr error
}

// agent returns an idle agent that still runs the binary now at l.Binary,
// or starts one (fresh; always when fresh is asked for). An agent whose
// binary was removed or replaced is let go: each call runs the binary
// found there, as a process per call did.
func (l *Local) agent(fresh bool) (*localAgent, bool, error) {
	bin, _ := os.Stat(l.Binary) // nil: exec finds it, or says why not
	if !fresh {
		l.mu.Lock()
		for len(l.idle) > 0 {
			a := l.idle[len(l.idle)-1]
			l.idle = l.idle[:len(l.idle)-1]
			if bin != nil && sameFile(a.binary, bin) && !a.dead() {
				l.mu.Unlock()
				return a, false, nil
			}
			a.close()
		}
		l.mu.Unlock()
	}
	a, err := l.start(bin)
	return a, true, err
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// release keeps an agent that answered for the next call: one per node,
// however many calls ran at once.
func (l *Local) release(a *localAgent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.binary == nil || len(l.idle) > 0 || l.closed {
		a.close()
		return
	}
	l.idle = append(l.idle, a)
}

// agentExitWait bounds how long Close waits for an idle agent to end on
// its own once its stdin is closed, before it kills it.
const agentExitWait = 5 * time.Second

// Close ends the idle agent and waits for it: nothing of this transport
// outlives the run that used it (an agent still answering a call ends
// with that call).
func (l *Local) Close() error {
	l.mu.Lock()
	idle := l.idle
	l.idle, l.closed = nil, true
	l.mu.Unlock()
	for _, a := range idle {
		a.close()
		select {
		case <-a.exited:
		case <-time.After(agentExitWait):
			a.discard()
		}
	}
	return nil
}

func (l *Local) start(bin os.FileInfo) (*localAgent, error) {
	args := append(append([]string{}, l.Node.Prefix...), l.Binary, "node", OpSession, "--root", l.Node.Root, "--node", l.Node.Name)
	cmd := exec.Command(args[0], args[1:]...)
	a := &localAgent{cmd: cmd, stderr: &tailBuffer{}, binary: bin, exited: make(chan struct{})}
	cmd.Stderr = a.stderr
	// Own process group, so a cancel kills the agent and what it runs
	// outside a hook; it dies with us (Pdeathsig) so a SIGKILLed
	// orchestrator leaves no agent racing the resumed run. Hooks have their
	// own groups: the next operation stops what a killed hook left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe rather than StdoutPipe, whose read end Wait closes:
	// Wait runs in its own goroutine, and what the agent wrote before it
	// died must still be read.
	r, w, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return nil, err
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		stdin.Close()
		return nil, err
	}
	a.stdin, a.stdout = stdin, r
	a.events = newEventScanner(r)
	go func() {
		err := cmd.Wait()
		a.mu.Lock()
		a.reaped, a.waitErr = true, err
		a.mu.Unlock()
		close(a.exited)
	}()
	return a, nil
}

// kill stops the agent's process group, never after it was reaped (its
// pid could belong to someone else by then).
func (a *localAgent) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.reaped {
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// discard kills the agent once its call is over, and waits for its end.
func (a *localAgent) discard() {
	a.kill()
	<-a.exited
	_ = a.stdout.Close()
}

func (a *localAgent) dead() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// close lets an idle agent go: it ends when its stdin does.
func (a *localAgent) close() {
	_ = a.stdin.Close()
	_ = a.stdout.Close()
}

// newEventScanner reads an agent's event lines, one of up to 16 MiB.
func newEventScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return sc
}

var (
	errNoAnswer = errors.New("the agent ended without an answer")
	errBadLine  = errors.New("agent printed a line that is not an event")
)

// readFinal reads an agent's events up to the answer to one call, passing
// the log and progress events on; at the end of its output without an
// answer, errNoAnswer.
func readFinal(sc *bufio.Scanner, on func(Event)) (*Event, error) {
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%w: %q", errBadLine, truncate(sc.Text(), 200))
		}
		switch ev.Kind {
		case "log", "progress":
			if on != nil {
				on(ev)
			}
		case "result", "error":
			return &ev, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errNoAnswer
}

// readEvents reads the whole output of an agent that answers one call:
// its answer is the last result or error event.
func readEvents(r io.Reader, on func(Event)) (*Event, error) {
	sc := newEventScanner(r)
	var final *Event
	for {
		ev, err := readFinal(sc, on)
		switch {
		case ev != nil:
			final = ev
		case errors.Is(err, errNoAnswer):
			return final, nil
		case errors.Is(err, errBadLine):
			return nil, err
		default:
			return final, err
		}
	}
}

func finish(node, op string, final *Event, procErr error, stderr string, out any) error {
	switch {
	case final == nil:
		msg := procErr
		if msg == nil {
			msg = errors.New("no result")
		}
		if s := strings.TrimSpace(stderr); s != "" {
			msg = fmt.Errorf("%v: %s", msg, truncate(s, 500))
		}
		return &UnreachableError{Node: node, Op: op, Err: msg}
	case final.Kind == "error":
		return &AgentError{Node: node, Op: op, Message: final.Message, Output: final.Output, Retryable: final.Retryable}
	case out != nil && len(final.Result) > 0:
		if err := json.Unmarshal(final.Result, out); err != nil {
			return &UnreachableError{Node: node, Op: op, Err: fmt.Errorf("bad result: %w", err)}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// tailBuffer keeps the last 8 KiB written to it; a session agent's is
// written while a call reads it.
type tailBuffer struct {
	mu      sync.Mutex
	b       []byte
	written int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	t.written += int64(len(p))
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.since(0) }

// mark is where the output stands now, for since.
func (t *tailBuffer) mark() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written
}

// since is what was written after mark, as far as the buffer keeps it:
// mostly a failed call's own stderr rather than an earlier call's (stderr
// is copied in its own goroutine, so a line may come late).
func (t *tailBuffer) since(mark int64) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if n := t.written - mark; n < int64(len(b)) {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// AgentOutput writes the agent's side of the protocol.
type AgentOutput struct {
	w   io.Writer
	enc *json.Encoder
}

// NewAgentOutput returns a writer of events to w (the agent's stdout).
func NewAgentOutput(w io.Writer) *AgentOutput { return &AgentOutput{w: w, enc: json.NewEncoder(w)} }

// Log sends a progress line to the orchestrator.
func (a *AgentOutput) Log(format string, args ...any) {
	_ = a.enc.Encode(Event{Kind: "log", Message: fmt.Sprintf(format, args...)})
}

// Progress reports how a long operation is going.
func (a *AgentOutput) Progress(v any) {
	data, err := json.Marshal(v)
	if err == nil {
		_ = a.enc.Encode(Event{Kind: "progress", Progress: data})
	}
}

// Result sends the final result.
func (a *AgentOutput) Result(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.enc.Encode(Event{Kind: "result", Result: data})
}

// FailRetryable sends a final error after which the run can be resumed as
// it is.
func (a *AgentOutput) FailRetryable(msg string) error {
	return a.enc.Encode(Event{Kind: "error", Message: msg, Retryable: true})
}

// Fail sends the final error, with the tail of a hook's output if any.
func (a *AgentOutput) Fail(msg, output string) error {
	return a.enc.Encode(Event{Kind: "error", Message: msg, Output: output})
}
