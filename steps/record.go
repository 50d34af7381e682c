package steps

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
)

// Record is what a node says about itself in <root>/etc/sentinel/node.json:
// the release it is on and the versions of its components. It changes only
// when a release (or patch) is fully in place on the node.
type Record struct {
	Release    string            `json:"release"`
	Components map[string]string `json:"components"`
	Patches    []string          `json:"patches,omitempty"`
	// RestartPending are components switched to a patch's files but still
	// running the old version (patch install --no-restart), until a
	// restart or start of each.
	RestartPending []string  `json:"restart_pending,omitempty"`
	Updated        time.Time `json:"updated"`
}

// RecordPath is where a node rooted at root keeps its record.
func RecordPath(root string) string { return filepath.Join(root, "etc", "sentinel", "node.json") }

// ReadRecord reads a node's record; a node without one is an error that says so.
func ReadRecord(root string) (*Record, error) {
	data, err := os.ReadFile(RecordPath(root))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: this node was never installed by sentinel", RecordPath(root))
		}
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w (restore it from <root>/var/sentinel/backups)", RecordPath(root), err)
	}
	return &r, nil
}

// WriteRecord replaces the node's record atomically.
func WriteRecord(root string, r *Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(RecordPath(root), append(data, '\n'), 0o644)
}
