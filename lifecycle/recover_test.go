package lifecycle

import (
	"testing"

	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/rollout"
)

// Each kind of run is named as what it does, with the command that
// finishes it: a staging is no patch, and a maintenance run is finished by
// `sentinel maintain --resume`.
func TestEveryRunKindIsNamedWithItsResume(t *testing.T) {
	for _, tc := range []struct{ kind, summary, resume string }{
		{"", "upgrade 3.4.1 -> 3.4.2", "sentinel upgrade --resume"},
		{rollout.KindStage, "staging of 3.4.2 (3.4.1 -> 3.4.2)", "sentinel upgrade --resume"},
		{rollout.KindRestart, "restart on 3.4.2", "sentinel upgrade --resume"},
		{rollout.KindMaintain, "maintenance on 3.4.2", "sentinel maintain --resume"},
		{patches.KindInstall, "patch install of p1, p2 on 3.4.2", "sentinel patch install --resume"},
		{patches.KindRevert, "patch revert of p1, p2 on 3.4.2", "sentinel patch revert --resume"},
	} {
		if got := PlanSummary(tc.kind, "3.4.1", "3.4.2", []string{"p1", "p2"}); got != tc.summary {
			t.Errorf("kind %q: %q, want %q", tc.kind, got, tc.summary)
		}
		if got := ResumeCommand(tc.kind); got != tc.resume {
			t.Errorf("kind %q resumes with %q, want %q", tc.kind, got, tc.resume)
		}
	}
}
