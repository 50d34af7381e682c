package cluster

import (
	"bufio"
	"bytes"
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

// Local runs the agent as a subprocess of this process.
type Local struct {
	Node   Node
	Binary string // the sentinel binary to run as agent
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
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	args := append(append([]string{}, l.Node.Prefix...), l.Binary, "node", op, "--root", l.Node.Root, "--node", l.Node.Name)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	var stderr tailBuffer
	cmd.Stderr = &stderr
	// Own process group, so cancelling kills the agent and what it runs
	// outside a hook; it dies with us (Pdeathsig) so a SIGKILLed
	// orchestrator leaves no agent racing the resumed run. Hooks have their
	// own groups: the next agent stops what a killed hook left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return &UnreachableError{Node: l.Node.Name, Op: op, Err: err}
	}
	// Kill the agent's group on cancel, but never after Wait reaped it:
	// its pid could belong to someone else by then.
	var mu sync.Mutex
	reaped := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !reaped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	defer stop()

	final, scanErr := readEvents(stdout, on)
	_, _ = io.Copy(io.Discard, stdout) // an agent blocked on a write must not block Wait
	waitErr := cmd.Wait()
	mu.Lock()
	reaped = true
	mu.Unlock()
	if ctx.Err() != nil {
		return &UnreachableError{Node: l.Node.Name, Op: op, Err: ctx.Err()}
	}
	return finish(l.Node.Name, op, final, errors.Join(scanErr, waitErr), stderr.String(), out)
}

func readEvents(r io.Reader, on func(Event)) (*Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var final *Event
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("agent printed a line that is not an event: %q", truncate(sc.Text(), 200))
		}
		switch ev.Kind {
		case "log", "progress":
			if on != nil {
				on(ev)
			}
		case "result", "error":
			e := ev
			final = &e
		}
	}
	return final, sc.Err()
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

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}
func (t *tailBuffer) String() string { return string(t.b) }

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
