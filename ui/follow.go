package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// Follower shows the events of a run in another process (its events file,
// as `sentinel attach` reads it) with the display that run would show:
// the same step lines or bars, or the JSON lines as they are.
type Follower struct {
	format string
	w      io.Writer
	text   *textProgress
	shown  progress
	close  func()
	at     time.Time
}

// NewFollower picks the display as New does.
func NewFollower(format string, stdout io.Writer) *Follower {
	f := &Follower{format: format, w: DropWhenGone(stdout), close: func() {}}
	if format == JSON {
		return f
	}
	if IsTerminal(stdout) {
		bars := newTTYProgress(f.w)
		f.text, f.shown, f.close = bars.textProgress, bars, bars.Close
	} else {
		f.text = newTextProgress(f.w)
		f.shown = f.text
	}
	f.text.now = func() time.Time { return f.at } // each event at its own time
	return f
}

// followed is every field of the events a run writes.
type followed struct {
	jsonEvent
	Transfer *steps.FetchProgress `json:"transfer"`
	// run-start, run-end
	ID       string   `json:"id"`
	Command  []string `json:"command"`
	User     string   `json:"user"`
	Host     string   `json:"host"`
	From     string   `json:"from"`
	Resumed  bool     `json:"resumed"`
	Result   string   `json:"result"`
	ExitCode *int     `json:"exit_code"`
	Failed   []string `json:"failed_nodes"`
	// progress
	Progress *rollout.RunProgress `json:"progress"`
}

// Line shows one line of the events file.
func (f *Follower) Line(line []byte) {
	if f.format == JSON {
		_, _ = f.w.Write(line)
		return
	}
	var e followed
	if json.Unmarshal(line, &e) != nil {
		return
	}
	f.at = e.Time
	s := rollout.Step{ID: e.Step, Op: e.Op}
	switch e.Event {
	case "run-start":
		f.runStart(e)
	case "run-end":
		code := 0
		if e.ExitCode != nil {
			code = *e.ExitCode
		}
		fmt.Fprintf(f.text.w, "Run %s ended: %s (exit %d)%s\n", e.ID, e.Result, code, listed(" failed: ", e.Failed))
	case "step-start":
		f.shown.StepStarted(e.Node, s)
	case "step-done":
		f.shown.StepFinished(e.Node, s, steps.Result{Note: e.Message, Changed: e.Changed}, nil)
	case "step-failed":
		f.shown.StepFinished(e.Node, s, steps.Result{}, errors.New(e.Error))
	case "transfer":
		if e.Transfer != nil {
			f.shown.Transfer(e.Node, s, *e.Transfer)
		}
	case "log":
		f.shown.Logf(e.Node, "%s", e.Message)
	case "progress":
		if rp, ok := f.shown.(rollout.RunProgressShower); ok && e.Progress != nil {
			rp.RunProgress(*e.Progress)
		}
	}
}

func (f *Follower) runStart(e followed) {
	how := "started"
	if e.Resumed {
		how = "resumed"
	}
	who := e.User + "@" + e.Host
	if e.From != "" {
		who += " from " + e.From
	}
	// Through the display's own writer: above the bars, in order.
	fmt.Fprintf(f.text.w, "Run %s %s by %s at %s: %s\n", e.ID, how, who, e.Time.Local().Format(time.DateTime), strings.Join(e.Command, " "))
}

func listed(prefix string, l []string) string {
	if len(l) == 0 {
		return ""
	}
	return prefix + strings.Join(l, ", ")
}

// Notef is a line about following itself (detached, ended), once the
// display is closed.
func (f *Follower) Notef(format string, args ...any) {
	if f.format != JSON {
		fmt.Fprintf(f.w, format+"\n", args...)
	}
}

// Close ends the live display.
func (f *Follower) Close() { f.close() }
