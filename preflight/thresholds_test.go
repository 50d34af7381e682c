package preflight

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0:                      "0 B",
		1023:                   "1023 B",
		KiB:                    "1.0 KiB",
		3*KiB + 512:            "3.5 KiB",
		500 * MiB:              "500.0 MiB",
		NodeMemoryBytes:        "512.0 MiB",
		GiB - 1:                "1024.0 MiB",
		CoreMemoryBytes:        "1.0 GiB",
		6*GiB + 900*MiB:        "6.9 GiB",
		DefaultDiskBytes:       "7.0 GiB",
		CacheNodeDiskBytes:     "10.0 GiB",
		2048 * GiB:             "2048.0 GiB",
		9223372036854771712:    "8589934592.0 GiB",
		DefaultDiskBytes - 100: "7.0 GiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// Sizes of artifacts and caches are int64.
func TestFormatBytesSigned(t *testing.T) {
	for n, want := range map[int64]string{
		-5:                     "-5 B",
		0:                      "0 B",
		1536:                   "1.5 KiB",
		3 << 30:                "3.0 GiB",
		9223372036854775807:    "8589934592.0 GiB",
		int64(NodeMemoryBytes): "512.0 MiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(int64(%d)) = %q, want %q", n, got, want)
		}
	}
}

func TestThresholds(t *testing.T) {
	tests := []struct {
		roles       []string
		cache       bool
		disk, memry uint64
	}{
		{[]string{"primary", "controller", "router"}, false, DefaultDiskBytes, CoreMemoryBytes},
		{[]string{"dea"}, false, DefaultDiskBytes, NodeMemoryBytes},
		{[]string{"router"}, true, CacheNodeDiskBytes, CoreMemoryBytes},
		{[]string{"primary"}, true, CacheNodeDiskBytes, CoreMemoryBytes},
	}
	for _, tt := range tests {
		th := DefaultThresholds()
		if d, m := th.DiskNeed(tt.cache), th.MemoryNeed(tt.roles, tt.cache); d != tt.disk || m != tt.memry {
			t.Errorf("roles %v cache %v: disk %s memory %s, want %s and %s", tt.roles, tt.cache,
				FormatBytes(d), FormatBytes(m), FormatBytes(tt.disk), FormatBytes(tt.memry))
		}
	}
}

func TestCheckMessages(t *testing.T) {
	tests := []struct {
		name  string
		check Checker
		want  []string // error messages; none: PASS
	}{
		{
			name:  "disk",
			check: DiskCheck{Facts: DiskFacts{Path: "/srv/x", Mount: "/srv", FreeBytes: 6*GiB + 900*MiB, TotalBytes: 100 * GiB}, Need: DefaultDiskBytes},
			want:  []string{"6.9 GiB free on /srv/x (mounted at /srv), 7.0 GiB needed: free space or mount a larger file system there"},
		},
		{
			name:  "cache dir",
			check: DiskCheck{Facts: DiskFacts{Path: "/srv/cache", Mount: "/", FreeBytes: 9 * GiB, TotalBytes: 40 * GiB}, Need: CacheNodeDiskBytes, CacheDir: true},
			want:  []string{"9.0 GiB free on /srv/cache (mounted at /), 10.0 GiB needed: free space or mount a larger file system there (the cache node's cache_dir can move to another disk: cache.dir in the cluster file)"},
		},
		{
			name:  "disk figures that round alike",
			check: DiskCheck{Facts: DiskFacts{Path: "/s", Mount: "/s", FreeBytes: DefaultDiskBytes - 100, TotalBytes: 100 * GiB}, Need: DefaultDiskBytes},
			want:  []string{"7.0 GiB (7516192668 bytes) free on /s, 7.0 GiB (7516192768 bytes) needed: free space or mount a larger file system there"},
		},
		{
			name:  "disk enough",
			check: DiskCheck{Facts: DiskFacts{Path: "/s", FreeBytes: DefaultDiskBytes}, Need: DefaultDiskBytes},
		},
		{
			name: "memory in a cgroup",
			check: MemoryCheck{Facts: MemoryFacts{AvailableBytes: 500 * MiB, HostAvailableBytes: 20 * GiB, CgroupLimitBytes: 500 * MiB, Cgroup: "/x", Source: "cgroup v1 /x"},
				Need: NodeMemoryBytes, Roles: []string{"dea", "router"}},
			want: []string{"500.0 MiB available (memory cgroup /x limit 500.0 MiB), 512.0 MiB needed: stop roles you can spare during the upgrade with kato stop (this node runs dea, router; sentinel does not stop them for you) or give the node more memory"},
		},
		{
			name: "memory of the host",
			check: MemoryCheck{Facts: MemoryFacts{AvailableBytes: 700 * MiB, HostAvailableBytes: 700 * MiB, CgroupLimitBytes: 2 * GiB, Cgroup: "/x", Source: "host"},
				Need: CoreMemoryBytes},
			want: []string{"700.0 MiB available, 1.0 GiB needed: stop roles you can spare during the upgrade with kato stop (sentinel does not stop them for you) or give the node more memory"},
		},
		{
			name:  "memory enough",
			check: MemoryCheck{Facts: MemoryFacts{AvailableBytes: GiB, Source: "host"}, Need: CoreMemoryBytes},
		},
		{
			name: "reach",
			check: ReachCheck{Facts: []ReachFacts{
				{Target: "https://upgrade.example.com/stable/index.json", OK: true},
				{Target: "https://mirror.example.com/x", Via: "10.0.0.5:3128", Error: "reaching mirror.example.com:443 through proxy 10.0.0.5:3128: the proxy answered CONNECT mirror.example.com:443 with 403 Forbidden"},
			}},
			want: []string{"reaching mirror.example.com:443 through proxy 10.0.0.5:3128: the proxy answered CONNECT mirror.example.com:443 with 403 Forbidden: check the node's network, firewall and http_proxy/https_proxy/no_proxy, or upgrade from a cache node (--cache-ip)"},
		},
		{
			name:  "reach all",
			check: ReachCheck{Facts: []ReachFacts{{Target: "https://upgrade.example.com", OK: true}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, errs := tt.check.Check(context.Background())
			if warnings != nil {
				t.Errorf("warnings %v", warnings)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	want := []string{"DiskSpace", "Memory", "Reachability", "ReleaseVersion", "ArtifactsPresent", "DEACapacity", "RunLock", "MaintenanceMode", "Customizations", "NodeReachable", "ClockSkew"}
	if !reflect.DeepEqual(Names(), want) {
		t.Errorf("Names() = %v, want %v", Names(), want)
	}
	for _, c := range []Checker{DiskCheck{}, MemoryCheck{}, ReachCheck{}, ClockCheck{}} {
		if !strings.Contains(strings.Join(Names(), ","), c.Name()) {
			t.Errorf("%T is called %q, not in Names()", c, c.Name())
		}
	}
	set, err := ParseIgnore(strings.ToLower(strings.Join(want, ",")), Names())
	if err != nil || len(set) != len(want) {
		t.Errorf("ParseIgnore of every name: %v, %v", set, err)
	}
	Names()[0] = "changed"
	if Names()[0] != NameDiskSpace {
		t.Error("Names() shares its slice")
	}
}

// TestFactsTravelAsJSON: the agent sends facts to the orchestrator.
func TestFactsTravelAsJSON(t *testing.T) {
	facts := []any{
		&DiskFacts{Path: "/s/var/sentinel-cache", Mount: "/s", FreeBytes: 7 * GiB, TotalBytes: 50 * GiB},
		&MemoryFacts{AvailableBytes: 300 * MiB, HostAvailableBytes: 20 * GiB, CgroupLimitBytes: 300 * MiB, CgroupUsageBytes: 3 * MiB,
			CgroupInactiveFileBytes: MiB, ProbeBytes: 2 * MiB, Cgroup: "/x", Source: "cgroup v1 /x"},
		&ReachFacts{Target: "https://upgrade.example.com", Via: "10.0.0.5:3128", Error: "reaching ...", Millis: 12},
	}
	for _, f := range facts {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		back := reflect.New(reflect.TypeOf(f).Elem()).Interface()
		if err := json.Unmarshal(b, back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, f) {
			t.Errorf("%s came back as %+v", b, back)
		}
		var keys map[string]any
		if err := json.Unmarshal(b, &keys); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			if k != strings.ToLower(k) {
				t.Errorf("%s: key %q is not snake_case: a field lacks its json tag", b, k)
			}
		}
	}
}
