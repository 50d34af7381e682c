// Package cache is sentinel's content-addressed artifact store: files are
// named by their sha256 and only ever visible there once verified.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
)

// Store keeps verified artifacts under Dir/sha256/<hex>; downloads in
// progress live under Dir/partial.
type Store struct {
	Dir  string
	HTTP *http.Client // nil: a client honouring http_proxy, https_proxy, no_proxy
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Path is where the artifact with this digest lives once verified.
func (s *Store) Path(digest string) string { return filepath.Join(s.Dir, "sha256", digest) }

// Has reports whether a verified artifact with this digest is stored.
func (s *Store) Has(digest string) bool {
	_, err := os.Stat(s.Path(digest))
	return err == nil
}

// DigestMismatchError: the bytes fetched do not have the expected digest.
type DigestMismatchError struct {
	URL       string
	Want, Got string
	Size      int64
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("artifact %s has sha256 %s, the release says %s: the upstream or a mirror serves a different file; nothing was installed", e.URL, e.Got, e.Want)
}

// SizeMismatchError: the source had more or fewer bytes than the release says.
type SizeMismatchError struct {
	URL       string
	Want, Got int64
}

func (e *SizeMismatchError) Error() string {
	if e.Got > e.Want {
		return fmt.Sprintf("artifact %s is larger than the %d bytes the release says: refusing it", e.URL, e.Want)
	}
	return fmt.Sprintf("artifact %s ended after %d of %d bytes", e.URL, e.Got, e.Want)
}

// Fetch makes sure the artifact with digest is in the store, downloading it
// from rawURL (http, https or file) if needed. It reports whether it
// downloaded anything.
func (s *Store) Fetch(ctx context.Context, rawURL, digest string, size int64) (bool, error) {
	if !digestRE.MatchString(digest) {
		return false, fmt.Errorf("bad digest %q", digest)
	}
	if s.Has(digest) {
		return false, nil
	}
	partDir := filepath.Join(s.Dir, "partial")
	if err := os.MkdirAll(partDir, 0o755); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "sha256"), 0o755); err != nil {
		return false, err
	}
	body, err := s.open(ctx, rawURL)
	if err != nil {
		return false, err
	}
	defer body.Close()

	part := filepath.Join(partDir, digest+".part")
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return false, err
	}
	h := sha256.New()
	// Read one byte past the expected size so an oversized source is caught
	// without writing more than size+1 bytes.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return false, fmt.Errorf("downloading %s: %w", rawURL, err)
	}
	if n != size {
		os.Remove(part)
		return false, &SizeMismatchError{URL: rawURL, Want: size, Got: n}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		os.Remove(part)
		return false, &DigestMismatchError{URL: rawURL, Want: digest, Got: got, Size: n}
	}
	if err := os.Rename(part, s.Path(digest)); err != nil {
		return false, err
	}
	return true, syncDir(filepath.Join(s.Dir, "sha256"))
}

func (s *Store) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad artifact URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		return os.Open(u.Path)
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		client := s.HTTP
		if client == nil {
			client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("downloading %s: %w", rawURL, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("downloading %s: HTTP %s", rawURL, resp.Status)
		}
		return resp.Body, nil
	default:
		return nil, errors.New("artifact URL scheme must be http, https or file: " + rawURL)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
