package cache

import "strings"

// The cache daemon's URL layout, for its clients: what Server serves.
const (
	artifactsPath = "/artifacts/sha256/"
	channelPath   = "/channel/"
	healthPath    = "/healthz"
)

// Routes describes what the daemon serves, for its help.
const Routes = "  GET/HEAD " + artifactsPath + `<hex>   verified artifacts (Range, ETag, sendfile)
  GET      ` + channelPath + `<path>           the channel documents the cache holds
  POST     /prefetch                 fill the cache (bearer token; used by --download-only)
  GET      /metrics                  Prometheus metrics
  GET      ` + healthPath + `
`

// ArtifactURL is where the daemon at base serves the artifact with this
// sha256 (content-addressed: any release's artifact by its digest).
func ArtifactURL(base, sha256Hex string) string {
	return strings.TrimRight(base, "/") + artifactsPath + sha256Hex
}

// ChannelURL is the daemon's copy of the channel's repository (a TUF
// repository kept byte for byte: metadata/ and targets/ below it).
func ChannelURL(base string) string {
	return strings.TrimRight(base, "/") + channelPath
}

// ReadyURL answers whether the daemon can do its job (ReadyReport).
func ReadyURL(base string) string { return strings.TrimRight(base, "/") + readyPath }

// HealthURL answers once the daemon runs.
func HealthURL(base string) string { return strings.TrimRight(base, "/") + healthPath }
