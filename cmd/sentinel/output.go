package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// textProgress prints one line per step: readable in a terminal and in a log.
type textProgress struct {
	mu    sync.Mutex
	w     io.Writer
	start map[string]time.Time
}

func newTextProgress(w io.Writer) *textProgress {
	return &textProgress{w: w, start: map[string]time.Time{}}
}

func (p *textProgress) StepStarted(node string, s rollout.Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start[node+"\x00"+s.ID] = time.Now()
}

func (p *textProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := time.Since(p.start[node+"\x00"+s.ID]).Round(time.Millisecond)
	switch {
	case err != nil:
		fmt.Fprintf(p.w, "[%s] %-40s FAILED (%s): %v\n", node, s.ID, d, err)
	case res.Note != "":
		fmt.Fprintf(p.w, "[%s] %-40s ok (%s) %s\n", node, s.ID, d, res.Note)
	default:
		fmt.Fprintf(p.w, "[%s] %-40s ok (%s)\n", node, s.ID, d)
	}
}

func (p *textProgress) Logf(node, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%s] %s\n", node, fmt.Sprintf(format, args...))
}

// jsonProgress prints one JSON object per event (--output json).
type jsonProgress struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newJSONProgress(w io.Writer) *jsonProgress { return &jsonProgress{enc: json.NewEncoder(w)} }

type jsonEvent struct {
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Node    string    `json:"node,omitempty"`
	Step    string    `json:"step,omitempty"`
	Op      string    `json:"op,omitempty"`
	Message string    `json:"message,omitempty"`
	Error   string    `json:"error,omitempty"`
	Changed bool      `json:"changed,omitempty"`
}

func (p *jsonProgress) emit(e jsonEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.Time = time.Now().UTC()
	_ = p.enc.Encode(e)
}

func (p *jsonProgress) StepStarted(node string, s rollout.Step) {
	p.emit(jsonEvent{Event: "step-start", Node: node, Step: s.ID, Op: s.Op})
}

func (p *jsonProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	e := jsonEvent{Event: "step-done", Node: node, Step: s.ID, Op: s.Op, Message: res.Note, Changed: res.Changed}
	if err != nil {
		e.Event, e.Error = "step-failed", err.Error()
	}
	p.emit(e)
}

func (p *jsonProgress) Logf(node, format string, args ...any) {
	p.emit(jsonEvent{Event: "log", Node: node, Message: fmt.Sprintf(format, args...)})
}

func (p *jsonProgress) emitResult(kind string, v any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enc.Encode(map[string]any{"event": kind + "-result", "time": time.Now().UTC(), "result": v})
}
