package release

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// SentinelBuildsPath is where a channel publishes the sentinel builds it
// offers, relative to its index. It is a well-known name rather than a
// field of the index, so that sentinel builds which decode the index
// strictly still read an index of a channel that publishes builds. Like
// every document it is a target of the channel, verified before it is parsed.
const SentinelBuildsPath = "tools/sentinel.json"

// SentinelBuilds is the list of sentinel builds a channel offers for the
// self-update of the orchestrator.
type SentinelBuilds struct {
	Builds []SentinelBuild `json:"builds"`
}

// SentinelBuild is one build of sentinel for one platform. Version is the
// build's main.version ("0.4.1"): numbered builds only (see
// ParseBuildVersion). Artifact is the executable itself; its URL may be
// relative to the document.
type SentinelBuild struct {
	Version  string   `json:"version"`
	OS       string   `json:"os"`
	Arch     string   `json:"arch"`
	Artifact Artifact `json:"artifact"`
}

var platformWord = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]{1,32}$`) })

// ParseBuildVersion reads a sentinel build version. Only numbered versions
// compare: one to four dot-separated numbers, with an optional leading
// "v" ("0.4.1", "v0.4.1"). Anything else (a development build, "dev", or
// what `git describe` says between tags, "v0.4.1-3-gabc1234", "abc1234")
// is not numbered: it is never compared, so never replaced silently.
func ParseBuildVersion(s string) (Version, bool) {
	t := strings.TrimPrefix(s, "v")
	if strings.Contains(t, "-") {
		return Version{}, false
	}
	v, err := ParseVersion(t)
	if err != nil {
		return Version{}, false
	}
	return v, true
}

// ParseSentinelBuilds decodes and validates the builds document.
func ParseSentinelBuilds(name string, data []byte) (*SentinelBuilds, error) {
	var b SentinelBuilds
	if err := decodeStrict(data, &b); err != nil {
		return nil, &MetadataError{Doc: name, Err: err}
	}
	seen := map[string]bool{}
	for i, sb := range b.Builds {
		at := fmt.Sprintf("builds[%d]", i)
		if _, ok := ParseBuildVersion(sb.Version); !ok {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".version", fmt.Errorf("%q is not a numbered build version (like 0.4.1)", sb.Version))}
		}
		if !platformWord().MatchString(sb.OS) {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".os", fmt.Errorf("%q is not a GOOS such as linux", sb.OS))}
		}
		if !platformWord().MatchString(sb.Arch) {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".arch", fmt.Errorf("%q is not a GOARCH such as amd64", sb.Arch))}
		}
		key := sb.Version + " " + sb.OS + "/" + sb.Arch
		if seen[key] {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at, fmt.Errorf("build %s listed twice", key))}
		}
		seen[key] = true
		if strings.TrimSpace(sb.Artifact.URL) == "" {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".artifact.url", fmt.Errorf("missing"))}
		}
		if !sha256Hex().MatchString(sb.Artifact.SHA256) {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".artifact.sha256", fmt.Errorf("%q is not 64 lowercase hex digits", sb.Artifact.SHA256))}
		}
		if sb.Artifact.Size <= 0 {
			return nil, &MetadataError{Doc: name, Err: fieldErr(at+".artifact.size", fmt.Errorf("must be a positive byte count, got %d", sb.Artifact.Size))}
		}
	}
	return &b, nil
}

// Newest returns the newest build for goos/goarch, false when the channel
// offers none for that platform.
func (b *SentinelBuilds) Newest(goos, goarch string) (SentinelBuild, bool) {
	var best SentinelBuild
	var bestV Version
	found := false
	for _, sb := range b.Builds {
		if sb.OS != goos || sb.Arch != goarch {
			continue
		}
		v, _ := ParseBuildVersion(sb.Version) // validated
		if !found || v.Compare(bestV) > 0 {
			best, bestV, found = sb, v, true
		}
	}
	return best, found
}

// SentinelBuilds reads the channel's builds document (SentinelBuildsPath).
// A channel that publishes none offers no builds: found is false, with no
// error. Artifacts in the result are resolved as Manifest's are.
func (c *Channel) SentinelBuilds(ctx context.Context) (builds *SentinelBuilds, found bool, err error) {
	if !c.docs.Has(SentinelBuildsPath) {
		return nil, false, nil
	}
	data, err := c.docs.Read(ctx, SentinelBuildsPath)
	if err != nil {
		return nil, false, err
	}
	b, err := ParseSentinelBuilds(SentinelBuildsPath, data)
	if err != nil {
		return nil, false, err
	}
	for i := range b.Builds {
		if err := c.resolve(SentinelBuildsPath, fmt.Sprintf("builds[%d].artifact", i), &b.Builds[i].Artifact); err != nil {
			return nil, false, err
		}
	}
	return b, true, nil
}
