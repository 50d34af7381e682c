package lifecycle

import "fmt"

// UsageError is bad input from the operator: nothing was changed.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// PreflightError: a check failed; nothing was changed.
type PreflightError struct{ Err error }

func (e *PreflightError) Error() string {
	return "preflight failed, nothing was changed: " + e.Err.Error()
}
func (e *PreflightError) Unwrap() error { return e.Err }
