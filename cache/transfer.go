package cache

// The transfer engine: one download of one digest, under the per-digest
// flock, shared by every source (http, file).
//
// Invariants:
//   - Dir/partial/<hex>.part is written by one transfer at a time, its
//     whole blocks with O_DIRECT where the file system allows (direct.go);
//     offset bytes of it are written and hashed into h.
//   - Dir/partial/<hex>.state describes a prefix that is durable (the .part
//     was fsynced before the state was written) and hashed. A resume in
//     another process cuts the .part to state.offset and hashes that prefix
//     again from disk (never from the network): only if it hashes to the
//     saved state is it kept, so bytes changed on disk between a crash and
//     a resume are never promoted. Within one process h goes on as it is.
//   - Only a file whose sha256 matched is renamed into Dir/sha256/<hex>,
//     after an fsync of the file, followed by an fsync of that directory.
//
// The state file, JSON (trailing spaces pad it to stateReserve bytes):
//
//	{"version":1, "url":"https://...", "digest":"<hex>", "size":N,
//	 "offset":N, "sha256_state":"<base64 of crypto/sha256 MarshalBinary>",
//	 "validator":"\"etag\"" or "Mon, 02 Jan 2006 15:04:05 GMT" or ""}
//
// It is replaced by writing <hex>.state.tmp, fsync, rename, fsync of the
// directory. The .tmp file is kept allocated at stateReserve bytes between
// checkpoints and overwritten in place, so that a checkpoint can still be
// written when the disk filled up while writing the .part.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sentinel-paas/sentinel/durable"
)

const (
	stateVersion     = 1
	stateReserve     = 4096
	progressInterval = 250 * time.Millisecond
)

type stateFile struct {
	Version   int    `json:"version"`
	URL       string `json:"url"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Offset    int64  `json:"offset"`
	HashState string `json:"sha256_state"`
	Validator string `json:"validator"`
}

type transfer struct {
	s                                    *Store
	src                                  source
	url, digest                          string
	size                                 int64
	partDir, part, state, stateTmp, dest string

	f         *os.File  // .part, write-only; nil once promoted or discarded
	direct    *os.File  // .part with O_DIRECT (direct.go); nil if refused, and once f is closed
	h         hash.Hash // sha256 of .part[0:offset]
	offset    int64     // bytes of .part written and hashed
	durable   int64     // offset of the last checkpoint
	sinceCkpt int64
	validator string
	via       string // "through proxy HOST" for the current attempt, if any

	stats   TransferStats
	buf     []byte
	ckpt    int64
	attempt struct {
		start      time.Time
		bytes      int64
		lastReport time.Time
	}
}

// fetchLocked runs one transfer under the cross-process lock.
func (s *Store) fetchLocked(ctx context.Context, src source, rawURL, digest string, size int64) (TransferStats, error) {
	begin := time.Now()
	t := &transfer{
		s: s, src: src, url: rawURL, digest: digest, size: size,
		partDir: filepath.Join(s.Dir, "partial"),
		dest:    s.Path(digest),
		stats:   TransferStats{URL: rawURL, Digest: digest, Size: size},
		ckpt:    s.CheckpointBytes,
	}
	if t.ckpt <= 0 {
		t.ckpt = DefaultCheckpointBytes
	}
	t.part = filepath.Join(t.partDir, digest+".part")
	t.state = filepath.Join(t.partDir, digest+".state")
	t.stateTmp = t.state + ".tmp"
	for _, d := range []string{t.partDir, filepath.Dir(t.dest)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return t.stats, err
		}
	}
	unlock, err := lockFile(ctx, filepath.Join(t.partDir, digest+".lock"))
	if err != nil {
		return t.stats, fmt.Errorf("downloading %s: waiting for the lock on %s: %w", rawURL, digest, err)
	}
	defer unlock()
	if s.Has(digest) { // another process finished it while we waited
		return t.stats, nil
	}
	err = t.run(ctx)
	t.closeDirect()
	if t.f != nil {
		t.f.Close()
	}
	// The reserved space for the next checkpoint served its purpose while
	// the transfer ran; the next transfer reserves it again.
	os.Remove(t.stateTmp)
	t.stats.Duration = time.Since(begin)
	t.report(true, err)
	return t.stats, err
}

func (t *transfer) run(ctx context.Context) error {
	if err := t.openPartial(); err != nil {
		return fmt.Errorf("downloading %s: %w", t.url, err)
	}
	maxAttempts := t.s.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	bufSize := t.s.BufferSize
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	t.buf = alignedBuffer(bufSize)

	highWater := t.offset // furthest offset reached: passing it is progress
	stuck := 0            // attempts failed in a row without progress
	failed := false       // the last attempt failed: back off before the next
	var hint time.Duration
	var lastErr error
	var causes causeList // what went wrong, each once: the give-up message keeps them all
	for {
		if ctx.Err() != nil {
			return t.stopped(ctx)
		}
		if t.offset == t.size {
			err := t.finish()
			var dm *DigestMismatchError
			if errors.As(err, &dm) && t.stats.Refetches == 0 {
				// A file that changed under a resume, or a mirror that
				// served something else once: one fresh try from zero.
				t.stats.Refetches++
				if err := t.resetToZero(); err != nil {
					return fmt.Errorf("downloading %s: %w", t.url, err)
				}
				highWater, stuck, failed = 0, 0, false
				continue
			}
			return err
		}
		if stuck >= maxAttempts {
			if t.durable == 0 {
				t.discard()
			}
			return fmt.Errorf("%w (gave up after %d attempts without progress%s)", lastErr, stuck, causes.others(lastErr))
		}
		if failed {
			if err := t.backoff(ctx, stuck, hint); err != nil {
				return t.stopped(ctx)
			}
			t.stats.Retries++
		}
		err := t.attemptOnce(ctx)
		failed, hint = false, 0
		if err == nil {
			continue // complete: verify at the top of the loop
		}
		if ctx.Err() != nil {
			return t.stopped(ctx)
		}
		var re *restartError
		if errors.As(err, &re) {
			// Not a failure of the network: ask again, from zero, at once.
			t.stats.RestartsFromZero++
			if rerr := t.resetToZero(); rerr != nil {
				return fmt.Errorf("downloading %s: %w", t.url, rerr)
			}
			stuck++
			lastErr = t.describe(err)
			causes.add(err)
			continue
		}
		if !transient(err) {
			return t.fail(err)
		}
		lastErr = t.describe(err)
		causes.add(err)
		if cerr := t.checkpoint(); cerr != nil {
			return t.fail(cerr)
		}
		if t.offset > highWater {
			highWater, stuck = t.offset, 0
		} else {
			stuck++
		}
		failed = true
		var se *statusError
		if errors.As(err, &se) {
			hint = se.RetryAfter
		}
	}
}

// causeList keeps each distinct failure of a transfer once, in order, so
// that the last one ("short body") does not hide the one that led to it
// (a wrong Content-Range).
type causeList []string

func (c *causeList) add(err error) {
	msg := err.Error()
	for _, m := range *c {
		if m == msg {
			return
		}
	}
	if len(*c) < 4 {
		*c = append(*c, msg)
	}
}

// others lists the causes other than last's, for the give-up message.
func (c causeList) others(last error) string {
	var out []string
	for _, m := range c {
		if last == nil || !strings.HasSuffix(last.Error(), m) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; before that: " + strings.Join(out, "; ")
}

// attemptOnce makes one request and copies its body into the partial file.
// It returns nil once offset == size and the source had nothing more.
func (t *transfer) attemptOnce(ctx context.Context) error {
	t.stats.Attempts++
	stall := t.s.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := &stallError{d: stall}
	// The watchdog: pushed forward on every read that returns bytes; if it
	// fires, the request's context is cancelled, which aborts a blocked
	// read or a wait for the response.
	wd := time.AfterFunc(stall, func() { cancel(stalled) })
	defer wd.Stop()
	isStall := func(err error) error {
		if ctx.Err() == nil && context.Cause(actx) == stalled {
			return stalled
		}
		return err
	}

	t.attempt.start, t.attempt.bytes = time.Now(), 0
	o, err := t.src.open(actx, t.offset, t.validator)
	if err != nil {
		var pe *proxyError
		if errors.As(err, &pe) {
			t.via = pe.via
		} else {
			t.via = ""
		}
		return isStall(err)
	}
	defer o.body.Close()
	t.via = o.via
	if o.start != t.offset {
		// 200 to a ranged request: the server ignored the range, or the
		// If-Range validator no longer matches (the file changed). Use
		// this body, from zero.
		t.stats.RestartsFromZero++
		if err := t.resetToZero(); err != nil {
			return err
		}
	}
	if o.total >= 0 && o.total != t.size {
		if o.start > 0 {
			return &restartError{fmt.Sprintf("resumed at %d of a file of %d bytes, expected %d", o.start, o.total, t.size)}
		}
		return &permanentError{&SizeMismatchError{URL: t.url, Want: t.size, Got: o.total}}
	}
	t.validator = o.validator

	// Never past the expected size: read at most what is missing, then
	// probe for one byte more.
	r := &watchdogReader{r: o.body, wd: wd, stall: stall}
	from := t.offset
	if err := t.copyPipelined(r, o.body, t.size-t.offset); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// net/http's word for a body shorter than its Content-Length.
			err = &shortBodyError{from: from, got: t.offset - from, want: t.size - from}
		}
		return isStall(err)
	}
	if t.offset < t.size {
		if o.exact {
			return &permanentError{&SizeMismatchError{URL: t.url, Want: t.size, Got: t.offset}}
		}
		return isStall(&shortBodyError{from: from, got: t.offset - from, want: t.size - from})
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n > 0 {
		t.stats.BytesReceived++
		return &permanentError{&SizeMismatchError{URL: t.url, Want: t.size, Got: t.size + 1}}
	}
	return nil
}

// shortBodyError: the response ended before the bytes it was to carry.
type shortBodyError struct{ from, got, want int64 }

func (e *shortBodyError) Error() string {
	return fmt.Sprintf("short body: the connection closed after %d of the %d bytes asked for from byte %d", e.got, e.want, e.from)
}

type stallError struct{ d time.Duration }

func (e *stallError) Error() string { return fmt.Sprintf("stalled: no data for %s", e.d) }

// watchdogReader pushes the stall watchdog forward on every read that
// returns bytes. It runs in copyPipelined's reader goroutine: it touches
// nothing else of the transfer.
type watchdogReader struct {
	r     io.Reader
	wd    *time.Timer
	stall time.Duration
}

func (w *watchdogReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.wd.Reset(w.stall)
	}
	return n, err
}

// pipelineDepth is how many chunks may be read ahead of the one being
// written and hashed.
const pipelineDepth = 3

// copyPipelined moves up to limit bytes from src into the partial file and
// the hash. A reader goroutine fills the next chunks while this goroutine
// writes and hashes the last one, and writing and hashing run side by side:
// network, disk and hash overlap instead of adding up. body is closed on an
// error to unblock a read in flight; the reader has stopped when this returns.
func (t *transfer) copyPipelined(src io.Reader, body io.Closer, limit int64) error {
	type chunk struct {
		b   []byte
		n   int
		err error
	}
	free := make(chan []byte, pipelineDepth)
	free <- t.buf
	for i := 1; i < pipelineDepth; i++ {
		free <- alignedBuffer(len(t.buf))
	}
	filled := make(chan chunk, pipelineDepth)
	// Chunks of a quarter checkpoint at most: what is read ahead, and
	// lost to a crash, stays well under a checkpoint interval.
	chunkSize := len(t.buf)
	if q := t.ckpt / 4; q > 0 && q < int64(chunkSize) {
		chunkSize = int(q)
	}
	// Chunks of whole blocks, from a block's start, for writeAt's
	// O_DIRECT: a resume from the middle of a block (a checkpoint after a
	// cut) first reads up to the block's end.
	align := int64(1)
	if t.direct != nil && chunkSize >= directAlign {
		align = directAlign
		chunkSize &^= directAlign - 1
	}
	pos := t.offset
	quit, done := make(chan struct{}), make(chan struct{})
	src = io.LimitReader(src, limit)
	go func() {
		defer close(done)
		defer close(filled)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-quit:
				return
			}
			want := chunkSize
			if r := pos % align; r != 0 {
				want = int(align - r)
			}
			n, err := fill(src, b[:want], pos, align)
			pos += int64(n)
			select {
			case filled <- chunk{b, n, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	stop := func(err error) error {
		close(quit)
		if err != nil {
			body.Close()
		}
		<-done
		return err
	}
	for c := range filled {
		if c.n > 0 {
			t.stats.BytesReceived += int64(c.n)
			t.attempt.bytes += int64(c.n)
			if err := t.write(c.b[:c.n]); err != nil {
				return stop(err)
			}
		}
		if c.err == io.EOF {
			return stop(nil)
		}
		if c.err != nil {
			return stop(c.err)
		}
		free <- c.b
	}
	return stop(nil)
}

// fillWait bounds how long a chunk waits for more bytes once its first
// have come.
const fillWait = 20 * time.Millisecond

// fill reads into b, which is to land at offset pos of the file, until it
// is full, the source ends or fails, or fillWait has passed since the
// first bytes came and the chunk ends at a multiple of align. At speed a
// chunk is a whole buffer, one write and one hand-off per MiB rather than
// per TLS record (16 KiB: most of the CPU a transfer took beyond TLS and
// sha256); on a slow link the bytes still reach the file, and the
// progress, a block (align) at a time as they come. What a crash loses of
// a chunk not yet written is past the last checkpoint, which a resume cuts
// off anyway.
func fill(src io.Reader, b []byte, pos, align int64) (int, error) {
	n, err := src.Read(b)
	for start := time.Now(); err == nil && n > 0 && n < len(b); {
		late := time.Since(start) >= fillWait
		if late && (pos+int64(n))%align == 0 {
			break
		}
		var m int
		m, err = src.Read(b[n:])
		n += m
		if m == 0 && late {
			break // a reader that returns nothing: hand on what came
		}
	}
	return n, err
}

// write puts p in the partial file and the hash, at once: offset only ever
// covers bytes that are in both. If the write fails, the hash is put back
// as it was, so no checkpoint can pair a hash with bytes not on disk; what
// the failed write left past offset, the next checkpoint cuts off.
func (t *transfer) write(p []byte) error {
	before, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	hashed := make(chan struct{})
	go func() {
		t.h.Write(p)
		close(hashed)
	}()
	n, err := t.writeAt(p, t.offset)
	<-hashed
	if err != nil {
		if uerr := t.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(before); uerr != nil {
			return uerr
		}
		return &diskError{op: "writing", path: t.part, err: err}
	}
	t.offset += int64(n)
	t.sinceCkpt += int64(n)
	if t.sinceCkpt >= t.ckpt {
		if err := t.checkpoint(); err != nil {
			return err
		}
	}
	if now := time.Now(); now.Sub(t.attempt.lastReport) >= progressInterval {
		t.attempt.lastReport = now
		t.report(false, nil)
	}
	return nil
}

// diskError is a local filesystem failure: not retried (a full disk does
// not empty itself), the partial file is kept for the next Fetch.
type diskError struct {
	op, path string
	err      error
}

func (e *diskError) Error() string {
	inner := e.err
	var pe *fs.PathError
	if errors.As(inner, &pe) {
		inner = pe.Err // the path is said already
	}
	return e.op + " " + e.path + ": " + inner.Error()
}
func (e *diskError) Unwrap() error { return e.err }

// openPartial opens the .part and resumes from the state file if it is
// usable, else starts from zero.
func (t *transfer) openPartial() error {
	f, err := os.OpenFile(t.part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return &diskError{op: "opening", path: t.part, err: err}
	}
	t.f = f
	t.direct = openDirect(t.part, f)
	fi, err := f.Stat()
	if err != nil {
		return &diskError{op: "opening", path: t.part, err: err}
	}
	h, st := t.loadState(fi.Size())
	if h != nil {
		if h, err = t.rehashPrefix(h, st.Offset); err != nil {
			return err
		}
	}
	if h != nil {
		t.h, t.offset, t.durable, t.validator = h, st.Offset, st.Offset, st.Validator
		t.stats.ResumedFrom = st.Offset
	} else {
		if fi.Size() > 0 {
			t.stats.RestartsFromZero++
		}
		if err := os.Remove(t.state); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &diskError{op: "removing", path: t.state, err: err}
		}
		// Durably gone before the .part is rewritten: after a power cut
		// the old state must not come back paired with new bytes.
		if err := durable.SyncDir(t.partDir); err != nil {
			return &diskError{op: "syncing", path: t.partDir, err: err}
		}
		t.h = sha256.New()
	}
	// Drop what was written after the checkpoint: it may not be durable,
	// and it is not in the restored hash.
	if err := f.Truncate(t.offset); err != nil {
		return &diskError{op: "truncating", path: t.part, err: err}
	}
	t.preallocate()
	t.reserveState()
	return nil
}

// preallocate reserves the blocks of the bytes still to come, past the
// end of the file (FALLOC_FL_KEEP_SIZE: the size stays what was received,
// which a resume reads). Without it, transfers written side by side with
// O_DIRECT interleave their blocks: on 2026-12-05 a 20-node staging left
// 9.5 extents per 64 MiB artifact, against 1 with it and 2.5 for a copy;
// a node's disk then reads an artifact back in one sweep. Where the file
// system has no fallocate, or no room, the transfer writes as before (a
// full disk then fails the write, said as such); what was reserved is
// given back.
func (t *transfer) preallocate() {
	n := t.size - t.offset
	if n <= 0 {
		return
	}
	if err := unix.Fallocate(int(t.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, t.offset, n); err != nil {
		t.f.Truncate(t.offset) // frees what a failed fallocate left past the end
	}
}

// rehashPrefix hashes the first n bytes of the .part from disk and returns
// that hash if it equals saved, the state the checkpoint recorded for them;
// nil if the bytes changed since (the prefix is then dropped).
func (t *transfer) rehashPrefix(saved hash.Hash, n int64) (hash.Hash, error) {
	f, err := os.Open(t.part)
	if err != nil {
		return nil, &diskError{op: "re-reading", path: t.part, err: err}
	}
	defer f.Close()
	h := sha256.New()
	read, err := io.Copy(h, io.NewSectionReader(f, 0, n))
	// The node's page cache is its apps': the prefix was written around it.
	_ = unix.Fadvise(int(f.Fd()), 0, n, unix.FADV_DONTNEED)
	t.stats.BytesReadFromPartial += read
	if err != nil {
		return nil, &diskError{op: "re-reading", path: t.part, err: err}
	}
	want, err1 := saved.(encoding.BinaryMarshaler).MarshalBinary()
	got, err2 := h.(encoding.BinaryMarshaler).MarshalBinary()
	if read != n || err1 != nil || err2 != nil || string(want) != string(got) {
		t.stats.PrefixChanged = true
		return nil, nil
	}
	return h, nil
}

// loadState returns the restored hash and the state if Dir/partial/<hex>.state
// describes a usable prefix of a .part of partSize bytes for this transfer.
func (t *transfer) loadState(partSize int64) (hash.Hash, *stateFile) {
	b, err := os.ReadFile(t.state)
	if err != nil {
		return nil, nil
	}
	var st stateFile
	if json.Unmarshal(b, &st) != nil || st.Version != stateVersion ||
		st.Digest != t.digest || st.Size != t.size ||
		st.Offset <= 0 || st.Offset > t.size || st.Offset > partSize {
		return nil, nil
	}
	// Another URL (a cache node instead of the upstream, say): its
	// validator means nothing here, so the prefix cannot be trusted to be
	// the same file as what the new URL would send after it.
	if st.URL != t.url {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(st.HashState)
	// The marshalled state ends with the number of bytes hashed.
	if err != nil || len(raw) < 8 || binary.BigEndian.Uint64(raw[len(raw)-8:]) != uint64(st.Offset) {
		return nil, nil
	}
	h := sha256.New()
	if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(raw) != nil {
		return nil, nil
	}
	return h, &st
}

// checkpoint makes offset durable: cut what is past it, fsync the .part,
// then write the state.
func (t *transfer) checkpoint() error {
	t.sinceCkpt = 0
	if t.f == nil || t.offset == 0 {
		return nil
	}
	if err := t.f.Truncate(t.offset); err != nil {
		return &diskError{op: "truncating", path: t.part, err: err}
	}
	if err := t.f.Sync(); err != nil {
		return &diskError{op: "syncing", path: t.part, err: err}
	}
	if t.offset == t.durable {
		return nil
	}
	hs, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b, err := json.Marshal(stateFile{
		Version: stateVersion, URL: t.url, Digest: t.digest, Size: t.size,
		Offset: t.offset, HashState: base64.StdEncoding.EncodeToString(hs), Validator: t.validator,
	})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	for len(b) < stateReserve {
		b = append(b, ' ')
	}
	if err := t.writeState(b); err != nil {
		return err
	}
	t.durable = t.offset
	t.reserveState()
	return nil
}

// writeState replaces the state file atomically. The .tmp is overwritten
// in place (no O_TRUNC) so that its reserved blocks are reused.
func (t *transfer) writeState(b []byte) error {
	f, err := os.OpenFile(t.stateTmp, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return &diskError{op: "writing", path: t.stateTmp, err: err}
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.Rename(t.stateTmp, t.state)
	}
	if err != nil {
		return &diskError{op: "writing", path: t.state, err: err}
	}
	return nil
}

// reserveState allocates the next state's .tmp ahead of need. Best
// effort: without it a checkpoint allocates as it writes.
func (t *transfer) reserveState() {
	f, err := os.OpenFile(t.stateTmp, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() >= stateReserve {
		return
	}
	pad := make([]byte, stateReserve)
	for i := range pad {
		pad[i] = ' '
	}
	if _, err := f.WriteAt(pad, 0); err != nil {
		f.Truncate(0)
	}
}

// resetToZero drops the partial file and its state: the next bytes are
// the file's first.
func (t *transfer) resetToZero() error {
	if err := os.Remove(t.state); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &diskError{op: "removing", path: t.state, err: err}
	}
	// The old state must be gone for good before the .part holds other
	// bytes at its offsets.
	if err := durable.SyncDir(t.partDir); err != nil {
		return &diskError{op: "syncing", path: t.partDir, err: err}
	}
	if t.f == nil {
		f, err := os.OpenFile(t.part, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return &diskError{op: "opening", path: t.part, err: err}
		}
		t.f = f
		t.direct = openDirect(t.part, f)
	}
	if err := t.f.Truncate(0); err != nil {
		return &diskError{op: "truncating", path: t.part, err: err}
	}
	t.h = sha256.New()
	t.offset, t.durable, t.sinceCkpt, t.validator = 0, 0, 0, ""
	t.preallocate()
	t.reserveState()
	return nil
}

// discard removes every trace of the transfer but the lock.
func (t *transfer) discard() {
	t.closeDirect()
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	os.Remove(t.part)
	os.Remove(t.state)
	os.Remove(t.stateTmp)
}

// finish verifies the complete .part and promotes it.
func (t *transfer) finish() error {
	if got := hex.EncodeToString(t.h.Sum(nil)); got != t.digest {
		t.discard()
		return &DigestMismatchError{URL: t.url, Want: t.digest, Got: got, Size: t.size}
	}
	if err := t.f.Sync(); err != nil {
		return t.fail(&diskError{op: "syncing", path: t.part, err: err})
	}
	// Promote only the file this transfer wrote and hashed: if the path
	// now names another file (removed, replaced), its bytes are unverified.
	t.closeDirect()
	var mine, named syscall.Stat_t
	ferr := syscall.Fstat(int(t.f.Fd()), &mine)
	serr := syscall.Stat(t.part, &named)
	if err := t.f.Close(); err != nil {
		t.f = nil
		return fmt.Errorf("downloading %s: %w", t.url, &diskError{op: "closing", path: t.part, err: err})
	}
	t.f = nil
	if ferr != nil || serr != nil || mine.Dev != named.Dev || mine.Ino != named.Ino {
		return fmt.Errorf("downloading %s: the partial file %s was removed or replaced during the download (by a prune?); nothing was stored: run the fetch again", t.url, t.part)
	}
	if err := durable.Rename(t.part, t.dest); err != nil {
		return fmt.Errorf("downloading %s: storing %s: %w", t.url, t.dest, err)
	}
	if fi, err := os.Lstat(t.dest); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Dev == mine.Dev && st.Ino == mine.Ino {
			t.stats.promoted = fi
		}
	}
	os.Remove(t.state)
	os.Remove(t.stateTmp)
	t.stats.Downloaded = true
	return nil
}

// fail ends the transfer on a permanent error: checkpoint what is kept,
// or drop it when the source is wrong for good.
func (t *transfer) fail(err error) error {
	var sm *SizeMismatchError
	if errors.As(err, &sm) {
		t.discard()
		return sm
	}
	msg := t.describe(err)
	if cerr := t.checkpoint(); cerr != nil {
		return fmt.Errorf("%w (and saving progress failed: %v)", msg, cerr)
	}
	if t.durable == 0 {
		t.discard() // nothing worth keeping
		return msg
	}
	var de *diskError
	if errors.As(err, &de) {
		return fmt.Errorf("%w; %d of %d bytes kept in %s for the next fetch to resume", msg, t.durable, t.size, t.partDir)
	}
	return msg
}

// stopped ends the transfer on cancellation, after a checkpoint.
func (t *transfer) stopped(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cerr := t.checkpoint(); cerr != nil {
		return fmt.Errorf("downloading %s: stopped at %d of %d bytes (saving progress failed: %v): %w", t.url, t.offset, t.size, cerr, cause)
	}
	if t.durable == 0 {
		t.discard()
		return fmt.Errorf("downloading %s: stopped before any byte was stored: %w", t.url, cause)
	}
	return fmt.Errorf("downloading %s: stopped at %d of %d bytes, kept for resume: %w", t.url, t.offset, t.size, cause)
}

// describe puts what happened in a sentence: the URL, the proxy if one was
// in the way, and the error.
func (t *transfer) describe(err error) error {
	var pe *proxyError
	if errors.As(err, &pe) {
		return fmt.Errorf("downloading %s %w", t.url, err)
	}
	if t.via != "" {
		return fmt.Errorf("downloading %s %s: %w", t.url, t.via, err)
	}
	return fmt.Errorf("downloading %s: %w", t.url, err)
}

// transient reports whether err is worth another attempt. Failures of
// the network are, whatever their type (an HTTP/2 stream reset is no
// net.OpError), except those that another try cannot fix: a certificate
// the client rejects, TLS spoken to a plain HTTP server, a name that does
// not resolve. Permanent: the source's own verdicts, HTTP 4xx but 408 and
// 429, local disk errors.
func transient(err error) bool {
	var pe *permanentError
	var de *diskError
	if errors.As(err, &pe) || errors.As(err, &de) {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == 408 || se.Code == 429
	}
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		dns *net.DNSError
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), errors.As(err, &rh):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound
	}
	return true
}

// backoff waits before the next attempt: full jitter, uniform in
// [0, min(max, base*2^stuck)], or the server's Retry-After if longer (capped).
func (t *transfer) backoff(ctx context.Context, stuck int, hint time.Duration) error {
	base, ceil := t.s.RetryBase, t.s.RetryMax
	if base <= 0 {
		base = DefaultRetryBase
	}
	if ceil <= 0 {
		ceil = DefaultRetryMax
	}
	d := ceil
	if stuck < 30 && base<<stuck < ceil && base<<stuck > 0 {
		d = base << stuck
	}
	d = rand.N(d + 1)
	if hint > d {
		d = min(hint, ceil)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *transfer) report(final bool, err error) {
	if t.s.Progress == nil {
		return
	}
	p := TransferProgress{
		Digest: t.digest, URL: t.url, Done: t.offset, Total: t.size,
		AttemptBytes: t.attempt.bytes, Attempt: t.stats.Attempts, Retries: t.stats.Retries,
		Final: final, Err: err,
	}
	if el := time.Since(t.attempt.start).Seconds(); el > 0 && !t.attempt.start.IsZero() {
		p.Rate = float64(t.attempt.bytes) / el
	}
	t.s.Progress(p)
}

// lockFile takes an exclusive flock on path, waiting for it while ctx
// allows. The holder removes the file when done; a waiter that then gets
// the lock on the removed inode notices and starts over, so two processes
// never both believe they hold it.
func lockFile(ctx context.Context, path string) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := lockWait(ctx, f); err != nil {
			return nil, err // lockWait closed f
		}
		var held, now syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		if err := syscall.Stat(path, &now); err == nil && now.Dev == held.Dev && now.Ino == held.Ino {
			return func() {
				os.Remove(path)
				f.Close()
			}, nil
		}
		f.Close()
	}
}

// tryLockFile is lockFile without waiting: ok is false when another holds
// the lock (a transfer of that digest is under way).
func tryLockFile(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if ok, err := durable.TryLock(f, true); !ok {
		f.Close()
		return nil, false, err
	}
	var held, now syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &held) != nil || syscall.Stat(path, &now) != nil || now.Dev != held.Dev || now.Ino != held.Ino {
		f.Close() // raced with a holder removing it: treat as busy
		return nil, false, nil
	}
	return func() {
		os.Remove(path)
		f.Close()
	}, true, nil
}

// testHookLockWait, if set, is called when lockFile is about to wait.
var testHookLockWait func()

// lockWait takes the exclusive lock on f, waiting while ctx allows. On an
// error f is closed.
func lockWait(ctx context.Context, f *os.File) error {
	if ok, err := durable.TryLock(f, true); ok {
		return nil
	} else if err != nil {
		f.Close()
		return err
	}
	if testHookLockWait != nil {
		testHookLockWait()
	}
	return durable.LockContext(ctx, f)
}
