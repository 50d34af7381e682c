package main

import (
	"testing"
	"time"
)

// BenchmarkPreflightConcurrency runs `sentinel preflight` on a five-node lab
// whose agents each take 300 ms to start (a slow link), and on a one-node
// lab with the same delay: run one node at a time, five would cost five
// times one; run at once, about the same. It reports the ratio.
func BenchmarkPreflightConcurrency(b *testing.B) {
	slow := []string{"/bin/sh", "-c", `sleep 0.3; exec "$@"`, "sh"}
	timeOf := func(nodes int) time.Duration {
		lab := newLab(b, nodes, "3.4.1")
		for _, n := range lab.Nodes {
			if err := lab.SetPrefix(n.Name, slow); err != nil {
				b.Fatal(err)
			}
		}
		lab.SetMaintenanceHook("true")
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if r := lab.sentinel(nil, "preflight", "3.4.2"); r.code != 0 {
				b.Fatalf("preflight on %d nodes: exit %d\n%s", nodes, r.code, r.stderr)
			}
		}
		return time.Since(start) / time.Duration(b.N)
	}
	one := timeOf(1)
	five := timeOf(5)
	b.ReportMetric(one.Seconds(), "s/preflight-1-node")
	b.ReportMetric(five.Seconds(), "s/preflight-5-nodes")
	b.ReportMetric(float64(five)/float64(one), "x-one-node")
}
