package oci

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Remote reads one channel publication in a registry. As an
// http.RoundTripper it answers GET oci://HOST/REPO/<path> with the blob the
// publication's manifest lists under <path> (a 404 when it lists none), so
// the channel's fetcher reads a registry as it reads an HTTP server.
type Remote struct {
	Ref    Ref
	Access Access

	once     sync.Once
	hc       *http.Client
	err      error
	manifest map[string]string // path -> digest ("sha256:...")
	status   int               // the manifest's HTTP status when not 200
}

// NewRemote reads the channel at ref.
func NewRemote(ref Ref, a Access) (*Remote, error) {
	hc, err := a.HTTPClient(ref.Host)
	if err != nil {
		return nil, err
	}
	return &Remote{Ref: ref, Access: a, hc: hc}, nil
}

// HTTPClient is a client that reads oci:// URLs of this remote (and no
// others).
func (r *Remote) HTTPClient() *http.Client {
	t := &http.Transport{}
	t.RegisterProtocol(Scheme, r)
	return &http.Client{Transport: t}
}

// RoundTrip implements http.RoundTripper for oci:// URLs below r.Ref.
func (r *Remote) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	prefix := "/" + r.Ref.Repo + "/"
	if req.URL.Host != r.Ref.Host || !strings.HasPrefix(req.URL.Path, prefix) {
		return nil, fmt.Errorf("%s is not below %s", req.URL.Redacted(), r.Ref)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, fmt.Errorf("%s %s: a registry channel is read only", req.Method, req.URL.Redacted())
	}
	path := strings.TrimPrefix(req.URL.Path, prefix)
	if status, err := r.load(req); err != nil || status != 0 {
		if err != nil {
			return nil, err
		}
		return statusResponse(req, status), nil
	}
	digest, ok := r.manifest[path]
	if !ok {
		return statusResponse(req, http.StatusNotFound), nil
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.Access.Scheme()+"://"+r.Ref.Host+"/v2/"+r.Ref.Repo+"/blobs/"+digest, nil)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Range", "If-Range", "Accept-Encoding"} {
		if v := req.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	resp, err := r.hc.Do(out)
	if err != nil {
		return nil, explain(err, r.Ref, r.Access)
	}
	return resp, nil
}

// load reads the latest publication's manifest, once. A registry that
// answers with an error status has that status for every path.
func (r *Remote) load(req *http.Request) (int, error) {
	r.once.Do(func() {
		r.manifest, r.status, r.err = r.readManifest(req)
	})
	return r.status, r.err
}

func (r *Remote) readManifest(orig *http.Request) (map[string]string, int, error) {
	req, err := http.NewRequestWithContext(orig.Context(), http.MethodGet, r.Ref.manifestURL(r.Access.Scheme(), LatestTag), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, 0, explain(err, r.Ref, r.Access)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// No publication (a misspelt repository, most often): a 404 for
		// every file would read as "no such channel document".
		return nil, 0, &NoPublicationError{Ref: r.Ref}
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, 0, explain(&errcode.ErrorResponse{Method: req.Method, URL: req.URL, StatusCode: resp.StatusCode}, r.Ref, r.Access)
	default:
		return nil, resp.StatusCode, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > maxManifestBytes {
		return nil, 0, fmt.Errorf("%s: the manifest %s:%s is larger than %d bytes", r.Ref, r.Ref.Repo, LatestTag, maxManifestBytes)
	}
	return parseManifest(data)
}

// parseManifest maps each layer's title to its digest. Anything that is
// not a channel publication is refused: the registry is untrusted, but a
// manifest of another kind is a misconfiguration, not an attack, and says so.
func parseManifest(data []byte) (map[string]string, int, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, 0, fmt.Errorf("the manifest tagged %s is not JSON: %v", LatestTag, err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, 0, fmt.Errorf("the manifest tagged %s is not a sentinel channel (artifactType %q, want %q): push the channel with `sentinel channel push`", LatestTag, m.ArtifactType, ArtifactType)
	}
	out := make(map[string]string, len(m.Layers))
	for _, l := range m.Layers {
		title := l.Annotations[TitleAnnotation]
		if title == "" || strings.HasPrefix(title, "/") || strings.Contains(title, "..") {
			continue
		}
		if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != "sha256" {
			continue
		}
		out[title] = l.Digest.String()
	}
	return out, 0, nil
}

func statusResponse(req *http.Request, status int) *http.Response {
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: http.NoBody, ContentLength: 0, Request: req}
}
