package cache

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// serverMetrics are the cache daemon's counters, exposed on /metrics in the
// Prometheus text format (version 0.0.4), written by hand.
type serverMetrics struct {
	bytesServed    atomic.Int64 // artifact body bytes written to clients
	hits           atomic.Int64 // artifact requests served from the store
	misses         atomic.Int64 // artifact requests for an artifact the store did not hold
	errors         atomic.Int64 // artifact requests that could not be answered (malformed, upstream or disk failure)
	fetchNanos     atomic.Int64 // time spent in upstream fetches
	fetches        atomic.Int64 // upstream fetches (pulled through or prefetched)
	upstreamErrors atomic.Int64 // upstream fetches that failed
	quarantined    atomic.Int64 // artifacts this process found corrupt and moved aside

	// readFromBytes counts the part of bytesServed that went through the
	// response's ReadFrom (the sendfile path). Not exported: tests use it to
	// check that the counting wrapper keeps that path.
	readFromBytes atomic.Int64
}

func (m *serverMetrics) observeFetch(d time.Duration, err error) {
	m.fetchNanos.Add(int64(d))
	m.fetches.Add(1)
	if err != nil {
		m.upstreamErrors.Add(1)
	}
}

// write renders the metrics; artifacts is the current number of entries of
// the store, or -1 if it could not be listed (the gauge is then left out).
func (m *serverMetrics) write(w io.Writer, artifacts int) error {
	b := bufio.NewWriter(w)
	metric := func(name, typ, help string) {
		b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	}
	sample := func(name string, v int64) {
		b.WriteString(name + " " + strconv.FormatInt(v, 10) + "\n")
	}

	metric("sentinel_cache_bytes_served_total", "counter", "Artifact bytes written to clients.")
	sample("sentinel_cache_bytes_served_total", m.bytesServed.Load())

	metric("sentinel_cache_requests_total", "counter", "Artifact requests by result: hit (served from the cache), miss (not in the cache: answered 404 or pulled through), error (malformed request, upstream or disk failure).")
	sample(`sentinel_cache_requests_total{result="hit"}`, m.hits.Load())
	sample(`sentinel_cache_requests_total{result="miss"}`, m.misses.Load())
	sample(`sentinel_cache_requests_total{result="error"}`, m.errors.Load())

	metric("sentinel_cache_upstream_fetch_seconds", "summary", "Time spent downloading artifacts from upstream (pull-through and prefetch).")
	b.WriteString("sentinel_cache_upstream_fetch_seconds_sum " + strconv.FormatFloat(time.Duration(m.fetchNanos.Load()).Seconds(), 'g', -1, 64) + "\n")
	sample("sentinel_cache_upstream_fetch_seconds_count", m.fetches.Load())

	metric("sentinel_cache_upstream_errors_total", "counter", "Upstream artifact downloads that failed.")
	sample("sentinel_cache_upstream_errors_total", m.upstreamErrors.Load())

	if artifacts >= 0 {
		metric("sentinel_cache_artifacts", "gauge", "Verified artifacts held by the cache.")
		sample("sentinel_cache_artifacts", int64(artifacts))
	}

	metric("sentinel_cache_quarantined_total", "counter", "Stored artifacts found corrupt and moved to quarantine by this process.")
	sample("sentinel_cache_quarantined_total", m.quarantined.Load())
	return b.Flush()
}

// countingWriter counts the body bytes written through it into the served
// counter. It implements io.ReaderFrom by delegating to the wrapped writer's
// ReadFrom, so http.ServeContent's copy from an *os.File still reaches
// net/http's sendfile path (a wrapper without ReadFrom would silently turn
// every download into userspace copies).
type countingWriter struct {
	http.ResponseWriter
	m *serverMetrics
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.m.bytesServed.Add(int64(n))
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.m.bytesServed.Add(n)
		c.m.readFromBytes.Add(n)
		return n, err
	}
	return io.Copy(countingWriterOnly{c}, r)
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines).
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// countingWriterOnly hides ReadFrom so io.Copy does not recurse into it.
type countingWriterOnly struct{ io.Writer }
