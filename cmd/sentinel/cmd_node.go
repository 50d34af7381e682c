package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/steps"
)

// The node agent: the orchestrator runs `sentinel node <op>` on each node,
// locally or over SSH, with a JSON request on stdin.
func newNodeCmd() *cobra.Command {
	var root, name string
	cmd := &cobra.Command{
		Use:    "node OP",
		Short:  "Run one step on this node (used by the orchestrator; JSON in, JSON lines out)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNode(cmd, args[0], root, name, os.Stdin, os.Stdout)
		},
	}
	cmd.Flags().StringVar(&root, "root", "/s", "the node's root directory")
	cmd.Flags().StringVar(&name, "node", "", "the node's name in the cluster file")
	return cmd
}

// agentGCPercent is the agent's GOGC. An agent lives for one step with a
// live heap of a few MiB (package state, a transfer's buffers): at the
// default, 100, its 4 MiB goal has every fetch collect twice for nothing;
// at 400 the goal is 16 MiB, or five times the live heap.
const agentGCPercent = 400

func runNode(cmd *cobra.Command, op, root, name string, stdin io.Reader, stdout io.Writer) error {
	if os.Getenv("GOGC") == "" { // the operator's setting, if any, wins
		debug.SetGCPercent(agentGCPercent)
	}
	out := cluster.NewAgentOutput(stdout)
	if op == cluster.OpSession {
		return runSession(cmd, root, name, stdin, out)
	}
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	var req steps.Request
	// The orchestrator always sends a request, "null" at the least. An
	// empty stdin is one that never came: the orchestrator died between
	// starting this agent and writing to it. Its pipes close before the
	// kernel sends a local agent its parent-death signal, and over SSH
	// nothing kills the agent. A zero request would be a step on no
	// component.
	if err := dec.Decode(&req); err != nil {
		msg := fmt.Sprintf("bad request on stdin: %v; nothing was done", err)
		if errors.Is(err, io.EOF) {
			msg = "no request on stdin (the orchestrator that started this agent stopped, or its connection closed, before sending one); nothing was done"
		}
		_ = out.Fail(msg, "")
		return &silentExit{code: exitUsage}
	}
	if code := answer(cmd, op, req, root, name, out); code != 0 {
		return &silentExit{code: code}
	}
	return nil
}

// runSession answers one request after another ({"op": ..., "request":
// ...}), each answer ending with its result or error event, until stdin
// ends: the local transport keeps such an agent per node rather than start
// one per step. Each operation is what `sentinel node OP` does with the
// same request, its lock taken and given back within it.
func runSession(cmd *cobra.Command, root, name string, stdin io.Reader, out *cluster.AgentOutput) error {
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	for {
		var call cluster.SessionCall
		if err := dec.Decode(&call); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the orchestrator is done with this node, or gone
			}
			_ = out.Fail(fmt.Sprintf("bad request on stdin: %v; nothing was done", err), "")
			return &silentExit{code: exitUsage}
		}
		var req steps.Request
		rd := json.NewDecoder(bytes.NewReader(call.Request))
		rd.DisallowUnknownFields()
		if err := rd.Decode(&req); err != nil {
			_ = out.Fail(fmt.Sprintf("bad %s request: %v; nothing was done", call.Op, err), "")
			continue
		}
		answer(cmd, call.Op, req, root, name, out)
		switch {
		case cmd.Context().Err() != nil:
			// A signal stopped that operation, and would stop every next
			// one: end, so the orchestrator starts a new agent.
			return nil
		case call.Op == steps.OpReboot:
			// The reboot command may wait for this agent to end
			// (SENTINEL_AGENT_PID) before it reboots the node.
			return nil
		}
	}
}

// answer runs one operation and sends its result or its error, returning
// the exit code `sentinel node OP` ends with.
func answer(cmd *cobra.Command, op string, req steps.Request, root, name string, out *cluster.AgentOutput) int {
	agent := &steps.Agent{Node: name, Layout: steps.Layout{Root: root}, Logf: out.Log,
		Progress: func(p steps.FetchProgress) { out.Progress(p) }}
	res, err := agent.Do(cmd.Context(), op, req)
	if err != nil {
		var he *steps.HookError
		output := ""
		if errors.As(err, &he) {
			output = he.Output
		}
		var dd *steps.DrainDeadlineError
		if errors.As(err, &dd) {
			_ = out.FailRetryable(err.Error())
			return exitInterrupted
		}
		_ = out.Fail(err.Error(), output)
		return exitFailed
	}
	if err := out.Result(res); err != nil {
		_ = out.Fail(fmt.Sprintf("encoding the result: %v", err), "")
		return exitFailed
	}
	return 0
}

// silentExit ends the process with a code after the error was already
// reported on stdout.
type silentExit struct{ code int }

func (e *silentExit) Error() string { return fmt.Sprintf("exit %d", e.code) }
