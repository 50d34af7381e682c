package source

import "testing"

// A resume that leaves the cache daemon takes each artifact planned below
// the daemon's copy of the channel from the same path below the source it
// read instead; a registry's base too, so that the fallbacks find the
// path. Without a source read there is nowhere to take it from.
func TestFromCacheCopy(t *testing.T) {
	const cacheURL = "https://127.0.0.5:8443"
	const planned = "https://127.0.0.5:8443/channel/targets/artifacts/ab12.router-3.4.2.tar.gz"
	for _, c := range []struct {
		read, planned, want string
		ok                  bool
	}{
		{"http://127.0.0.2/sentinel/stable", planned, "http://127.0.0.2/sentinel/stable/targets/artifacts/ab12.router-3.4.2.tar.gz", true},
		{"file:///srv/channel/", planned, "file:///srv/channel/targets/artifacts/ab12.router-3.4.2.tar.gz", true},
		{"oci://127.0.0.3:5000/sentinel/stable", planned, "oci://127.0.0.3:5000/sentinel/stable/targets/artifacts/ab12.router-3.4.2.tar.gz", true},
		// Planned elsewhere (the upstream): left as it is.
		{"http://127.0.0.2/c/", "http://127.0.0.4/c/targets/artifacts/ab12.x", "http://127.0.0.4/c/targets/artifacts/ab12.x", true},
		// Only the kept channel stood in.
		{"", planned, planned, false},
	} {
		s := &Source{}
		if c.read != "" {
			s.read = &opened{url: c.read}
		}
		got, ok := s.FromCacheCopy(c.planned, cacheURL)
		if got != c.want || ok != c.ok {
			t.Errorf("read %q: FromCacheCopy(%q) = %q, %v; want %q, %v", c.read, c.planned, got, ok, c.want, c.ok)
		}
	}
}
