package cache

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// startToxiproxy runs a toxiproxy proxy in-process on 127.0.0.1 in front
// of upstream.
func startToxiproxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	zerolog.SetGlobalLevel(zerolog.Disabled) // some toxics log through the global logger
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := server.Collection.Add(p, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, typ string, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":"downstream","toxicity":1,"attributes":%s}`, typ, typ, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Errorf("adding toxic %s: %v", js, err)
	}
}

// TestTransferThroughToxiproxy fetches a 64 MiB artifact through toxiproxy
// with one fault at a time. Each must end with the right digest, without a
// restart from zero, having received each byte over the network once.
//
// Faults that must hit one connection only are added to proxy A in the
// middle of the first response (the origin counts what it sent); the
// client's dialer sends the first connection to A and later ones to B, a
// clean proxy in front of the same origin.
func TestTransferThroughToxiproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB through toxiproxy, five times: skipped with -short")
	}
	data, digest := big64()
	size := int64(len(data))

	cases := []struct {
		name string
		// toxic on A before the transfer; every connection goes to A
		toxic, attrs string
		// toxic added on A once the origin has sent midAfter bytes of the
		// first response; later connections go to B
		midToxic, midAttrs string
		midAfter           int64
		stall              time.Duration
		minAttempts        int
		maxAttempts        int
		progress           bool
	}{
		{name: "limit_data cuts every connection after 24MiB", toxic: "limit_data", attrs: fmt.Sprintf(`{"bytes":%d}`, 24*mib),
			minAttempts: 3, maxAttempts: 3},
		{name: "reset_peer after 20MiB", midToxic: "reset_peer", midAttrs: `{"timeout":0}`, midAfter: 20 * mib,
			minAttempts: 2, maxAttempts: 2},
		{name: "stalled body after 20MiB", midToxic: "timeout", midAttrs: `{"timeout":0}`, midAfter: 20 * mib,
			// a third attempt only if a loaded machine starves B for 1s
			stall: time.Second, minAttempts: 2, maxAttempts: 3},
		{name: "bandwidth 100MB/s", toxic: "bandwidth", attrs: `{"rate":100000}`,
			minAttempts: 1, maxAttempts: 1, progress: true},
		{name: "slicer", toxic: "slicer", attrs: `{"average_size":1500,"size_variation":1000,"delay":0}`,
			minAttempts: 1, maxAttempts: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var proxyA *toxiproxy.Proxy
			var midOnce sync.Once
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 && tc.midToxic != "" {
					w = &thresholdWriter{ResponseWriter: w, at: tc.midAfter, fire: func() {
						midOnce.Do(func() { addToxic(t, proxyA, tc.midToxic, tc.midAttrs) })
					}}
				}
				serve(w, r, data, `"v1"`)
			})
			proxyA = startToxiproxy(t, "a", o.Addr)
			proxyB := startToxiproxy(t, "b", o.Addr)
			if tc.toxic != "" {
				addToxic(t, proxyA, tc.toxic, tc.attrs)
			}
			var dials atomic.Int32
			dialer := &net.Dialer{}
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					to := proxyA.Listen
					if dials.Add(1) > 1 && tc.midToxic != "" {
						to = proxyB.Listen
					}
					return dialer.DialContext(ctx, network, to)
				},
			}}
			defer client.CloseIdleConnections()

			var reports []TransferProgress
			var reportTimes []time.Time
			s := testStore(t.TempDir())
			s.HTTP = client
			if tc.stall > 0 {
				s.StallTimeout = tc.stall
			}
			if tc.progress {
				s.Progress = func(p TransferProgress) {
					reports = append(reports, p)
					reportTimes = append(reportTimes, time.Now())
				}
			}
			begin := time.Now()
			st, err := s.FetchStats(context.Background(), "http://"+proxyA.Listen+"/artifact.tgz", digest, size)
			elapsed := time.Since(begin)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			verifyStored(t, s, digest)
			t.Logf("%+v in %v; requests %+v", st, elapsed, o.requests())

			if !st.Downloaded {
				t.Error("Downloaded = false")
			}
			if st.RestartsFromZero != 0 || st.Refetches != 0 {
				t.Errorf("restarted from zero %d times, refetched %d: a cut must resume", st.RestartsFromZero, st.Refetches)
			}
			// Every byte crossed the network once: a resume starts exactly
			// where the bytes received so far end (all of them are written
			// and hashed), so the retry window is empty.
			if st.BytesReceived != size {
				t.Errorf("received %d bytes over the network for a %d byte artifact", st.BytesReceived, size)
			}
			if st.BytesReadFromPartial != 0 {
				t.Errorf("read %d bytes back from the partial file", st.BytesReadFromPartial)
			}
			if st.Attempts < tc.minAttempts || st.Attempts > tc.maxAttempts {
				t.Errorf("%d attempts, want %d to %d", st.Attempts, tc.minAttempts, tc.maxAttempts)
			}
			reqs := o.requests()
			if len(reqs) != st.Attempts {
				t.Errorf("origin saw %d requests, the store made %d attempts", len(reqs), st.Attempts)
			}
			for i, r := range reqs {
				switch {
				case i == 0 && r.Start != -1:
					t.Errorf("first request had a Range from %d", r.Start)
				case i > 0 && (r.Start <= 0 || r.Start <= reqs[i-1].Start):
					t.Errorf("request %d resumed from %d (previous from %d): want a later offset", r.N, r.Start, reqs[i-1].Start)
				case i > 0 && r.IfRange != `"v1"`:
					t.Errorf("request %d has If-Range %q, want the ETag", r.N, r.IfRange)
				}
			}
			if tc.stall > 0 && elapsed < tc.stall {
				t.Errorf("finished in %v, before the stall timeout %v could have fired", elapsed, tc.stall)
			}
			if tc.progress {
				checkProgressReports(t, reports, reportTimes, digest, size)
			}
		})
	}
}

func checkProgressReports(t *testing.T, reports []TransferProgress, times []time.Time, digest string, size int64) {
	t.Helper()
	if len(reports) < 2 {
		t.Fatalf("%d progress reports for a transfer of over half a second", len(reports))
	}
	last := reports[len(reports)-1]
	if !last.Final || last.Err != nil || last.Done != size || last.Total != size || last.Digest != digest {
		t.Errorf("final report %+v", last)
	}
	for i, p := range reports[:len(reports)-1] {
		if p.Final {
			t.Errorf("report %d of %d is marked final", i, len(reports))
		}
		if p.Rate <= 0 || p.Attempt != 1 || p.Total != size {
			t.Errorf("report %d: %+v", i, p)
		}
		if i > 0 {
			if gap := times[i].Sub(times[i-1]); gap < 240*time.Millisecond {
				t.Errorf("reports %d and %d only %v apart: want at most one every 250ms", i-1, i, gap)
			}
			if p.Done < reports[i-1].Done {
				t.Errorf("Done went back from %d to %d", reports[i-1].Done, p.Done)
			}
		}
	}
}
