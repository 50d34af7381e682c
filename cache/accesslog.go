package cache

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// plainHTTPWarnEvery is how often, at most, a daemon serving plain HTTP
// says so again while requests come.
const plainHTTPWarnEvery = time.Minute

// PlainHTTPWarning is what the daemon logs and /readyz says when it serves
// without TLS.
const PlainHTTPWarning = "serving plain HTTP (plain_http: true): the prefetch token and every artifact cross the network in clear, and nodes cannot tell this daemon from an impostor; configure tls_cert_file and tls_key_file"

// accessLog writes one line per request: method, path, status, bytes,
// duration, client address. Never a header: the token stays out of logs.
type accessLog struct {
	log       *slog.Logger
	plainHTTP bool

	mu         sync.Mutex
	lastWarned time.Time
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{s.ResponseWriter}, r)
	}
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (a *accessLog) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			a.log.Info("request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.EscapedPath()),
				slog.Int("status", rec.status),
				slog.Int64("bytes", rec.bytes),
				slog.Float64("duration_s", time.Since(start).Seconds()),
				slog.String("client", r.RemoteAddr),
				slog.Bool("tls", r.TLS != nil),
			)
		}()
		if a.plainHTTP && r.TLS == nil {
			a.warnPlain()
		}
		h.ServeHTTP(rec, r)
	})
}

// warnPlain repeats the plain-HTTP warning at most once a minute while
// requests come.
func (a *accessLog) warnPlain() {
	a.mu.Lock()
	due := time.Since(a.lastWarned) >= plainHTTPWarnEvery
	if due {
		a.lastWarned = time.Now()
	}
	a.mu.Unlock()
	if due {
		a.log.Warn(PlainHTTPWarning)
	}
}
