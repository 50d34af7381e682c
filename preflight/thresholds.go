package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/release"
)

// Byte units.
const (
	KiB uint64 = 1 << 10
	MiB uint64 = 1 << 20
	GiB uint64 = 1 << 30
)

// The product's documented minimums.
const (
	DefaultDiskBytes   = 7 * GiB   // free disk on every node
	CacheNodeDiskBytes = 10 * GiB  // free disk for the cache node's cache_dir
	CoreMemoryBytes    = 1 * GiB   // free memory on the core node and the cache node
	NodeMemoryBytes    = 512 * MiB // free memory on every other node
)

// Thresholds are the free disk and memory preflight asks of the nodes, in
// bytes. The cluster file can change them (cluster.Inventory.Thresholds).
type Thresholds struct{ NodeDisk, CacheDisk, NodeMemory, CoreMemory uint64 }

// DefaultThresholds are the product's documented minimums.
func DefaultThresholds() Thresholds {
	return Thresholds{NodeDisk: DefaultDiskBytes, CacheDisk: CacheNodeDiskBytes, NodeMemory: NodeMemoryBytes, CoreMemory: CoreMemoryBytes}
}

// DiskNeed is the free disk a node needs.
func (t Thresholds) DiskNeed(cacheNode bool) uint64 {
	if cacheNode {
		return t.CacheDisk
	}
	return t.NodeDisk
}

// MemoryNeed is the free memory a node needs: more on the core node (the
// one with the primary role) and on the cache node.
func (t Thresholds) MemoryNeed(roles []string, cacheNode bool) uint64 {
	if cacheNode || slices.Contains(roles, release.RolePrimary) {
		return t.CoreMemory
	}
	return t.NodeMemory
}

// FormatBytes writes n for people: "6.9 GiB", "512.0 MiB", "3.5 KiB", "12 B".
// It takes the unsigned counts of preflight's facts and the signed sizes
// of artifacts and caches alike.
func FormatBytes[N ~int64 | ~uint64](n N) string {
	switch {
	case n >= N(GiB):
		return fmt.Sprintf("%.1f GiB", float64(n)/float64(GiB))
	case n >= N(MiB):
		return fmt.Sprintf("%.1f MiB", float64(n)/float64(MiB))
	case n >= N(KiB):
		return fmt.Sprintf("%.1f KiB", float64(n)/float64(KiB))
	}
	return fmt.Sprintf("%d B", n)
}

// figures formats have and need, adding the exact byte counts when the
// rounded figures would read the same ("7.0 GiB free, 7.0 GiB needed").
func figures(have, need uint64) (string, string) {
	h, n := FormatBytes(have), FormatBytes(need)
	if h == n && have != need {
		h, n = fmt.Sprintf("%s (%d bytes)", h, have), fmt.Sprintf("%s (%d bytes)", n, need)
	}
	return h, n
}

// DiskCheck compares a node's DiskFacts with the space it needs
// (Thresholds.DiskNeed). CacheDir says the path is the cache node's
// cache_dir, which the cluster file can move.
type DiskCheck struct {
	Facts    DiskFacts
	Need     uint64
	Why      string // why Need is more than the usual figure, "" when it is not
	Staged   uint64 // artifact bytes already in the node cache, not in Need
	CacheDir bool
}

func (c DiskCheck) Name() string { return NameDiskSpace }

// Detail gives the figures a passing check compared.
func (c DiskCheck) Detail() string {
	free, need := figures(c.Facts.FreeBytes, c.Need)
	d := fmt.Sprintf("%s free on %s, %s needed", free, c.Facts.Path, need)
	if c.Staged > 0 {
		d += fmt.Sprintf(" (%s of artifacts already in the node cache, not counted)", FormatBytes(c.Staged))
	}
	return d
}

func (c DiskCheck) Check(context.Context) (warnings, errs []error) {
	f := c.Facts
	if f.FreeBytes >= c.Need {
		return nil, nil
	}
	free, need := figures(f.FreeBytes, c.Need)
	on := f.Path
	if f.Mount != "" && f.Mount != f.Path {
		on = fmt.Sprintf("%s (mounted at %s)", f.Path, f.Mount)
	}
	advice := "free space or mount a larger file system there"
	if f.TotalBytes != 0 && f.TotalBytes < c.Need {
		advice = fmt.Sprintf("the whole file system is %s, so mount a larger one there", FormatBytes(f.TotalBytes))
	}
	if c.CacheDir {
		advice += " (the cache node's cache_dir can move to another disk: cache.dir in the cluster file)"
	}
	why := ""
	if c.Why != "" {
		why = " (" + c.Why + ")"
	}
	return nil, []error{fmt.Errorf("%s free on %s, %s needed%s: %s", free, on, need, why, advice)}
}

// MemoryCheck compares a node's MemoryFacts with the memory it needs
// (Thresholds.MemoryNeed). Roles are the node's roles, named in the
// advice.
type MemoryCheck struct {
	Facts MemoryFacts
	Need  uint64
	Roles []string
}

func (c MemoryCheck) Name() string { return NameMemory }

// Detail gives the figures a passing check compared.
func (c MemoryCheck) Detail() string {
	avail, need := figures(c.Facts.AvailableBytes, c.Need)
	return fmt.Sprintf("%s available, %s needed", avail, need)
}

func (c MemoryCheck) Check(context.Context) (warnings, errs []error) {
	f := c.Facts
	if f.AvailableBytes >= c.Need {
		return nil, nil
	}
	avail, need := figures(f.AvailableBytes, c.Need)
	avail += " available"
	if strings.HasPrefix(f.Source, "cgroup") {
		avail += fmt.Sprintf(" (memory cgroup %s limit %s)", f.Cgroup, FormatBytes(f.CgroupLimitBytes))
	}
	runs := ""
	if len(c.Roles) > 0 {
		runs = fmt.Sprintf("this node runs %s; ", strings.Join(c.Roles, ", "))
	}
	return nil, []error{fmt.Errorf("%s, %s needed: stop roles you can spare during the upgrade with kato stop (%ssentinel does not stop them for you) or give the node more memory",
		avail, need, runs)}
}

// ReachCheck fails for every upstream host a node could not reach.
type ReachCheck struct {
	Facts []ReachFacts
}

func (c ReachCheck) Name() string { return NameReachability }

func (c ReachCheck) Check(context.Context) (warnings, errs []error) {
	for _, f := range c.Facts {
		if f.OK {
			continue
		}
		msg := f.Error
		if msg == "" {
			msg = fmt.Sprintf("reaching %s failed", f.Target)
		}
		errs = append(errs, fmt.Errorf("%s: check the node's network, firewall and http_proxy/https_proxy/no_proxy, or upgrade from a cache node (--cache-ip)", msg))
	}
	return nil, errs
}
