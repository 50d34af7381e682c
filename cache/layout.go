package cache

import "strings"

// The cache daemon's URL layout, for its clients: what Server serves.
const (
	artifactsPath = "/artifacts/sha256/"
	channelPath   = "/channel/"
	healthPath    = "/healthz"
)

// ArtifactURL is where the daemon at base serves the artifact with this
// sha256 (content-addressed: any release's artifact by its digest).
func ArtifactURL(base, sha256Hex string) string {
	return strings.TrimRight(base, "/") + artifactsPath + sha256Hex
}

// ChannelIndexURL is the daemon's copy of the channel's index, beside
// which it serves every channel document as published.
func ChannelIndexURL(base string) string {
	return strings.TrimRight(base, "/") + channelPath + "index.json"
}

// HealthURL answers once the daemon runs.
func HealthURL(base string) string { return strings.TrimRight(base, "/") + healthPath }
