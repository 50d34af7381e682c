package resume

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the helper process for tests that need a real
// SIGKILL: the parent re-executes it with helperEnv set.
const (
	helperEnv     = "RESUME_TEST_HELPER"
	helperPathEnv = "RESUME_TEST_PATH"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "journal-create":
		helperAppend(false)
	case "journal-open":
		helperAppend(true)
	case "hold-lock":
		helperHoldLock()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperAppend appends up to 20 records; with the crash variable set it
// should be killed long before returning.
func helperAppend(reopen bool) {
	path := os.Getenv(helperPathEnv)
	var j *Journal
	var err error
	if reopen {
		j, _, err = Open(path)
	} else {
		j, err = Create(path)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	for i := 0; i < 20; i++ {
		// Records are appended in turn, deferred and ahead: the crash
		// hook fires once record k is durable, however it got there.
		var err error
		switch i % 3 {
		case 0:
			_, err = j.Append("step-done", map[string]int{"i": i})
		case 1:
			_, err = j.AppendDeferred("step-done", map[string]int{"i": i})
		case 2:
			var wait func() error
			if _, wait, err = j.AppendAhead("step-start", map[string]int{"i": i}); err == nil {
				err = wait()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	j.Close()
	os.Exit(0)
}

// helperCmd re-executes the test binary as the named helper. The crash
// variable is stripped from the inherited environment so only extraEnv sets it.
func helperCmd(t *testing.T, helper, path string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, CrashAfterRecordEnv+"=") && !strings.HasPrefix(kv, helperEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, helperEnv+"="+helper, helperPathEnv+"="+path)
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func requireSIGKILL(t *testing.T, err error, stderr string) {
	t.Helper()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("helper: got %v, want death by SIGKILL (stderr: %s)", err, stderr)
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want death by SIGKILL (stderr: %s)", exitErr, stderr)
	}
}

// writeJournal creates a journal with n records of varied data and returns
// the records as Append reported them.
func writeJournal(t *testing.T, path string, n int) []Record {
	t.Helper()
	j, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := 0; i < n; i++ {
		var data any
		switch i % 4 {
		case 0:
			data = nil
		case 1:
			data = fmt.Sprintf("step %d <&> \u00e9\n", i)
		case 2:
			data = struct {
				Step  int      `json:"step"`
				Hosts []string `json:"hosts"`
			}{i, []string{"a", "b"}}
		case 3:
			data = json.RawMessage(` { "raw" : ` + strconv.Itoa(i) + ` } `)
		}
		rec, err := j.Append(fmt.Sprintf("type-%d", i%3), data)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// recordOffsets walks the frames of a well-formed journal image.
func recordOffsets(t *testing.T, buf []byte) []int64 {
	t.Helper()
	var offs []int64
	for off := headerLen; off < int64(len(buf)); {
		offs = append(offs, off)
		off += frameLen + int64(binary.LittleEndian.Uint32(buf[off:]))
	}
	return offs
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkSeqs(t *testing.T, recs []Record, want int) {
	t.Helper()
	if len(recs) != want {
		t.Fatalf("got %d records, want %d", len(recs), want)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, i+1)
		}
	}
}

// tornFiles lists set-aside tail copies in dir.
func tornFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.torn-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// frame encodes payload the way Append does, for hand-built journals.
func frame(payload []byte) []byte {
	b := make([]byte, frameLen+len(payload))
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(payload, castagnoli()))
	copy(b[frameLen:], payload)
	return b
}

func recordPayload(seq uint64) []byte {
	b, err := json.Marshal(Record{Seq: seq, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Type: "step", Data: json.RawMessage(`{"n":1}`)})
	if err != nil {
		panic(err)
	}
	return b
}

// journalImage builds a journal whose records carry the given seqs.
func journalImage(seqs ...uint64) []byte {
	b := []byte(journalMagic)
	for _, s := range seqs {
		b = append(b, frame(recordPayload(s))...)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 250} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			want := writeJournal(t, path, n)
			checkSeqs(t, want, n)

			rp, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if rp.TornTail != nil {
				t.Fatalf("Read: unexpected torn tail %+v", rp.TornTail)
			}
			if !reflect.DeepEqual(rp.Records, want) {
				t.Fatalf("Read records differ from appended:\n got %+v\nwant %+v", rp.Records, want)
			}

			j, rp, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if rp.TornTail != nil || !reflect.DeepEqual(rp.Records, want) {
				t.Fatalf("Open replay differs: %+v", rp)
			}
			if j.Path() != path {
				t.Fatalf("Path() = %q, want %q", j.Path(), path)
			}
			for _, r := range rp.Records {
				if r.Time.Location() != time.UTC {
					t.Fatalf("record %d time %v is not UTC", r.Seq, r.Time)
				}
			}
		})
	}
}

func TestReopenContinuesSeq(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.wal")
	writeJournal(t, path, 3)
	for round := 0; round < 3; round++ {
		j, rp, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSeqs(t, rp.Records, 3+2*round)
		for k := 1; k <= 2; k++ {
			rec, err := j.Append("step-done", round)
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(3 + 2*round + k); rec.Seq != want {
				t.Fatalf("Append seq %d, want %d", rec.Seq, want)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rp, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, rp.Records, 9)
}

func TestCreateRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.wal")
	writeJournal(t, path, 2)
	before := readBytes(t, path)
	if _, err := Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over existing journal: got %v, want fs.ErrExist", err)
	}
	if !bytes.Equal(readBytes(t, path), before) {
		t.Fatal("Create changed an existing journal")
	}
}

func TestAppendAfterClose(t *testing.T) {
	j, err := Create(filepath.Join(t.TempDir(), "run.wal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append("x", nil); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Append after Close: got %v, want os.ErrClosed", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	j, err := Create(filepath.Join(t.TempDir(), "run.wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tests := []struct {
		name string
		typ  string
		data any
	}{
		{"empty type", "", nil},
		{"unmarshalable data", "x", make(chan int)},
		{"invalid raw json", "x", json.RawMessage(`{`)},
		{"too large", "x", strings.Repeat("a", maxRecordLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := j.Append(tt.typ, tt.data); err == nil {
				t.Fatal("Append succeeded, want error")
			}
		})
	}
	// Rejected appends write nothing and leave the journal usable.
	rec, err := j.Append("ok", nil)
	if err != nil || rec.Seq != 1 {
		t.Fatalf("Append after rejections: %+v, %v", rec, err)
	}
}

// TestOpenTornLastRecordEveryLength cuts the last record at every length a
// crash mid-write could leave.
func TestOpenTornLastRecordEveryLength(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.wal")
	want := writeJournal(t, base, 4)
	full := readBytes(t, base)
	offs := recordOffsets(t, full)
	last := offs[len(offs)-1]
	recLen := int64(len(full)) - last

	for cut := int64(1); cut < recLen; cut++ {
		path := filepath.Join(dir, fmt.Sprintf("cut%d.wal", cut))
		torn := full[:last+cut]
		writeBytes(t, path, torn)

		j, rp, err := Open(path)
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		if !reflect.DeepEqual(rp.Records, want[:3]) {
			t.Fatalf("cut %d: replayed %+v, want first 3 records", cut, rp.Records)
		}
		wantSaved := fmt.Sprintf("%s.torn-%d", path, last)
		if rp.TornTail == nil || *rp.TornTail != (TornTail{Offset: last, Length: cut, SavedAs: wantSaved}) {
			t.Fatalf("cut %d: TornTail = %+v, want offset %d length %d saved as %s", cut, rp.TornTail, last, cut, wantSaved)
		}
		if got := readBytes(t, wantSaved); !bytes.Equal(got, torn[last:]) {
			t.Fatalf("cut %d: saved tail %q, want %q", cut, got, torn[last:])
		}
		if got := readBytes(t, path); !bytes.Equal(got, full[:last]) {
			t.Fatalf("cut %d: journal not cut back to byte %d (size %d)", cut, last, len(got))
		}

		rec, err := j.Append("step-done", "after recovery")
		if err != nil {
			t.Fatalf("cut %d: Append: %v", cut, err)
		}
		if rec.Seq != 4 {
			t.Fatalf("cut %d: Append seq %d, want 4", cut, rec.Seq)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		rp, err = Read(path)
		if err != nil {
			t.Fatalf("cut %d: Read after recovery: %v", cut, err)
		}
		if rp.TornTail != nil {
			t.Fatalf("cut %d: torn tail after recovery: %+v", cut, rp.TornTail)
		}
		if !reflect.DeepEqual(rp.Records, append(want[:3:3], rec)) {
			t.Fatalf("cut %d: replay after recovery: %+v", cut, rp.Records)
		}
	}
}

// TestTornHeader covers a crash inside Create: zero bytes or part of the header.
func TestTornHeader(t *testing.T) {
	for n := 0; n < len(journalMagic); n++ {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			writeBytes(t, path, []byte(journalMagic[:n]))

			rp, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(rp.Records) != 0 || rp.TornTail == nil || *rp.TornTail != (TornTail{Offset: 0, Length: int64(n)}) {
				t.Fatalf("Read: %+v (tail %+v)", rp, rp.TornTail)
			}

			j, rp, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			wantSaved := ""
			if n > 0 {
				wantSaved = path + ".torn-0"
			}
			if rp.TornTail == nil || *rp.TornTail != (TornTail{Offset: 0, Length: int64(n), SavedAs: wantSaved}) {
				t.Fatalf("Open: tail %+v", rp.TornTail)
			}
			if _, err := j.Append("run-start", nil); err != nil {
				t.Fatal(err)
			}
			j.Close()
			rp, err = Read(path)
			if err != nil || rp.TornTail != nil {
				t.Fatalf("Read after Open: %+v, %v", rp, err)
			}
			checkSeqs(t, rp.Records, 1)
		})
	}
}

func TestFlippedByteInLastRecordIsTorn(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.wal")
	want := writeJournal(t, base, 4)
	full := readBytes(t, base)
	offs := recordOffsets(t, full)
	last := offs[len(offs)-1]

	for i := last; i < int64(len(full)); i++ {
		path := filepath.Join(dir, fmt.Sprintf("flip%d.wal", i))
		bad := bytes.Clone(full)
		bad[i] ^= 0xff
		writeBytes(t, path, bad)

		rp, err := Read(path)
		if err != nil {
			t.Fatalf("flip at %d: Read: %v", i, err)
		}
		if rp.TornTail == nil || rp.TornTail.Offset != last || rp.TornTail.Length != int64(len(full))-last {
			t.Fatalf("flip at %d: Read tail %+v, want offset %d", i, rp.TornTail, last)
		}
		j, rp, err := Open(path)
		if err != nil {
			t.Fatalf("flip at %d: Open: %v", i, err)
		}
		j.Close()
		if !reflect.DeepEqual(rp.Records, want[:3]) {
			t.Fatalf("flip at %d: replayed %d records, want 3", i, len(rp.Records))
		}
		if rp.TornTail == nil || !bytes.Equal(readBytes(t, rp.TornTail.SavedAs), bad[last:]) {
			t.Fatalf("flip at %d: torn tail not saved: %+v", i, rp.TornTail)
		}
	}
}

func TestFlippedByteInMiddleRecordIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.wal")
	writeJournal(t, base, 4)
	full := readBytes(t, base)
	offs := recordOffsets(t, full)

	for _, rec := range []int{0, 1, 2} { // every record but the last
		start, end := offs[rec], offs[rec+1]
		for i := start; i < end; i++ {
			path := filepath.Join(dir, fmt.Sprintf("flip%d.wal", i))
			bad := bytes.Clone(full)
			bad[i] ^= 0xff
			writeBytes(t, path, bad)

			_, rerr := Read(path)
			_, _, oerr := Open(path)
			for _, err := range []error{rerr, oerr} {
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("flip at %d in record %d: got %v, want *CorruptError", i, rec+1, err)
				}
				if ce.Path != path || ce.Offset != start {
					t.Fatalf("flip at %d: CorruptError{%s, %d}, want {%s, %d}", i, ce.Path, ce.Offset, path, start)
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, strconv.FormatInt(start, 10)) {
					t.Fatalf("error %q does not name file and offset", msg)
				}
			}
			if !bytes.Equal(readBytes(t, path), bad) {
				t.Fatalf("flip at %d: corrupt journal was modified", i)
			}
		}
	}
	if m := tornFiles(t, dir); len(m) != 0 {
		t.Fatalf("corrupt journals left torn files: %v", m)
	}
}

// TestCorruptValidFrames covers damage a crash cannot cause: frames whose
// CRC verifies but whose content is wrong, and garbage lengths.
func TestCorruptValidFrames(t *testing.T) {
	good := journalImage(1, 2)
	goodEnd := int64(len(good))
	tests := []struct {
		name       string
		image      []byte
		wantOffset int64 // -1: want a torn tail at tornOffset instead
		tornOffset int64
	}{
		{"seq gap", journalImage(1, 2, 4), goodEnd, 0},
		{"seq repeat", journalImage(1, 2, 2), goodEnd, 0},
		{"first seq not 1", journalImage(2, 3), headerLen, 0},
		{"valid crc, bad json, last", append(bytes.Clone(good), frame([]byte(`{"seq":3,`))...), goodEnd, 0},
		{"valid crc, bad json, middle", append(append(bytes.Clone(good), frame([]byte(`not json`))...), frame(recordPayload(3))...), goodEnd, 0},
		{"huge length, last", append(bytes.Clone(good), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5), -1, goodEnd},
		{"huge length, middle", append(append(bytes.Clone(good), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4), frame(recordPayload(3))...), goodEnd, 0},
		{"zeroed tail", append(bytes.Clone(good), make([]byte, 100)...), -1, goodEnd},
		{"stale old record after bad frame", append(append(bytes.Clone(good), 9, 0, 0, 0, 1, 2, 3, 4, 5), frame(recordPayload(1))...), -1, goodEnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			writeBytes(t, path, tt.image)
			rp, err := Read(path)
			if tt.wantOffset < 0 {
				if err != nil || rp.TornTail == nil || rp.TornTail.Offset != tt.tornOffset {
					t.Fatalf("got %+v, %v; want torn tail at %d", rp.TornTail, err, tt.tornOffset)
				}
				return
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset != tt.wantOffset {
				t.Fatalf("got %v, want *CorruptError at byte %d", err, tt.wantOffset)
			}
			if _, _, err := Open(path); !errors.As(err, &ce) {
				t.Fatalf("Open: got %v, want *CorruptError", err)
			}
			if !bytes.Equal(readBytes(t, path), tt.image) {
				t.Fatal("Open modified a corrupt journal")
			}
		})
	}
}

func TestNotAJournal(t *testing.T) {
	tests := []struct {
		name  string
		image []byte
	}{
		{"text file", []byte("apiVersion: v1\nkind: Config\n")},
		{"other version", append([]byte("SNTLJNL2"), journalImage(1)[headerLen:]...)},
		{"short non-header", []byte("SN!")},
		{"binary", []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			writeBytes(t, path, tt.image)
			_, rerr := Read(path)
			_, _, oerr := Open(path)
			for _, err := range []error{rerr, oerr} {
				if !errors.Is(err, ErrNotJournal) {
					t.Fatalf("got %v, want ErrNotJournal", err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not name the file", err)
				}
			}
			if !bytes.Equal(readBytes(t, path), tt.image) {
				t.Fatal("file was modified")
			}
		})
	}
}

func TestReadNeverModifies(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.wal")
	writeJournal(t, path, 3)
	full := readBytes(t, path)
	torn := full[:len(full)-5]
	writeBytes(t, path, torn)

	for i := 0; i < 2; i++ {
		rp, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if rp.TornTail == nil || rp.TornTail.SavedAs != "" || rp.TornTail.Offset+rp.TornTail.Length != int64(len(torn)) {
			t.Fatalf("Read tail %+v", rp.TornTail)
		}
		checkSeqs(t, rp.Records, 2)
	}
	if !bytes.Equal(readBytes(t, path), torn) {
		t.Fatal("Read modified the journal")
	}
	if m := tornFiles(t, dir); len(m) != 0 {
		t.Fatalf("Read left torn files: %v", m)
	}
	if _, err := Read(filepath.Join(dir, "missing.wal")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read missing: got %v, want fs.ErrNotExist", err)
	}
}

// TestOpenAfterCrashWhileSavingTail: a crash between saving the torn tail and
// cutting it leaves the copy behind; reopening reuses an identical copy and
// never overwrites a different one.
func TestOpenAfterCrashWhileSavingTail(t *testing.T) {
	tests := []struct {
		name      string
		existing  func(tail []byte) []byte
		wantSaved string // suffix after path
	}{
		{"identical copy reused", func(tail []byte) []byte { return tail }, ".torn-%d"},
		{"different copy kept", func([]byte) []byte { return []byte("other") }, ".torn-%d.1"},
		{"partial copy kept", func(tail []byte) []byte { return tail[:1] }, ".torn-%d.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			writeJournal(t, path, 2)
			full := readBytes(t, path)
			last := recordOffsets(t, full)[1]
			tail := full[last : len(full)-3]
			writeBytes(t, path, full[:len(full)-3])
			first := fmt.Sprintf("%s.torn-%d", path, last)
			existing := tt.existing(tail)
			writeBytes(t, first, existing)

			j, rp, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			j.Close()
			want := path + fmt.Sprintf(tt.wantSaved, last)
			if rp.TornTail == nil || rp.TornTail.SavedAs != want {
				t.Fatalf("tail %+v, want saved as %s", rp.TornTail, want)
			}
			if !bytes.Equal(readBytes(t, want), tail) {
				t.Fatal("saved copy does not hold the torn bytes")
			}
			if !bytes.Equal(readBytes(t, first), existing) {
				t.Fatal("existing copy was overwritten")
			}
		})
	}
}

func TestCrashEnvValidated(t *testing.T) {
	for _, v := range []string{"x", "0", "-1", "3.5"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(CrashAfterRecordEnv, v)
			path := filepath.Join(t.TempDir(), "run.wal")
			if _, err := Create(path); err == nil || !strings.Contains(err.Error(), CrashAfterRecordEnv) {
				t.Fatalf("Create with %s=%q: got %v, want an error naming the variable", CrashAfterRecordEnv, v, err)
			}
		})
	}
}

// TestCrashAfterRecord SIGKILLs a real process at an exact record and checks
// the journal it leaves behind.
func TestCrashAfterRecord(t *testing.T) {
	tests := []struct {
		name     string
		existing int // records written before the helper runs; 0: helper creates
		crashAt  int
		want     int // records on disk: a deferred record k is written with k+1
	}{
		{"create, after an ahead record", 0, 3, 3},
		{"create, first record", 0, 1, 1},
		{"create, after a deferred record", 0, 2, 3},
		{"create, after a later ahead record", 0, 6, 6},
		{"resume, after a deferred record", 3, 5, 6},
		{"resume", 3, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run.wal")
			helper := "journal-create"
			if tt.existing > 0 {
				writeJournal(t, path, tt.existing)
				helper = "journal-open"
			}
			cmd := helperCmd(t, helper, path, fmt.Sprintf("%s=%d", CrashAfterRecordEnv, tt.crashAt))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			requireSIGKILL(t, cmd.Run(), stderr.String())

			rp, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if rp.TornTail != nil {
				t.Fatalf("torn tail after crash between appends: %+v", rp.TornTail)
			}
			checkSeqs(t, rp.Records, tt.want)

			// The run resumes where it died.
			j, _, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			rec, err := j.Append("run-resume", nil)
			if err != nil || rec.Seq != uint64(tt.want+1) {
				t.Fatalf("Append after crash: %+v, %v", rec, err)
			}
		})
	}
}

func FuzzReplay(f *testing.F) {
	good := journalImage(1, 2, 3)
	f.Add([]byte{})
	f.Add([]byte(journalMagic[:5]))
	f.Add([]byte(journalMagic))
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(journalImage(1, 3))
	flipped := bytes.Clone(good)
	flipped[len(journalImage(1))+20] ^= 1
	f.Add(flipped)

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "fuzz.wal")
		writeBytes(t, path, data)

		rp, err := Read(path)
		if !bytes.Equal(readBytes(t, path), data) {
			t.Fatal("Read modified the file")
		}
		if err != nil {
			var ce *CorruptError
			switch {
			case errors.As(err, &ce):
				if ce.Path != path || ce.Offset < headerLen || ce.Offset >= int64(len(data)) {
					t.Fatalf("CorruptError %+v out of range for %d-byte file", ce, len(data))
				}
			case errors.Is(err, ErrNotJournal):
			default:
				t.Fatalf("unexpected error kind: %v", err)
			}
			// Open must refuse the same file without touching it.
			if j, _, oerr := Open(path); oerr == nil {
				j.Close()
				t.Fatalf("Read failed with %v but Open succeeded", err)
			}
			if !bytes.Equal(readBytes(t, path), data) {
				t.Fatal("Open modified a rejected file")
			}
			return
		}

		for i, r := range rp.Records {
			if r.Seq != uint64(i+1) {
				t.Fatalf("record %d has seq %d", i, r.Seq)
			}
		}
		if tt := rp.TornTail; tt != nil {
			if tt.SavedAs != "" || tt.Length < 0 || tt.Offset+tt.Length != int64(len(data)) {
				t.Fatalf("inconsistent torn tail %+v for %d-byte file", tt, len(data))
			}
			if (tt.Offset == 0) != (len(data) < len(journalMagic)) || (tt.Offset != 0 && tt.Offset < headerLen) {
				t.Fatalf("torn tail %+v: offset inconsistent with header", tt)
			}
		}

		// Open must agree with Read and leave a journal that replays cleanly.
		j, orp, err := Open(path)
		if err != nil {
			t.Fatalf("Read succeeded but Open failed: %v", err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(orp.Records, rp.Records) || (orp.TornTail == nil) != (rp.TornTail == nil) {
			t.Fatalf("Open replay %+v differs from Read %+v", orp, rp)
		}
		if rp.TornTail != nil {
			if orp.TornTail.Offset != rp.TornTail.Offset || orp.TornTail.Length != rp.TornTail.Length {
				t.Fatalf("Open tail %+v, Read tail %+v", orp.TornTail, rp.TornTail)
			}
			if orp.TornTail.Length > 0 && !bytes.Equal(readBytes(t, orp.TornTail.SavedAs), data[rp.TornTail.Offset:]) {
				t.Fatal("saved tail does not match the cut bytes")
			}
		}
		again, err := Read(path)
		if err != nil || again.TornTail != nil || !reflect.DeepEqual(again.Records, rp.Records) {
			t.Fatalf("after Open: %+v, %v; want clean replay of %d records", again, err, len(rp.Records))
		}
	})
}

// A deferred record reaches the file only with the next Append, in the same
// write, or at Close: the file never holds a record that was not fsynced
// with everything before it.
func TestAppendDeferred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.wal")
	j, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := func() int {
		t.Helper()
		rp, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		return len(rp.Records)
	}
	if _, err := j.Append("run-start", nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := j.AppendDeferred("step-done", map[string]int{"i": 1}); err != nil || rec.Seq != 2 {
		t.Fatalf("AppendDeferred: %+v, %v", rec, err)
	}
	if n := onDisk(); n != 1 {
		t.Errorf("%d records on disk after a deferred one, want 1", n)
	}
	if _, err := j.Append("step-start", nil); err != nil {
		t.Fatal(err)
	}
	if n := onDisk(); n != 3 {
		t.Errorf("%d records on disk after the next Append, want 3", n)
	}
	if _, err := j.AppendDeferred("step-done", nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	rp, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, rp.Records, 4)
}

// An ahead record goes to disk without waiting for another append, and its
// wait returns only once it is durable; a deferred record queued before it
// rides in the same write.
func TestAppendAhead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.wal")
	j, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	release := make(chan struct{})
	synced := make(chan struct{}, 1)
	var fsynced atomic.Bool
	j.sync = func(f *os.File) error {
		<-release
		err := f.Sync()
		fsynced.Store(true)
		synced <- struct{}{}
		return err
	}
	if _, err := j.AppendDeferred("step-done", nil); err != nil {
		t.Fatal(err)
	}
	rec, wait, err := j.AppendAhead("step-start", nil)
	if err != nil || rec.Seq != 2 {
		t.Fatalf("AppendAhead: %+v, %v", rec, err)
	}
	// AppendAhead returned with the fsync held back: it did not wait.
	waited := make(chan error, 1)
	go func() {
		err := wait()
		if err == nil && !fsynced.Load() {
			err = errors.New("wait returned before the record's fsync")
		}
		waited <- err
	}()
	close(release)
	<-synced // the flush AppendAhead started, with nobody else appending
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	rp, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, rp.Records, 2)
	if got := j.Syncs(); got != 1 {
		t.Errorf("%d fsyncs for a deferred and an ahead record, want 1", got)
	}
}

// Appends that arrive while a leader's fsync is in flight share the next
// fsync, and none returns before its record is durable: after a crash that
// keeps only what was fsynced, every acknowledged record reads back.
func TestGroupCommit(t *testing.T) {
	const n = 16
	path := filepath.Join(t.TempDir(), "run.wal")
	j, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var (
		syncs      int
		lastSynced int64 // the file's length at the last fsync that took
		crash      bool  // the next fsync never reaches the disk
	)
	release := make(chan struct{})
	queued := make(chan uint64, n)
	j.sync = func(f *os.File) error {
		syncs++ // one leader at a time: no lock needed
		if syncs == 1 {
			<-release
		}
		if crash {
			return errors.New("machine lost power")
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		lastSynced = fi.Size()
		return f.Sync()
	}
	j.queued = func(seq uint64) { queued <- seq }

	acked := make([]Record, n)
	errs := make([]error, n)
	done := make(chan int, n)
	for i := range n {
		go func() {
			acked[i], errs[i] = j.Append("step-done", map[string]int{"i": i})
			done <- i
		}()
	}
	// The first appender leads and holds its fsync until every other one
	// has queued behind it.
	for range n - 1 {
		<-queued
	}
	close(release)
	for range n {
		if i := <-done; errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
	}
	if syncs >= n || syncs != 2 {
		t.Errorf("%d concurrent appends took %d fsyncs, want 2 (the first leader's and one for the rest)", n, syncs)
	}

	crash = true
	if rec, err := j.Append("step-start", nil); err == nil {
		t.Fatalf("append whose fsync failed was acknowledged as %+v", rec)
	}
	if err := os.Truncate(path, lastSynced); err != nil {
		t.Fatal(err)
	}
	rp, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]Record{}
	for _, r := range rp.Records {
		bySeq[r.Seq] = r
	}
	for i, a := range acked {
		if got, ok := bySeq[a.Seq]; !ok || !reflect.DeepEqual(got, a) {
			t.Errorf("acknowledged record %d (append %d) after the crash: %+v, present %v; want %+v", a.Seq, i, got, ok, a)
		}
	}
	checkSeqs(t, rp.Records, n)
}
