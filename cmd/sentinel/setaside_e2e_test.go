package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/rollout"
)

// damageRecord writes garbage into the payload of record k (1-based) of
// the journal at path, leaving the records after it intact.
func damageRecord(t *testing.T, path string, k int) {
	t.Helper()
	buf := mustRead(t, path)
	off := 8 // header
	for i := 1; i < k; i++ {
		off += 8 + int(binary.LittleEndian.Uint32(buf[off:]))
	}
	n := int(binary.LittleEndian.Uint32(buf[off:]))
	if n < 16 {
		t.Fatalf("record %d is %d bytes", k, n)
	}
	copy(buf[off+8+n/2:], "\x00garbage\xff")
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A run whose journal has a record that cannot be decoded blocks status,
// upgrade and recover, and each names the file, the record and the way
// out; set aside, they work again; restored, the run is back. On the
// commit where the issue was filed they failed with no way out.
func TestUndecodableJournalSetAside(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	lab.crashAt(6, "upgrade", "3.4.2", "--yes")
	path := lab.journalPath()
	id := strings.TrimSuffix(filepath.Base(path), ".wal")
	damageRecord(t, path, 3)

	blocked := func(when string) {
		t.Helper()
		for _, args := range [][]string{{"status"}, {"upgrade", "3.4.2", "--yes"}, {"recover"}} {
			r := lab.sentinel(nil, args...)
			if r.code == 0 {
				t.Fatalf("%s: sentinel %v succeeded over a damaged journal", when, args)
			}
			for _, want := range []string{path, "record 3", "sentinel recover --set-aside " + id, "sentinel recover --restore " + id} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("%s: sentinel %v: stderr lacks %q:\n%s", when, args, want, r.stderr)
				}
			}
		}
	}
	blocked("damaged")

	state := lab.inventory().State()
	aside := filepath.Join(state, "runs", "set-aside", id)
	r := lab.mustSucceed("recover", "--set-aside", "--reason", "record 3 damaged by a test")
	if !strings.Contains(r.stdout, aside) {
		t.Errorf("set-aside does not say where the run went (%s):\n%s", aside, r.stdout)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("the journal %s is still in place", path)
	}
	var rec rollout.SetAsideRecord
	if err := json.Unmarshal(mustRead(t, filepath.Join(aside, "set-aside.json")), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Run != id || rec.By == "" || rec.At.IsZero() || rec.Reason != "record 3 damaged by a test" || rec.Journal != path {
		t.Errorf("the record of the set-aside run: %+v", rec)
	}
	lab.mustSucceed("status")

	lab.mustSucceed("recover", "--restore", id)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("restore did not bring the journal back: %v", err)
	}
	blocked("restored")

	lab.mustSucceed("recover", "--set-aside", id)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
	checkAllOn(t, lab, "3.4.2")
	r = lab.sentinel(nil, "recover")
	if r.code != 2 || !strings.Contains(r.stderr, "nothing to recover") || !strings.Contains(r.stderr, "succeeded") {
		t.Errorf("recover after the run was set aside: exit %d\n%s", r.code, r.stderr)
	}
	lab.mustSucceed("status")
	log, err := (rollout.Runs{Dir: state}).AsideLog()
	if err != nil || len(log) != 3 || log[0].Action != "set-aside" || log[1].Action != "restore" || log[2].Action != "set-aside" {
		t.Errorf("set-aside.log: %+v %v", log, err)
	}
	for _, a := range []string{"--restore", "--set-aside --restore " + id} {
		if r := lab.sentinel(nil, append([]string{"recover"}, strings.Fields(a)...)...); r.code != 2 {
			t.Errorf("recover %s: exit %d, want 2\n%s", a, r.code, r.stderr)
		}
	}
}
