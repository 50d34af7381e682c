//go:build crashtest

package crashhook

// tagged: built with -tags crashtest, a build for tests.
const tagged = true
