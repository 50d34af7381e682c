// Package ui shows what sentinel does: step lines or live bars on a
// terminal, JSON lines for scripts, and the tables of plans, preflight,
// status and patches. cmd/sentinel picks one; the packages below report
// through it and print nothing themselves.
package ui

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/term"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Format is an output format.
const (
	Text = "text"
	JSON = "json"
)

// progress is one of the live displays.
type progress interface {
	rollout.Progress
}

// Printer shows a run in text (bars on a terminal, lines elsewhere) or as
// JSON lines.
type Printer struct {
	progress
	format         string
	stdin          io.Reader
	stdout, stderr io.Writer
	close          func()
	once           sync.Once
}

// New picks the display: bars on a terminal, lines otherwise, JSON lines
// with format "json".
func New(format string, stdin io.Reader, stdout, stderr io.Writer) *Printer {
	tty := format != JSON && IsTerminal(stdout)
	stdout, stderr = DropWhenGone(stdout), DropWhenGone(stderr)
	p := &Printer{format: format, stdin: stdin, stdout: stdout, stderr: stderr, close: func() {}}
	switch {
	case format == JSON:
		p.progress = NewJSONProgress(stdout)
	case tty:
		bars := newTTYProgress(stdout)
		p.progress, p.close = bars, bars.Close
	default:
		p.progress = newTextProgress(stdout)
	}
	return p
}

// DropWhenGone wraps an output so that once it is gone (a pipe whose
// reader closed, `| head`; a terminal that went with the SSH session) what
// is written to it is dropped: a run must not stop because nobody watches.
// The run's log and events file still get everything.
func DropWhenGone(w io.Writer) io.Writer { return &dropWhenGone{w: w} }

type dropWhenGone struct {
	w    io.Writer
	gone atomic.Bool
}

func (d *dropWhenGone) Write(b []byte) (int, error) {
	if d.gone.Load() {
		return len(b), nil
	}
	n, err := d.w.Write(b)
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)) {
		d.gone.Store(true)
		return len(b), nil
	}
	return n, err
}

// IsTerminal says whether w is a terminal.
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *Printer) Notef(format string, args ...any) { fmt.Fprintf(p.stderr, format+"\n", args...) }

func (p *Printer) Warnf(format string, args ...any) {
	fmt.Fprintf(p.stderr, "sentinel: warning: "+format+"\n", args...)
}

func (p *Printer) Textf(format string, args ...any) { fmt.Fprintf(p.stdout, format, args...) }

func (p *Printer) JSON() bool { return p.format == JSON }

func (p *Printer) Result(kind string, v any) error {
	if p.format != JSON {
		return nil
	}
	return NewJSONProgress(p.stdout).EmitResult(kind, v)
}

// Event writes v as one line of the JSON output (run-start, run-end, ...);
// text output leaves it out.
func (p *Printer) Event(v any) {
	if p.format == JSON {
		_ = NewJSONProgress(p.stdout).enc.Encode(v)
	}
}

// Preflight shows a run's preflight: the checks that did not pass, or in
// JSON the whole report.
func (p *Printer) Preflight(rep *preflight.Report) error {
	if p.format == JSON {
		return NewJSONProgress(p.stdout).EmitResult("preflight", PreflightJSON{OK: rep.Err() == nil, Results: rep.Results})
	}
	for _, r := range rep.Results {
		if r.Status != "PASS" {
			fmt.Fprintln(p.stdout, "Preflight:")
			PrintPreflight(p.stdout, rep, false)
			break
		}
	}
	return nil
}

// Plan shows a plan: an upgrade's, a staging's, or a patch run's.
func (p *Printer) Plan(plan *rollout.Plan) error {
	switch plan.Kind {
	case "":
		return PrintPlan(p.stdout, p.format, plan)
	case rollout.KindStage:
		return PrintStagePlan(p.stdout, p.format, plan)
	}
	return PrintPatchPlan(p.stdout, p.format, plan)
}

// Confirm shows the plan and asks on the terminal.
func (p *Printer) Confirm(plan *rollout.Plan, question, refusal string) error {
	if !IsTerminal(p.stdin) {
		return &ConfirmError{Msg: refusal}
	}
	if err := (&Printer{format: Text, stdout: p.stdout}).Plan(plan); err != nil {
		return err
	}
	fmt.Fprint(p.stdout, question)
	line, _ := bufio.NewReader(p.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return &ConfirmError{Msg: "not confirmed: nothing changed"}
	}
	return nil
}

// ConfirmError: the run was not confirmed; nothing changed.
type ConfirmError struct{ Msg string }

func (e *ConfirmError) Error() string { return e.Msg }

// Close ends the live display (once).
func (p *Printer) Close() { p.once.Do(p.close) }

// RunProgress shows the run-level line, where the display has one.
func (p *Printer) RunProgress(rp rollout.RunProgress) {
	if s, ok := p.progress.(rollout.RunProgressShower); ok {
		s.RunProgress(rp)
	}
}
