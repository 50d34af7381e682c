package rollout

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sentinel-paas/sentinel/resume"
)

// recBinary says which sentinel build goes on with a run from this record
// on, when it is another build than the one before: a resume after a
// self-update, or with a binary put back by hand.
const recBinary = "binary"

type binaryRecord struct {
	Version     string `json:"version"`
	UpdatedFrom string `json:"updated_from,omitempty"` // the build a self-update replaced
}

// BinaryUse is one sentinel build that worked on a run.
type BinaryUse struct {
	Version     string
	UpdatedFrom string    // set when a self-update brought this build in
	Since       time.Time // when it took over (the run's start for the first)
	Record      uint64    // the journal record from which it ran
}

// Binaries lists, in order, the sentinel builds that ran the run: the one
// that started it, then each other build that went on with it.
func (r *Run) Binaries() []BinaryUse {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]BinaryUse(nil), r.binaries...)
}

// NoteBinary records that build version (updatedFrom: the build a
// self-update replaced, or "") goes on with the run, when it is not the
// build that ran it last. It reports whether it wrote a record.
func NoteBinary(j *resume.Journal, run *Run, version, updatedFrom string) (bool, error) {
	if bs := run.Binaries(); len(bs) > 0 && bs[len(bs)-1].Version == version && updatedFrom == "" {
		return false, nil
	}
	rec, err := j.Append(recBinary, binaryRecord{Version: version, UpdatedFrom: updatedFrom})
	if err != nil {
		return false, fmt.Errorf("recording sentinel %s in the run's journal: %w", version, err)
	}
	return true, run.apply(rec)
}

// applyBinary folds a binary record into the run (r.mu held).
func (r *Run) applyBinary(rec resume.Record) error {
	var v binaryRecord
	if err := json.Unmarshal(rec.Data, &v); err != nil {
		return fmt.Errorf("journal record %d: %w", rec.Seq, err)
	}
	r.binaries = append(r.binaries, BinaryUse{Version: v.Version, UpdatedFrom: v.UpdatedFrom, Since: rec.Time, Record: rec.Seq})
	return nil
}
