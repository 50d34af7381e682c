package resume

import "github.com/sentinel-paas/sentinel/crashhook"

// The crash hook's tests (TestCrashAfterRecord, TestCrashEnvValidated)
// need it in this test binary, whose helper processes are this binary
// again, whatever the build tags.
func init() { crashhook.Enabled = true }
