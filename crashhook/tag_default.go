//go:build !crashtest

package crashhook

// tagged: a build without -tags crashtest, such as `make build`'s.
const tagged = false
