package resume

import (
	"path/filepath"
	"testing"
)

// BenchmarkAppend measures one durable journal append (write + fsync), the
// cost every step transition pays twice.
func BenchmarkAppend(b *testing.B) {
	j, err := Create(filepath.Join(b.TempDir(), "bench.wal"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	data := map[string]string{"node": "core", "step": "3.4.2/cloud_controller_ng/health"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := j.Append("step-done", data); err != nil {
			b.Fatal(err)
		}
	}
}
