package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// fetcher is go-tuf's Fetcher over sentinel's HTTP client (proxy rules,
// timeouts) and file:// URLs. It never reads more than the length go-tuf
// allows plus one byte, so a server streaming endless data is cut off
// there. It remembers the last file it read, so that a refusal can name
// the document go-tuf was verifying.
type fetcher struct {
	ctx  context.Context
	http *http.Client
	last struct {
		url  string
		data []byte
	}
	// got keeps every metadata file read, by its path below the base URL.
	got  map[string][]byte
	base string
}

// FetchError: a file of the channel could not be read (not a refusal).
type FetchError struct {
	URL    string
	Status int // HTTP status, when the server answered
	Err    error
	// Origin names where URL came from, for the advice ("" : the
	// channel URL in the cluster file).
	Origin string
}

func (e *FetchError) Error() string {
	cause := bare(e.Err)
	var adv interface{ Advised() bool }
	if errors.As(cause, &adv) && adv.Advised() {
		return e.What() // the cause says what to do
	}
	origin := e.Origin
	if origin == "" {
		origin = "the channel URL in the cluster file"
	}
	return fmt.Sprintf("cannot read %s: %v (check %s and that it is reachable)", e.URL, cause, origin)
}

// What says what happened without Error's advice, for a message that
// lists several sources and advises once (a cause that advises keeps its
// advice: it is its own).
func (e *FetchError) What() string {
	return fmt.Sprintf("cannot read %s: %v", e.URL, bare(e.Err))
}

// bare strips the `Get "URL":` of HTTP clients wrapping each other: the
// URL is said once, by the FetchError.
func bare(err error) error {
	for {
		ue, ok := err.(*url.Error) // only the outer ones: a cause below keeps its own
		if !ok {
			return err
		}
		err = ue.Err
	}
}

// Named says, in err's advice, where its URL came from (a --mirror, a
// command's argument): the FetchError err wraps, if any, names origin.
func Named(err error, origin string) error {
	var fe *FetchError
	if errors.As(err, &fe) {
		fe.Origin = origin
	}
	return err
}
func (e *FetchError) Unwrap() error { return e.Err }

// NotFound says whether the server has no such file.
func (e *FetchError) NotFound() bool { return e.Status == http.StatusNotFound }

// DownloadFile implements go-tuf's fetcher.Fetcher.
func (f *fetcher) DownloadFile(rawURL string, maxLength int64, _ time.Duration) ([]byte, error) {
	data, err := f.download(f.ctx, rawURL, maxLength)
	f.last.url, f.last.data = rawURL, data
	if err == nil && len(rawURL) > len(f.base) && rawURL[:len(f.base)] == f.base {
		f.got[rawURL[len(f.base):]] = data
	}
	return data, err
}

func (f *fetcher) download(ctx context.Context, rawURL string, maxLength int64) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &FetchError{URL: rawURL, Err: err}
	}
	body, size, err := f.open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if size > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d allowed", u.Redacted(), size, maxLength)}
	}
	data, err := io.ReadAll(io.LimitReader(body, maxLength+1))
	if err != nil {
		return nil, &FetchError{URL: u.Redacted(), Err: err}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is more than the %d bytes allowed (stopped reading there)", u.Redacted(), maxLength)}
	}
	return data, nil
}

// open returns the body at u and its announced size (-1 when unknown). A
// missing file is go-tuf's ErrDownloadHTTP 404, which ends the search for
// a newer root.
func (f *fetcher) open(ctx context.Context, u *url.URL) (io.ReadCloser, int64, error) {
	if u.Scheme == "file" {
		file, err := os.Open(u.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u.String()}
		}
		if err != nil {
			return nil, 0, &FetchError{URL: u.String(), Err: err}
		}
		fi, err := file.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			file.Close()
			return nil, 0, &FetchError{URL: u.String(), Err: fmt.Errorf("not a regular file")}
		}
		return file, fi.Size(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, &FetchError{URL: u.Redacted(), Err: err}
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, 0, &FetchError{URL: u.Redacted(), Err: err}
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, 0, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: u.Redacted()}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, &FetchError{URL: u.Redacted(), Status: resp.StatusCode, Err: fmt.Errorf("HTTP %s", resp.Status)}
	}
	return resp.Body, resp.ContentLength, nil
}
