package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// textProgress prints one line per step: readable in a terminal and in a
// log. Downloads get a line every few seconds while they run.
type textProgress struct {
	mu       sync.Mutex
	w        io.Writer
	start    map[string]time.Time
	lastLine map[string]time.Time // per node and artifact
}

// transferLineEvery spaces the progress lines of a download when the output
// is not a terminal.
const transferLineEvery = 2 * time.Second

func newTextProgress(w io.Writer) *textProgress {
	return &textProgress{w: w, start: map[string]time.Time{}, lastLine: map[string]time.Time{}}
}

func (p *textProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := node + "\x00" + tp.Digest
	if tp.Final || time.Since(p.lastLine[key]) < transferLineEvery {
		return // the step's own line reports the end
	}
	p.lastLine[key] = time.Now()
	fmt.Fprintf(p.w, "[%s] %-40s %s\n", node, s.ID, describeTransfer(tp))
}

// describeTransfer: "45.0 MiB of 100.0 MiB, 12.3 MiB/s, ETA 4s, 1 retry".
func describeTransfer(tp steps.FetchProgress) string {
	out := fmt.Sprintf("%s of %s", preflight.FormatBytes(tp.Done), preflight.FormatBytes(tp.Total))
	if tp.Rate > 0 {
		out += fmt.Sprintf(", %s/s, ETA %s", preflight.FormatBytes(int64(tp.Rate)), (time.Duration(float64(tp.Total-tp.Done)/tp.Rate) * time.Second).Round(time.Second))
	}
	switch tp.Retries {
	case 0:
	case 1:
		out += ", 1 retry"
	default:
		out += fmt.Sprintf(", %d retries", tp.Retries)
	}
	return out
}

// ttyProgress draws a live bar per download (mpb) and prints the step
// lines above the bars.
type ttyProgress struct {
	*textProgress
	bars   *mpb.Progress
	mu     sync.Mutex
	open   map[string]*mpb.Bar
	totals map[string]int64
}

func newTTYProgress(w io.Writer) *ttyProgress {
	bars := mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	return &ttyProgress{textProgress: newTextProgress(bars), bars: bars, open: map[string]*mpb.Bar{}, totals: map[string]int64{}}
}

func (p *ttyProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := node + "\x00" + tp.Digest
	bar := p.open[key]
	if bar == nil {
		if tp.Final {
			return
		}
		bar = p.bars.AddBar(tp.Total,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("[%s] %s %s", node, s.Component, s.Version), decor.WCSyncSpaceR),
				decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.AverageETA(decor.ET_STYLE_GO)),
			mpb.BarRemoveOnComplete())
		p.open[key], p.totals[key] = bar, tp.Total
	}
	if !tp.Final {
		bar.SetCurrent(tp.Done)
		return
	}
	if !tp.Failed && (tp.Total == 0 || tp.Done >= tp.Total) { // done (a final report may omit the sizes)
		bar.SetCurrent(p.totals[key]) // completes, and so removes, the bar
	} else {
		bar.Abort(true)
	}
	delete(p.open, key)
	delete(p.totals, key)
}

// Close ends the bars; the display is final afterwards.
func (p *ttyProgress) Close() {
	p.mu.Lock()
	for k, b := range p.open {
		b.Abort(true)
		delete(p.open, k)
	}
	p.mu.Unlock()
	p.bars.Wait()
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

// NewJSONProgress writes one JSON object per event.
func NewJSONProgress(w io.Writer) *jsonProgress { return &jsonProgress{enc: json.NewEncoder(w)} }

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

func (p *jsonProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(map[string]any{"event": "transfer", "time": time.Now().UTC(), "node": node, "step": s.ID, "transfer": tp})
}

func (p *jsonProgress) Logf(node, format string, args ...any) {
	p.emit(jsonEvent{Event: "log", Node: node, Message: fmt.Sprintf(format, args...)})
}

// EmitResult writes the closing document of a command ("<kind>-result").
func (p *jsonProgress) EmitResult(kind string, v any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enc.Encode(map[string]any{"event": kind + "-result", "time": time.Now().UTC(), "result": v})
}
