package steps

import (
	"os"
	"time"

	"github.com/sentinel-paas/sentinel/crashhook"
)

// ClockSkewEnv shifts the time the agent reports to preflight by a Go
// duration ("10m", "-6m"): a node with a wrong clock, for the tests. Like
// the crash-injection variables it is obeyed only in test builds
// (crashhook.Enabled); `make build`'s binary ignores it.
const ClockSkewEnv = "SENTINEL_TEST_CLOCK_SKEW"

// clockNow is the node's time as the agent reports it.
func clockNow() time.Time {
	now := time.Now()
	if !crashhook.Enabled {
		return now
	}
	if d, err := time.ParseDuration(os.Getenv(ClockSkewEnv)); err == nil {
		return now.Add(d)
	}
	return now
}
