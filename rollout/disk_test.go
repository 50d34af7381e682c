package rollout

import (
	"context"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// probeNode answers preflight's probe with fixed facts, and the digests it
// was asked about that it holds.
type probeNode struct {
	free   uint64
	cached []string
}

func (n probeNode) Call(_ context.Context, op string, in, out any, _ func(cluster.Event)) error {
	if op != steps.OpProbe {
		return nil
	}
	req := in.(steps.Request)
	f := &steps.ProbeFacts{Disk: []preflight.DiskFacts{{Path: "/s", Mount: "/", FreeBytes: n.free, TotalBytes: 100 * preflight.GiB}},
		Memory: preflight.MemoryFacts{AvailableBytes: 16 * preflight.GiB, Source: "host"}}
	for _, d := range req.Probe.Artifacts {
		for _, c := range n.cached {
			if c == d {
				f.Cached = append(f.Cached, d)
			}
		}
	}
	out.(*steps.Result).Probe = f
	return nil
}

// The disk a node needs is the larger of the docs' figure and its real
// needs: the artifacts it has yet to cache plus what its releases unpack
// to, when the channel says.
func TestPreflightDiskIsTheLargerNeed(t *testing.T) {
	const GiB = int64(preflight.GiB)
	digest := func(c byte) string { return strings.Repeat(string(c), 64) }
	plan := func(unpacked int64) *Plan {
		var ss []Step
		for i, c := range []byte{'a', 'b'} {
			art := release.Artifact{URL: "https://up.example/a", SHA256: digest(c), Size: 2 * GiB}
			name := string(rune('x' + i))
			ss = append(ss, Step{ID: "3.4.2/" + name + "/fetch", Op: steps.OpFetch, Request: steps.Request{Artifact: art}},
				Step{ID: "3.4.2/" + name + "/install", Op: steps.OpInstall, Request: steps.Request{Artifact: withUnpacked(art, unpacked)}})
		}
		return &Plan{From: "3.4.1", To: "3.4.2", Offline: true, Nodes: []NodePlan{{Node: "core", Roles: []string{"primary"}, Steps: ss}}}
	}
	inv := &cluster.Inventory{Nodes: []cluster.Node{{Name: "core", Roles: []string{"primary"}, Root: "/s", Transport: "local"}}}
	for _, tc := range []struct {
		name     string
		unpacked int64
		free     uint64
		cached   []string
		want     string // "" passes
		detail   string // what a pass says it compared
	}{
		{"docs' figure: 4 GiB to cache, nothing known unpacked", 0, 7 * preflight.GiB, nil, "", "7.0 GiB free on /s, 7.0 GiB needed"},
		{"docs' figure, short of it", 0, 6 * preflight.GiB, nil, "7.0 GiB needed: ", ""},
		{"real needs: 4 GiB to cache and 2x3 GiB unpacked", 3 * GiB, 9 * preflight.GiB, nil, "10.0 GiB needed (this node's releases: 4.0 GiB of artifacts to download into its cache and 6.0 GiB unpacked", ""},
		{"real needs met", 3 * GiB, 10 * preflight.GiB, nil, "", "10.0 GiB free on /s, 10.0 GiB needed"},
		{"what the cache holds needs no space", 3 * GiB, 8 * preflight.GiB, []string{digest('a')}, "", "8.0 GiB free on /s, 8.0 GiB needed (2.0 GiB of artifacts already in the node cache, not counted)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Preflight(context.Background(), PreflightInput{Inventory: inv, Plan: plan(tc.unpacked), Runs: Runs{Dir: t.TempDir()},
				Transports: map[string]cluster.Transport{"core": probeNode{free: tc.free, cached: tc.cached}}})
			var disk *preflight.Result
			for i, r := range rep.Results {
				if r.Node == "core" && r.Check == preflight.NameDiskSpace {
					disk = &rep.Results[i]
				}
			}
			if disk == nil {
				t.Fatalf("no disk result: %+v", rep.Results)
			}
			msg := strings.Join(disk.Messages, " ")
			if tc.want == "" && disk.Status != preflight.StatusPass || tc.want != "" && !strings.Contains(msg, tc.want) {
				t.Errorf("%s: %s, want %q", disk.Status, msg, tc.want)
			}
			if tc.detail != "" && disk.Detail != tc.detail {
				t.Errorf("a pass says %q, want %q", disk.Detail, tc.detail)
			}
		})
	}
}

func withUnpacked(a release.Artifact, n int64) release.Artifact {
	a.UnpackedSize = n
	return a
}
