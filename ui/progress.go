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
	etas     map[string]*etaClock // per node and artifact
	// now is the time of what is shown: the clock, or an event's time
	// when `sentinel attach` replays a run's events.
	now func() time.Time
}

// transferLineEvery spaces the progress lines of a download when the output
// is not a terminal.
const transferLineEvery = 2 * time.Second

func newTextProgress(w io.Writer) *textProgress {
	return &textProgress{w: w, start: map[string]time.Time{}, lastLine: map[string]time.Time{}, etas: map[string]*etaClock{}, now: time.Now}
}

func (p *textProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := node + "\x00" + tp.Digest
	if p.etas[key] == nil {
		p.etas[key] = &etaClock{}
	}
	eta, known := p.etas[key].estimate(p.now(), tp.Done, tp.Total)
	if tp.Final {
		delete(p.etas, key)
	}
	if tp.Final || p.now().Sub(p.lastLine[key]) < transferLineEvery {
		return // the step's own line reports the end
	}
	p.lastLine[key] = p.now()
	if !known {
		eta = -1
	}
	fmt.Fprintf(p.w, "[%s] %-40s %s\n", node, s.ID, describeTransfer(s, tp, eta))
}

// describeTransfer: "router 3.4.2 (sha256 0a1b2c3d4e5f): 45.0 MiB of 100.0
// MiB, 12.3 MiB/s, ETA 4s, 1 retry"; no ETA (eta < 0) until there is
// enough to estimate one.
func describeTransfer(s rollout.Step, tp steps.FetchProgress, eta time.Duration) string {
	out := fmt.Sprintf("%s of %s", preflight.FormatBytes(tp.Done), preflight.FormatBytes(tp.Total))
	if s.Component != "" {
		out = fmt.Sprintf("%s %s (sha256 %.12s): %s", s.Component, s.Version, tp.Digest, out)
	}
	if tp.Rate > 0 {
		out += fmt.Sprintf(", %s/s", preflight.FormatBytes(int64(tp.Rate)))
	}
	if eta >= 0 {
		out += ", ETA " + eta.Round(time.Second).String()
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
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), etaDecorator()),
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
	p.start[node+"\x00"+s.ID] = p.now()
}

func (p *textProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.now().Sub(p.start[node+"\x00"+s.ID]).Round(time.Millisecond)
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

// RunProgress prints the run-level line.
func (p *textProgress) RunProgress(rp rollout.RunProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[run] %s\n", DescribeRunProgress(rp))
}

// DescribeRunProgress: "node 2 of 5 (dea-2) started; 1 done; elapsed 1m2s; ETA 3m10s".
func DescribeRunProgress(rp rollout.RunProgress) string {
	var out string
	if rp.Event == "bytes" {
		return fmt.Sprintf("fleet: %s of %s transferred, %d of %d nodes done; elapsed %s", preflight.FormatBytes(rp.BytesDone), preflight.FormatBytes(rp.BytesTotal), rp.Done, rp.Nodes, rp.Elapsed.Round(time.Second))
	}
	if rp.Event == "node-done" {
		out = fmt.Sprintf("%s done: %d of %d nodes done", rp.Node, rp.Done, rp.Nodes)
	} else {
		out = fmt.Sprintf("node %d of %d (%s) started; %d done", rp.Started, rp.Nodes, rp.Node, rp.Done)
	}
	if rp.BytesTotal > 0 {
		out += fmt.Sprintf("; fleet %s of %s", preflight.FormatBytes(rp.BytesDone), preflight.FormatBytes(rp.BytesTotal))
	}
	out += "; elapsed " + rp.Elapsed.Round(time.Second).String()
	if rp.ETA > 0 {
		out += ", ETA " + rp.ETA.Round(time.Second).String()
	}
	return out
}

func (p *jsonProgress) RunProgress(rp rollout.RunProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(map[string]any{"event": "progress", "time": time.Now().UTC(), "node": rp.Node, "progress": rp})
}

// An ETA is shown once the transfer has run for etaMinElapsed and moved
// etaMinFraction of its size (at least etaMinBytes) since it was first
// seen: from the first few KiB, while a connection is still opening, an
// estimate is wild (1h43m for 200 MiB).
const (
	etaMinElapsed  = 3 * time.Second
	etaMinBytes    = 1 << 20
	etaMinFraction = 50 // 1/50 = 2%
)

// etaClock estimates a transfer's time left from what it moved since
// it was first seen (a resumed download starts from its offset).
type etaClock struct {
	t0 time.Time
	d0 int64
}

func (c *etaClock) estimate(now time.Time, done, total int64) (time.Duration, bool) {
	if c.t0.IsZero() {
		c.t0, c.d0 = now, done
		return 0, false
	}
	elapsed, moved := now.Sub(c.t0), done-c.d0
	if elapsed < etaMinElapsed || moved < max(etaMinBytes, total/etaMinFraction) || total <= done {
		return 0, false
	}
	return time.Duration(float64(total-done) / float64(moved) * float64(elapsed)), true
}

// etaDecorator is mpb's ETA column by etaClock's rule: blank until known.
func etaDecorator() decor.Decorator {
	var c etaClock
	return decor.Any(func(st decor.Statistics) string {
		if eta, ok := c.estimate(time.Now(), st.Current, st.Total); ok {
			return "ETA " + eta.Round(time.Second).String()
		}
		return ""
	}, decor.WCSyncSpace)
}
