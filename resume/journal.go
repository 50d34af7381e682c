// Package resume keeps the state that lets `sentinel upgrade --resume` finish
// a run that was killed at any point: an append-only journal of what the run
// has done, and the run lock that keeps two runs from interleaving.
//
// Journal file format (modelled on etcd's WAL):
//
//	header: "SNTLJNL1" (8 bytes)
//	record: payload length (uint32 LE) | CRC32-C of payload (uint32 LE) | payload
//
// The payload is the JSON encoding of a Record. Appends commit in groups:
// an Append queues its record, and one appender at a time (the leader) writes
// every queued record in one write and fsyncs; appenders that queued while a
// leader's fsync was in flight wait for the next leader, whose one fsync
// covers them all. No Append returns before its record is durable. Writes
// never overlap, so a crash can tear at most the last write, at the end of
// the file; anything else that fails to verify is corruption and is never
// skipped.
package resume

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sentinel-paas/sentinel/crashhook"
	"github.com/sentinel-paas/sentinel/durable"
)

const (
	journalMagic = "SNTLJNL1"
	headerLen    = int64(len(journalMagic))
	frameLen     = 8 // length + crc

	// maxRecordLen bounds the length prefix so that a garbage length reads as
	// a bad frame instead of a huge allocation.
	maxRecordLen = 16 << 20

	// CrashAfterRecordEnv names the test hook described on Journal.Append
	// (obeyed only in builds with -tags crashtest).
	CrashAfterRecordEnv = "SENTINEL_CRASH_AFTER_RECORD"
)

// castagnoli's table is made on first use: an agent process, which never
// touches a journal, does not pay for it.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// ErrNotJournal is wrapped by the error returned for a file that does not
// start with the journal header.
var ErrNotJournal = errors.New("not a sentinel journal")

// Record is one journal entry. Type is a short string chosen by the caller
// ("run-start", "step-start", "step-done", ...); Data is opaque JSON supplied
// by the caller.
type Record struct {
	Seq  uint64          `json:"seq"`  // 1-based, assigned by Append
	Time time.Time       `json:"time"` // assigned by Append (UTC)
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Replay is what a journal held when it was read.
type Replay struct {
	Records  []Record
	TornTail *TornTail // nil when the journal ended cleanly
}

// TornTail describes an incomplete last record (or header) left by a crash.
type TornTail struct {
	Offset  int64  // where the torn record began
	Length  int64  // bytes set aside
	SavedAs string // path of the set-aside copy ("" from Read, or when Length is 0)
}

// CorruptError reports damage that a crash cannot explain: a bad record
// followed by valid ones, a record whose CRC verifies but whose content does
// not, or a break in the Seq sequence.
type CorruptError struct {
	Path   string
	Offset int64
	Record uint64 // 1-based number of the record that cannot be decoded
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal %s is corrupt at record %d, byte %d (%s): refusing to resume",
		e.Path, e.Record, e.Offset, e.Reason)
}

// Journal is an open journal positioned for appending. It does not lock the
// file itself; callers hold the run Lock while a Journal is open for writing.
type Journal struct {
	mu         sync.Mutex
	flushed    *sync.Cond // broadcast when a leader's write and fsync end
	path       string
	f          *os.File
	size       int64  // bytes written and fsynced; the next write goes here
	seq        uint64 // Seq of the last record taken
	durable    uint64 // Seq of the last record fsynced
	crashAfter uint64 // 0: no crash injection
	err        error  // sticky: after a failed write or fsync the file state is unknown
	closed     bool
	flushing   bool   // a leader is writing and fsyncing outside mu
	syncs      uint64 // fsyncs of records, for the benchmarks
	pending    []byte // queued records' frames, not yet written

	// Test hooks: sync replaces f.Sync; queued runs (under mu) when a record
	// is queued behind a leader's flush in flight.
	sync   func(*os.File) error
	queued func(seq uint64)
}

func newJournal(path string, f *os.File, size int64, crashAfter uint64) *Journal {
	j := &Journal{path: path, f: f, size: size, crashAfter: crashAfter, sync: (*os.File).Sync}
	j.flushed = sync.NewCond(&j.mu)
	return j
}

// Create makes a new journal file at path (which must not exist) and fsyncs
// the file and its directory.
func Create(path string) (*Journal, error) {
	crashAfter, err := crashAfterFromEnv()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	fail := func(err error) (*Journal, error) {
		f.Close()
		// Leave no half-made journal behind, or a retry would hit O_EXCL.
		os.Remove(path)
		return nil, err
	}
	if _, err := f.WriteAt([]byte(journalMagic), 0); err != nil {
		return fail(fmt.Errorf("create journal %s: write header: %w", path, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("create journal %s: fsync: %w", path, err))
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return fail(fmt.Errorf("create journal %s: %w", path, err))
	}
	return newJournal(path, f, headerLen, crashAfter), nil
}

// Open replays the journal at path and opens it for appending. A torn last
// record (or torn header) is copied to path+".torn-<offset>", fsynced, and
// cut from the journal; the Replay says so. Corruption returns *CorruptError
// and leaves the file untouched.
func Open(path string) (*Journal, Replay, error) {
	crashAfter, err := crashAfterFromEnv()
	if err != nil {
		return nil, Replay{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, Replay{}, fmt.Errorf("open journal: %w", err)
	}
	j, rp, err := openFile(path, f, crashAfter)
	if err != nil {
		f.Close()
		return nil, Replay{}, err
	}
	return j, rp, nil
}

func openFile(path string, f *os.File, crashAfter uint64) (*Journal, Replay, error) {
	buf, err := readAll(path, f)
	if err != nil {
		return nil, Replay{}, err
	}
	rp, err := replay(path, buf)
	if err != nil {
		return nil, Replay{}, err
	}
	size := int64(len(buf))
	if t := rp.TornTail; t != nil {
		// Keep the torn bytes before cutting them so a misjudged tear loses nothing.
		if t.Length > 0 {
			saved, err := saveTorn(path, t.Offset, buf[t.Offset:])
			if err != nil {
				return nil, Replay{}, err
			}
			t.SavedAs = saved
		}
		if err := f.Truncate(t.Offset); err != nil {
			return nil, Replay{}, fmt.Errorf("journal %s: cut torn tail at byte %d: %w", path, t.Offset, err)
		}
		size = t.Offset
		if t.Offset < headerLen {
			if _, err := f.WriteAt([]byte(journalMagic), 0); err != nil {
				return nil, Replay{}, fmt.Errorf("journal %s: rewrite header: %w", path, err)
			}
			size = headerLen
		}
		if err := f.Sync(); err != nil {
			return nil, Replay{}, fmt.Errorf("journal %s: fsync after cutting torn tail at byte %d: %w", path, t.Offset, err)
		}
	}
	j := newJournal(path, f, size, crashAfter)
	if n := len(rp.Records); n > 0 {
		j.seq = rp.Records[n-1].Seq
		j.durable = j.seq
	}
	return j, rp, nil
}

// Read replays the journal at path without modifying it (for `sentinel
// status`). A torn tail is reported but not cut.
func Read(path string) (Replay, error) {
	f, err := os.Open(path)
	if err != nil {
		return Replay{}, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	buf, err := readAll(path, f)
	if err != nil {
		return Replay{}, err
	}
	return replay(path, buf)
}

// Append marshals data to JSON (nil means no data), queues it as the next
// record and returns once it is durable: written and fsynced, by this call
// or by a concurrent one whose fsync covered it (group commit). Seq
// continues from the replayed records.
//
// Crash injection for tests: when SENTINEL_CRASH_AFTER_RECORD was set to k > 0
// at Create/Open, the process SIGKILLs itself right after record k is durable,
// so tests can crash the real binary at an exact point. Only in builds with
// crash injection (-tags crashtest, see package crashhook); `make build`'s
// binary ignores the variable.
func (j *Journal) Append(typ string, data any) (Record, error) {
	return j.append(typ, data, true)
}

// AppendDeferred takes a record like Append but only queues it: the next
// Append's group (or Close) writes and fsyncs it. It is for records whose loss in a crash only costs repeating
// idempotent work: a step's success, whose step runs again on resume.
func (j *Journal) AppendDeferred(typ string, data any) (Record, error) {
	return j.append(typ, data, false)
}

// AppendAhead queues a record and has it written and fsynced at once,
// without waiting: wait returns once it is durable. It lets a step's start
// go to disk while the step is being dispatched, so that the fsync is not
// paid before every step of a node that runs its steps one after another
// (write-ahead, pipelined). The caller must call wait before it acts on
// the step's outcome; until then a crash may lose the record, which costs
// what losing any record costs: the step looks pending and runs again.
func (j *Journal) AppendAhead(typ string, data any) (rec Record, wait func() error, err error) {
	rec, err = j.append(typ, data, false)
	if err != nil {
		return Record{}, nil, err
	}
	durable := func() error {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.waitDurable(rec.Seq)
	}
	// Someone must lead the flush now: the appenders in flight may all be
	// busy with their own steps.
	go durable()
	return rec, durable, nil
}

func (j *Journal) append(typ string, data any, sync bool) (Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return Record{}, fmt.Errorf("append to journal %s: %w", j.path, os.ErrClosed)
	}
	if j.err != nil {
		return Record{}, j.err
	}
	if typ == "" {
		return Record{}, fmt.Errorf("append to journal %s: empty record type", j.path)
	}
	// Round(0) drops the monotonic reading so the returned Record equals its replay.
	rec := Record{Seq: j.seq + 1, Time: time.Now().UTC().Round(0), Type: typ}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return Record{}, fmt.Errorf("append %q to journal %s: marshal data: %w", typ, j.path, err)
		}
		rec.Data = raw
	}
	payload, err := json.Marshal(rec)
	if err != nil {
		return Record{}, fmt.Errorf("append %q to journal %s: marshal record: %w", typ, j.path, err)
	}
	if len(payload) > maxRecordLen {
		return Record{}, fmt.Errorf("append %q to journal %s: record is %d bytes, limit %d", typ, j.path, len(payload), maxRecordLen)
	}
	frame := make([]byte, frameLen+len(payload))
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, castagnoli()))
	copy(frame[frameLen:], payload)

	j.seq = rec.Seq
	j.pending = append(j.pending, frame...)
	if !sync {
		return rec, nil
	}
	if j.flushing && j.queued != nil {
		j.queued(rec.Seq)
	}
	if err := j.waitDurable(rec.Seq); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// waitDurable returns once record seq is fsynced, leading a group commit
// when no flush is in flight and waiting for the one in flight otherwise.
// Called with mu held.
func (j *Journal) waitDurable(seq uint64) error {
	for j.durable < seq {
		if j.err != nil {
			return j.err
		}
		if j.flushing {
			j.flushed.Wait()
			continue
		}
		j.lead()
	}
	return nil
}

// lead writes every queued record in one write and fsyncs, with mu released
// so that appenders queue behind it. After a failed write or fsync the page
// cache may not match the disk, so the error is sticky; reopening replays
// what is really there.
func (j *Journal) lead() {
	buf, first, last, off := j.pending, j.durable+1, j.seq, j.size
	j.pending = nil
	j.flushing = true
	j.mu.Unlock()
	err := j.write(buf, off)
	j.mu.Lock()
	j.flushing = false
	if err != nil {
		j.err = fmt.Errorf("append records %d-%d to journal %s at byte %d: %w", first, last, j.path, off, err)
	} else {
		j.size += int64(len(buf))
		j.durable = last
		j.syncs++
		// The crash hook fires once record k is durable, whichever
		// append's group (or Close) made it so.
		if j.crashAfter != 0 && last >= j.crashAfter {
			crashhook.Kill()
		}
	}
	j.flushed.Broadcast()
}

func (j *Journal) write(buf []byte, off int64) error {
	if _, err := j.f.WriteAt(buf, off); err != nil {
		return err
	}
	if err := j.sync(j.f); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// Syncs counts the fsyncs that made records durable since Create or Open:
// with group commit, fewer than the records.
func (j *Journal) Syncs() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

// Path returns the journal's file path.
func (j *Journal) Path() string { return j.path }

// Close closes the journal file. Closing twice is a no-op.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	// Appenders still waiting are woken by this flush or find the file closed
	// only after their records are durable.
	if j.err == nil {
		if err := j.waitDurable(j.seq); err != nil {
			j.f.Close()
			return fmt.Errorf("close journal %s: %w", j.path, err)
		}
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("close journal %s: %w", j.path, err)
	}
	return nil
}

// crashAfterFromEnv reads the crash hook's variable; in a build without
// crash injection (see package crashhook) it is ignored.
func crashAfterFromEnv() (uint64, error) {
	if !crashhook.Enabled {
		return 0, nil
	}
	v := os.Getenv(CrashAfterRecordEnv)
	if v == "" {
		return 0, nil
	}
	// A typo must not silently turn a crash test into a passing no-crash run.
	k, err := strconv.ParseUint(v, 10, 64)
	if err != nil || k == 0 {
		return 0, fmt.Errorf("%s=%q: want a record number > 0", CrashAfterRecordEnv, v)
	}
	return k, nil
}

func readAll(path string, f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	buf := make([]byte, fi.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && n != len(buf) {
		return nil, fmt.Errorf("read journal %s at byte %d: %w", path, n, err)
	}
	return buf, nil
}

// saveTorn writes the torn bytes to path+".torn-<offset>". If Open crashed
// after saving but before cutting, the same name already holds the same
// bytes and is reused; a different file under that name is never overwritten.
func saveTorn(path string, offset int64, tail []byte) (string, error) {
	base := fmt.Sprintf("%s.torn-%d", path, offset)
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", base, i)
		}
		if old, err := os.ReadFile(name); err == nil {
			if string(old) == string(tail) {
				return name, nil
			}
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("journal %s: save torn tail from byte %d: %w", path, offset, err)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("journal %s: save torn tail from byte %d: %w", path, offset, err)
		}
		_, werr := f.Write(tail)
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = durable.SyncDir(filepath.Dir(name))
		}
		if werr != nil {
			return "", fmt.Errorf("journal %s: save torn tail from byte %d to %s: %w", path, offset, name, werr)
		}
		return name, nil
	}
}
