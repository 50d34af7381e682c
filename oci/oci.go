// Package oci keeps a channel (its TUF metadata and its targets) in an OCI
// registry and reads it back. The layout, documented in docs/reference.md:
//
//	every file of the repository    one blob (its sha256 is the digest)
//	one publication                 one OCI image manifest, artifactType
//	                                application/vnd.sentinel.channel.v1,
//	                                whose layers are the files, each
//	                                annotated org.opencontainers.image.title =
//	                                its path below the repository's base
//	                                ("metadata/timestamp.json",
//	                                "targets/3.4.2/<sha256>.app.tar.gz")
//	tags                            "latest" and "v<timestamp version>"
//
// The registry is untrusted storage: a path resolves to a blob through the
// manifest, the blob's bytes go to go-tuf (metadata) or to the node's
// sha256-checked transfer (targets), and nothing here decides trust.
package oci

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

const (
	// ArtifactType marks a channel publication's manifest.
	ArtifactType = "application/vnd.sentinel.channel.v1"
	// FileMediaType is the media type of every layer (a file of the channel).
	FileMediaType = "application/vnd.sentinel.channel.file.v1"
	// TitleAnnotation names a layer's path below the repository's base.
	TitleAnnotation = "org.opencontainers.image.title"
	// LatestTag is the tag of the newest publication, the one clients read.
	LatestTag = "latest"
	// maxManifestBytes bounds what a registry may send as a manifest.
	maxManifestBytes = 4 << 20
)

// Scheme is the URL scheme of a channel or mirror in a registry.
const Scheme = "oci"

// Ref is oci://HOST[:PORT]/REPO: a repository of one registry.
type Ref struct {
	Host string // host[:port]
	Repo string // path within the registry, no leading or trailing slash
}

var repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*$`)

// IsRef says whether raw is an oci:// URL.
func IsRef(raw string) bool { return strings.HasPrefix(raw, Scheme+"://") }

// ParseRef reads oci://HOST[:PORT]/REPO. The host is taken as written:
// nothing is looked up here.
func ParseRef(raw string) (Ref, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != Scheme || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Ref{}, &RefError{Raw: raw, Why: "want oci://HOST[:PORT]/REPO"}
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Ref{}, &RefError{Raw: raw, Why: fmt.Sprintf("%q is not a port (1 to 65535)", port)}
		}
	}
	repo := strings.Trim(u.Path, "/")
	if !repoPattern.MatchString(repo) {
		return Ref{}, &RefError{Raw: raw, Why: fmt.Sprintf("%q is not a repository name (lower-case letters, digits, separators . _ - and /)", repo)}
	}
	return Ref{Host: u.Host, Repo: repo}, nil
}

// String is the ref as an oci:// URL.
func (r Ref) String() string { return Scheme + "://" + r.Host + "/" + r.Repo }

// Reference is the ref as oras-go names it (HOST/REPO).
func (r Ref) Reference() string { return r.Host + "/" + r.Repo }

// BlobURL is where the registry serves the blob with this sha256 (hex), by
// the distribution API; scheme is https, or http for a plain registry.
func (r Ref) BlobURL(scheme, sha256Hex string) string {
	return scheme + "://" + r.Host + "/v2/" + r.Repo + "/blobs/sha256:" + sha256Hex
}

func (r Ref) manifestURL(scheme, tag string) string {
	return scheme + "://" + r.Host + "/v2/" + r.Repo + "/manifests/" + tag
}

// RefError is an oci:// URL that cannot be used: bad input.
type RefError struct{ Raw, Why string }

func (e *RefError) Error() string {
	return fmt.Sprintf("registry URL %q: %s", e.Raw, e.Why)
}

// NoPublicationError: the registry answered that the repository has no
// publication tagged latest (404), usually a misspelt repository name.
type NoPublicationError struct{ Ref Ref }

func (e *NoPublicationError) Error() string {
	return fmt.Sprintf("no publication tagged %s in %s: check the repository name (a channel is put there with `sentinel channel push` or `sentinel channel copy`)", LatestTag, e.Ref)
}

// Advised: the error says what to do (a reader adds no advice of its own).
func (e *NoPublicationError) Advised() bool { return true }
