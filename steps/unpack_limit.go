package steps

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
)

// Without a signed unpacked size, an artifact may unpack to at most
// unpackRatio times its compressed size, and never less than
// unpackRatioFloor (small artifacts of text compress far better than big
// ones of binaries), nor more than maxUnpackedBytes. Real releases unpack to
// 2-10 times their size; a zero bomb to 1000 times.
const (
	unpackRatio      = 100
	unpackRatioFloor = 1 << 30
)

// UnpackLimit is how many bytes an artifact may unpack to, and the rule
// that set it, for messages: its signed unpacked size when the channel
// gives one, else the ratio rule.
func UnpackLimit(compressed, unpacked int64) (int64, string) {
	if unpacked > 0 {
		return min(unpacked, maxUnpackedBytes), fmt.Sprintf("its signed unpacked size, %d bytes", unpacked)
	}
	limit := int64(unpackRatioFloor)
	if compressed > 0 && compressed <= maxUnpackedBytes/unpackRatio {
		limit = max(limit, compressed*unpackRatio)
	} else if compressed > 0 {
		limit = maxUnpackedBytes
	}
	limit = min(limit, maxUnpackedBytes)
	return limit, fmt.Sprintf("%d bytes: %d times its compressed size of %d bytes, at least %d (the channel gives no unpacked size)",
		limit, unpackRatio, compressed, int64(unpackRatioFloor))
}

// unpackError says whose problem a failed unpack is: a full disk is the
// node's, an artifact past its limit or an unsafe one is its publisher's.
func (a *Agent) unpackError(req Request, dir string, limit int64, rule string, err error) error {
	what := fmt.Sprintf("%s %s (artifact sha256 %s)", req.Component, req.Version, req.Artifact.SHA256)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		need := "up to " + humanBytes(limit)
		if req.Artifact.UnpackedSize > 0 {
			need = humanBytes(req.Artifact.UnpackedSize)
		}
		return &DiskFullError{Node: a.Node, Step: OpInstall, Path: dir, Need: need, What: what, Err: err}
	case errors.Is(err, ErrUnpackLimit):
		return fmt.Errorf("%s unpacks to more than its limit of %s: refused on node %s before it filled the disk, nothing was installed; "+
			"the artifact matches its sha256, so it is as published: report it to its publisher", what, rule, a.Node)
	}
	return fmt.Errorf("installing %s on node %s: %w (the artifact matches its sha256: the release itself is broken; report it to its publisher)", what, a.Node, err)
}

// DiskFullError is a node whose disk filled during a step: the node's
// problem, not the release's.
type DiskFullError struct {
	Node, Step, Path, Need, What string
	Err                          error
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("the disk of node %s holding %s is full (%v) while the %s step unpacks %s; it needs %s free there: free space on node %s, then resume the run (`sentinel recover`)",
		e.Node, filepath.Dir(e.Path), e.Err, e.Step, e.What, e.Need, e.Node)
}

func (e *DiskFullError) Unwrap() error { return e.Err }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
