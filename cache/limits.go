package cache

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// progressChunk is the most one write may carry before the no-progress
// deadline is pushed back: a client is cut when it takes more than
// NoProgressTimeout to accept this many bytes (with the defaults, slower
// than about 1 KiB/s), never for the length of the whole response.
const progressChunk = 64 << 10

// progressWriter gives every write of a response its own deadline, pushed
// back before each chunk: a client that stops reading is cut after
// timeout, one that reads slowly but steadily is served to the end.
type progressWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (p *progressWriter) arm() { p.rc.SetWriteDeadline(time.Now().Add(p.timeout)) }

func (p *progressWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), progressChunk)
		p.arm()
		m, err := p.ResponseWriter.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// ReadFrom keeps net/http's sendfile path for a plain connection, chunk by
// chunk, each chunk under a fresh deadline. The LimitedReader that
// http.ServeContent passes is unwrapped rather than nested, since the
// kernel's sendfile is used only for one level of it over an *os.File.
func (p *progressWriter) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := p.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{p}, r)
	}
	var total int64
	for {
		src, limit := r, int64(progressChunk)
		outer, limited := r.(*io.LimitedReader)
		if limited {
			if outer.N <= 0 {
				return total, nil
			}
			src, limit = outer.R, min(limit, outer.N)
		}
		p.arm()
		n, err := rf.ReadFrom(&io.LimitedReader{R: src, N: limit})
		if limited {
			outer.N -= n
		}
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

func (p *progressWriter) Flush() {
	p.arm()
	p.rc.Flush()
}

func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// withProgressDeadline wraps h so that each request's writes are cut only
// when the client makes no progress. The deadline is armed again when the
// handler returns, for net/http's final flush of the response.
func withProgressDeadline(h http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
		pw.arm()
		defer pw.arm()
		h.ServeHTTP(pw, r)
	})
}

// clientLimiter counts open connections per client address. A connection
// over the limit gets one answer, 429 with Connection: close; it is
// counted while it is open, so a client that keeps opening connections
// stays refused until it closes some.
type clientLimiter struct {
	max  int
	logf func(format string, args ...any)

	mu    sync.Mutex
	open  map[string]int
	conns map[net.Conn]string
}

type overLimitKey struct{}

func newClientLimiter(max int, logf func(string, ...any)) *clientLimiter {
	return &clientLimiter{max: max, logf: logf, open: map[string]int{}, conns: map[net.Conn]string{}}
}

func clientHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// connContext is http.Server's ConnContext: it counts the connection and
// marks it when its client already has max open.
func (l *clientLimiter) connContext(ctx context.Context, c net.Conn) context.Context {
	host := clientHost(c.RemoteAddr().String())
	l.mu.Lock()
	l.open[host]++
	n := l.open[host]
	l.conns[c] = host
	l.mu.Unlock()
	if n > l.max {
		return context.WithValue(ctx, overLimitKey{}, n)
	}
	return ctx
}

// connState is http.Server's ConnState: a connection closed or hijacked
// no longer counts.
func (l *clientLimiter) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	host, ok := l.conns[c]
	if !ok {
		return
	}
	delete(l.conns, c)
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// handler refuses the requests of a connection over the limit.
func (l *clientLimiter) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, over := r.Context().Value(overLimitKey{}).(int); over {
			l.logf("cache: client %s has %d connections open, more than max_conns_per_client (%d): refused with 429", clientHost(r.RemoteAddr), n, l.max)
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many connections from your address to this cache daemon (max_conns_per_client); close some and try again", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	})
}
