package resume

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strings"
)

// replay decodes a whole journal image. It decides between a torn tail (what
// a crash mid-Append leaves: the last frame is short or fails its CRC and
// nothing valid follows) and corruption (anything else), and never skips a
// bad record.
func replay(path string, buf []byte) (Replay, error) {
	size := int64(len(buf))
	if size < headerLen {
		if !strings.HasPrefix(journalMagic, string(buf)) {
			return Replay{}, notJournal(path, buf)
		}
		// A crash inside Create can leave a short header; nothing was ever recorded.
		return Replay{TornTail: &TornTail{Offset: 0, Length: size}}, nil
	}
	if string(buf[:headerLen]) != journalMagic {
		return Replay{}, notJournal(path, buf)
	}

	var recs []Record
	var last uint64
	off := headerLen
	for off < size {
		payload, fault := frameAt(buf, off)
		if fault != "" {
			if at, next, ok := findValidFrame(buf, off+1, last); ok {
				return Replay{}, &CorruptError{Path: path, Offset: off, Record: last + 1, Reason: fmt.Sprintf(
					"%s in record %d, followed by valid record %d at byte %d", fault, last+1, next.Seq, at)}
			}
			return Replay{Records: recs, TornTail: &TornTail{Offset: off, Length: size - off}}, nil
		}
		// A verified CRC rules out a torn write, so what follows is corruption
		// even in the last record.
		var rec Record
		if err := json.Unmarshal(payload, &rec); err != nil {
			return Replay{}, &CorruptError{Path: path, Offset: off, Record: last + 1, Reason: fmt.Sprintf(
				"record %d passes its crc but does not decode: %v", last+1, err)}
		}
		if rec.Seq != last+1 {
			return Replay{}, &CorruptError{Path: path, Offset: off, Record: last + 1, Reason: fmt.Sprintf(
				"record has seq %d, want %d", rec.Seq, last+1)}
		}
		recs = append(recs, rec)
		last = rec.Seq
		off += frameLen + int64(len(payload))
	}
	return Replay{Records: recs}, nil
}

// frameAt verifies the frame starting at off and returns its payload, or a
// description of what is wrong with it.
func frameAt(buf []byte, off int64) (payload []byte, fault string) {
	rest := buf[off:]
	if len(rest) < frameLen {
		return nil, fmt.Sprintf("short frame header (%d of %d bytes)", len(rest), frameLen)
	}
	n := binary.LittleEndian.Uint32(rest[0:4])
	if n == 0 {
		return nil, "zero record length"
	}
	if n > maxRecordLen {
		return nil, fmt.Sprintf("record length %d exceeds limit %d", n, maxRecordLen)
	}
	if avail := len(rest) - frameLen; int64(avail) < int64(n) {
		return nil, fmt.Sprintf("short payload (%d of %d bytes)", avail, n)
	}
	payload = rest[frameLen : frameLen+int(n)]
	if crc32.Checksum(payload, castagnoli()) != binary.LittleEndian.Uint32(rest[4:8]) {
		return nil, "crc mismatch"
	}
	return payload, ""
}

// findValidFrame scans byte by byte from `from` for a complete frame holding
// a record later than last. Finding one means the bad frame before it is not
// a torn tail. A false hit inside a torn payload is not a practical concern:
// the encoder never writes raw bytes below 0x20, while every length prefix
// has a zero high byte, so a frame cannot sit inside a payload.
func findValidFrame(buf []byte, from int64, last uint64) (int64, Record, bool) {
	for p := from; p+frameLen <= int64(len(buf)); p++ {
		payload, fault := frameAt(buf, p)
		if fault != "" {
			continue
		}
		var rec Record
		if json.Unmarshal(payload, &rec) != nil || rec.Seq <= last {
			continue
		}
		return p, rec, true
	}
	return 0, Record{}, false
}

func notJournal(path string, buf []byte) error {
	head := buf
	if len(head) > len(journalMagic) {
		head = head[:len(journalMagic)]
	}
	return fmt.Errorf("journal %s: %w: file starts with %q, want header %q", path, ErrNotJournal, head, journalMagic)
}
