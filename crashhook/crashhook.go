// Package crashhook is the switch of sentinel's crash injection: the
// environment variables with which tests SIGKILL the real binary at an
// exact point of a run (resume.CrashAfterRecordEnv after a journal record,
// selfupdate.CrashAtEnv after a self-update's rename).
//
// It is on only in builds made with -tags crashtest (the end-to-end
// harness builds sentinel so) and in test binaries that turn it on
// themselves (resume's tests). The binary `make build` produces has no
// tags: there the variables are ignored, so an operator's environment can
// never kill a production run.
package crashhook

import (
	"os"
	"syscall"
	"time"
)

// Enabled says whether the crash-injection variables are obeyed: true in
// builds with -tags crashtest, false otherwise. Only tests set it.
var Enabled = tagged

// Kill SIGKILLs this process and does not return.
func Kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// SIGKILL to self is delivered before kill(2) returns to user space;
	// this only guards against that ever not holding.
	time.Sleep(time.Minute)
	panic("crashhook: SIGKILL to self was not delivered")
}
