package lifecycle

import (
	"slices"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/rollout"
)

// The window's command a staging ends with reads where staging did: the
// cluster file's cache node, --cache-ip's, or (--no-cache, also when a
// staging begun at the cache node was resumed away from it) not the
// cache node, which then may not hold the release.
func TestWindowCommandReadsWhereStagingDid(t *testing.T) {
	withCache := &cluster.Inventory{Cache: &cluster.CacheNode{Node: "core"}}
	for _, c := range []struct {
		name      string
		inv       *cluster.Inventory
		planned   string // the cache daemon staging was planned at
		cacheAddr string
		noCache   bool
		want      []string
	}{
		{"the cluster file's cache node", withCache, "https://127.0.0.1:8443", "", false, nil},
		{"--no-cache on a cluster with a cache node", withCache, "", "", false, []string{"--no-cache"}},
		{"planned at the cache node, resumed with --no-cache", withCache, "https://127.0.0.1:8443", "", true, []string{"--no-cache"}},
		{"--cache-ip on a cluster without a cache node", &cluster.Inventory{}, "https://127.0.0.1:8443", "127.0.0.1", false, []string{"--cache-ip", "127.0.0.1"}},
		{"the upstream on a cluster without a cache node", &cluster.Inventory{}, "", "", false, nil},
	} {
		r := &Run{Inventory: c.inv, Plan: &rollout.Plan{To: "3.4.2", CacheURL: c.planned}}
		r.CacheAddr, r.NoCache = c.cacheAddr, c.noCache
		want := append([]string{"sentinel", "upgrade", "3.4.2"}, c.want...)
		if got := windowCommand(r); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", c.name, got, want)
		}
	}
}
