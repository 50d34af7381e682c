package rollout

import "time"

// RunProgress is where a run stands as a whole, for the run-level line:
// node k of n, elapsed, and an estimate of what is left once nodes
// finished in this process give one.
type RunProgress struct {
	Nodes   int    `json:"nodes"`   // nodes the run changes
	Started int    `json:"started"` // nodes begun (this one is node Started of Nodes)
	Done    int    `json:"done"`    // nodes finished
	Node    string `json:"node"`    // the node that just began or finished
	Event   string `json:"event"`   // "node-started", "node-done" or "bytes"
	// BytesDone of BytesTotal: the whole fleet's transfer, on a staging
	// run (event "bytes", and with the node events).
	BytesDone  int64 `json:"bytes_done,omitempty"`
	BytesTotal int64 `json:"bytes_total,omitempty"`
	// Elapsed is this process's time on the run; ETA 0 means no estimate
	// yet (no node finished in this process).
	Elapsed time.Duration `json:"elapsed_ns"`
	ETA     time.Duration `json:"eta_ns,omitempty"`
}

// RunProgressShower is a Progress that also shows the run-level line.
type RunProgressShower interface {
	RunProgress(RunProgress)
}
