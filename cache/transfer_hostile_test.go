package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTransferHostileServers: servers that misbehave on a resume or lie
// about the file. The result is the right file or a clear error, never a
// corrupt file in the store.
func TestTransferHostileServers(t *testing.T) {
	data := testData(6*mib, 1)
	digest := sha256Hex(data)
	other := testData(len(data), 2) // same size, other bytes
	size := int64(len(data))
	const cut = 2*mib + 12345 // the first response ends here

	type want struct {
		err          func(error) bool // nil: success
		attempts     int
		restarts     int
		refetches    int
		requests     int
		received     int64 // -1: don't check
		partialsKept bool  // after an error: .part/.state kept for a resume
	}
	isSize := func(got int64) func(error) bool {
		return func(err error) bool {
			var sm *SizeMismatchError
			return errors.As(err, &sm) && sm.Want == size && sm.Got == got
		}
	}
	cases := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, n int)
		stall   time.Duration
		want    want
	}{
		{
			name: "ignores Range: 200 with the full body after a cut",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Header().Set("ETag", `"a"`)
				if n == 1 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				w.Write(data)
			},
			want: want{attempts: 2, restarts: 1, requests: 2, received: cut + size},
		},
		{
			name: "file changes between attempts: If-Range gets 200, digest mismatch after one re-fetch",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					serve(&cutWriter{ResponseWriter: w, left: cut}, r, data, `"a"`)
					return
				}
				serve(w, r, other, `"b"`) // If-Range "a" no longer matches: 200
			},
			want: want{
				err: func(err error) bool {
					var dm *DigestMismatchError
					return errors.As(err, &dm) && dm.Want == digest && dm.Got == sha256Hex(other)
				},
				attempts: 3, restarts: 1, refetches: 1, requests: 3, received: cut + 2*size,
			},
		},
		{
			name: "206 with a wrong Content-Range start",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if start := rangeStart(r); start > 0 {
					from := start - 1000
					w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, size-1, size))
					w.Header().Set("Content-Length", fmt.Sprint(size-from))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(data[from:])
					return
				}
				if n == 1 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				serve(w, r, data, `"a"`)
			},
			// cut 200, refused 206, fresh 200 without Range
			want: want{attempts: 3, restarts: 1, requests: 3, received: cut + size},
		},
		{
			name: "206 whose total is not the expected size",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if start := rangeStart(r); start > 0 {
					w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size, size+1))
					w.Header().Set("Content-Length", fmt.Sprint(size+1-start))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(append(data[start:], 'x'))
					return
				}
				if n == 1 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				serve(w, r, data, `"a"`)
			},
			want: want{attempts: 3, restarts: 1, requests: 3, received: cut + size},
		},
		{
			name: "416 to the resume",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if rangeStart(r) > 0 {
					w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
					return
				}
				if n == 1 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				serve(w, r, data, `"a"`)
			},
			want: want{attempts: 3, restarts: 1, requests: 3, received: cut + size},
		},
		{
			name: "more bytes than the size, declared in Content-Length",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				serve(w, r, append(bytes.Clone(data), "trailing"...), `"a"`)
			},
			want: want{err: isSize(size + 8), attempts: 1, requests: 1, received: 0},
		},
		{
			name: "more bytes than the size, chunked",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				w.Write(data)
				w.(http.Flusher).Flush() // no Content-Length: chunked
				w.Write([]byte("trailing"))
			},
			want: want{err: isSize(size + 1), attempts: 1, requests: 1, received: -1},
		},
		{
			name: "fewer bytes than the size, declared",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				serve(w, r, data[:size-1], `"a"`)
			},
			want: want{err: isSize(size - 1), attempts: 1, requests: 1, received: 0},
		},
		{
			name: "404 is not retried",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				http.NotFound(w, r)
			},
			want: want{err: func(err error) bool {
				var se *statusError
				return errors.As(err, &se) && se.Code == 404 && strings.Contains(err.Error(), "/artifact.tgz") && strings.Contains(err.Error(), "404")
			}, attempts: 1, requests: 1, received: 0},
		},
		{
			name: "403 is not retried",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				http.Error(w, "no", http.StatusForbidden)
			},
			want: want{err: func(err error) bool { return strings.Contains(err.Error(), "403") }, attempts: 1, requests: 1, received: 0},
		},
		{
			name: "503 twice, then OK",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= 2 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				serve(w, r, data, `"a"`)
			},
			want: want{attempts: 3, requests: 3, received: size},
		},
		{
			name: "429 with Retry-After, then OK",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Retry-After", "1") // capped by RetryMax
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return
				}
				serve(w, r, data, `"a"`)
			},
			want: want{attempts: 2, requests: 2, received: size},
		},
		{
			name: "503 for ever: gives up after MaxAttempts",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				http.Error(w, "down", http.StatusServiceUnavailable)
			},
			want: want{err: func(err error) bool {
				var se *statusError
				return errors.As(err, &se) && se.Code == 503 && strings.Contains(err.Error(), "gave up after 8 attempts")
			}, attempts: 8, requests: 8, received: 0},
		},
		{
			name: "no response headers: stall, then OK",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					<-r.Context().Done() // the client gives up and closes
					return
				}
				serve(w, r, data, `"a"`)
			},
			stall: 500 * time.Millisecond,
			want:  want{attempts: 2, requests: 2, received: size},
		},
		{
			name: "body stalls after a cut point, then OK",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Content-Length", fmt.Sprint(size))
					w.Header().Set("ETag", `"a"`)
					w.Write(data[:cut])
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return
				}
				serve(w, r, data, `"a"`)
			},
			stall: 500 * time.Millisecond,
			want:  want{attempts: 2, requests: 2, received: size},
		},
		{
			name: "cut, then the resume is cut again, then OK",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= 2 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				serve(w, r, data, `"a"`)
			},
			want: want{attempts: 3, requests: 3, received: size},
		},
		{
			name: "no validator at all: resumes without If-Range",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w = &cutWriter{ResponseWriter: w, left: cut}
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data)) // no ETag, no Last-Modified
			},
			want: want{attempts: 2, requests: 2, received: size},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, tc.handler)
			s := testStore(t.TempDir())
			if tc.stall > 0 {
				s.StallTimeout = tc.stall
			}
			st, err := s.FetchStats(context.Background(), o.URL, digest, size)
			t.Logf("err=%v\nstats=%+v\nrequests=%+v", err, st, o.requests())
			if tc.want.err == nil {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				verifyStored(t, s, digest)
			} else {
				if err == nil || !tc.want.err(err) {
					t.Fatalf("error %v (%T) is not the one expected", err, err)
				}
				if !strings.Contains(err.Error(), o.URL) {
					t.Errorf("error %q does not name the URL", err)
				}
				assertNothingStored(t, s)
				_, perr := os.Stat(filepath.Join(s.Dir, "partial", digest+".part"))
				if kept := perr == nil; kept != tc.want.partialsKept {
					t.Errorf("partial file kept = %v, want %v", kept, tc.want.partialsKept)
				}
				if _, err := os.Stat(filepath.Join(s.Dir, "partial", digest+".state.tmp")); err == nil {
					t.Error("a .state.tmp was left after the failure")
				}
			}
			if st.Attempts != tc.want.attempts {
				t.Errorf("attempts = %d, want %d", st.Attempts, tc.want.attempts)
			}
			if st.RestartsFromZero != tc.want.restarts || st.Refetches != tc.want.refetches {
				t.Errorf("restarts from zero = %d, refetches = %d; want %d, %d", st.RestartsFromZero, st.Refetches, tc.want.restarts, tc.want.refetches)
			}
			if n := len(o.requests()); n != tc.want.requests {
				t.Errorf("origin saw %d requests, want %d", n, tc.want.requests)
			}
			if tc.want.received >= 0 && st.BytesReceived != tc.want.received {
				t.Errorf("received %d bytes, want %d", st.BytesReceived, tc.want.received)
			}
		})
	}
}

// TestTransferProxyErrorNamesProxy: a proxy that refuses connections is
// named in the error, with the target URL.
func TestTransferProxyErrorNamesProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := ln.Addr().String()
	ln.Close() // a closed port: connection refused
	proxyURL := &url.URL{Scheme: "http", Host: proxyAddr}

	for _, target := range []string{
		"http://artifacts.example.test/sentinel/core-3.4.2.tgz",  // plain proxying
		"https://artifacts.example.test/sentinel/core-3.4.2.tgz", // CONNECT
	} {
		t.Run(target[:strings.Index(target, ":")], func(t *testing.T) {
			s := testStore(t.TempDir())
			s.MaxAttempts = 3
			s.HTTP = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
			st, err := s.FetchStats(context.Background(), target, sha256Hex(nil), 10)
			if err == nil {
				t.Fatal("fetch through a closed proxy succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			for _, want := range []string{"through proxy " + proxyAddr, "artifacts.example.test", "connection refused"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if st.Attempts != 3 {
				t.Errorf("%d attempts: connection refused is retried up to MaxAttempts (3)", st.Attempts)
			}
		})
	}
}

// TestTransferBadURLNotRetried: permanent failures before any request.
func TestTransferBadURLNotRetried(t *testing.T) {
	s := testStore(t.TempDir())
	digest := sha256Hex([]byte("x"))
	for _, u := range []string{"ftp://host/x", "http://", "file://otherhost/x", "s3::https://bucket.s3.amazonaws.com/x", "bogus::x", "://x"} {
		st, err := s.FetchStats(context.Background(), u, digest, 1)
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if st.Attempts != 0 {
			t.Errorf("%s: %d attempts", u, st.Attempts)
		}
		t.Logf("%s: %v", u, err)
	}
	if _, err := s.Fetch(context.Background(), "http://127.0.0.1:1/x", "ABC", 1); err == nil || !strings.Contains(err.Error(), "bad digest") {
		t.Errorf("bad digest: %v", err)
	}
}

// TestTransferTLSFailureNotRetried: a certificate the client does not
// trust will not be trusted on a second try.
func TestTransferTLSFailureNotRetried(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("x"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is the point
	srv.StartTLS()
	defer srv.Close()
	s := testStore(t.TempDir())
	st, err := s.FetchStats(context.Background(), srv.URL+"/x", sha256Hex([]byte("x")), 1)
	if err == nil || st.Attempts != 1 || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("%v, %+v: want one attempt and an error naming the URL", err, st)
	}
	t.Log(err)
}

// A server that cuts every body and answers every resume with a wrong
// Content-Range start: the error names both, not "unexpected EOF". On the
// commit where the issue was filed it ended in "unexpected EOF".
func TestTransferErrorKeepsTheRealCause(t *testing.T) {
	data := testData(4*mib, 7)
	digest := sha256Hex(data)
	size := int64(len(data))
	const cut = mib + 17
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if start := rangeStart(r); start > 0 {
			from := start - 1000
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, size-1, size))
			w.Header().Set("Content-Length", fmt.Sprint(size-from))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[from:])
			return
		}
		serve(&cutWriter{ResponseWriter: w, left: cut}, r, data, `"a"`)
	})
	s := testStore(t.TempDir())
	_, err := s.FetchStats(context.Background(), o.URL, digest, size)
	if err == nil {
		t.Fatal("the fetch succeeded")
	}
	t.Log(err)
	for _, want := range []string{o.URL, "gave up after", fmt.Sprintf("asked for bytes %d- and got Content-Range", cut),
		fmt.Sprintf("short body: the connection closed after %d of the %d bytes asked for from byte 0", cut, size)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("error still says unexpected EOF: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "partial", digest+".state.tmp")); err == nil {
		t.Error("a .state.tmp was left after the failure")
	}
}
