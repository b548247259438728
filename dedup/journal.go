package dedup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"
)

// The snapshot (persist.go) is written now and then; between two snapshots
// every change of the table is appended to a journal beside it, and the
// journal is written and synced in groups (JournalEvery): a crash of the
// process loses at most the changes of the last group, not those since the
// last snapshot. Load replays the journal on top of the snapshot.
//
// Records are absolute (this key now holds this entry; this key is gone;
// everything is gone), so replaying a record twice, or records already in a
// newer snapshot, gives the same table: a crash between writing a snapshot
// and emptying the journal is harmless. Each record carries a CRC-32, so a
// record torn by a crash ends the replay instead of corrupting the table.
//
// Record: uvarint(payload length), payload, CRC-32 of the payload (4 bytes).
// Payload: 'P' uvarint(len) key digest(8) varint(expiry) | 'D' uvarint(len)
// key | 'C'.

// JournalEvery is how often the link writes and syncs the journal: the
// window of changes a crash can lose.
const JournalEvery = 50 * time.Millisecond

type journal struct {
	mu   sync.Mutex // serializes writes to f (Flush, Checkpoint)
	f    *os.File
	size int64 // bytes in f
}

// OpenJournal makes the table journal its changes to path (appended to
// whatever is there: call it after Load). Flush writes them.
func (t *Table) OpenJournal(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("sync journal: %w", err)
	}
	t.mu.Lock()
	t.journal = &journal{f: f, size: st.Size()}
	t.pending = t.pending[:0]
	t.mu.Unlock()
	return nil
}

// Flush writes the changes made since the last Flush to the journal and
// syncs it. Without a journal it does nothing.
func (t *Table) Flush() error {
	t.mu.Lock()
	j := t.journal
	t.mu.Unlock()
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return t.flushLocked(j)
}

// flushLocked writes what is pending; j.mu is held.
func (t *Table) flushLocked(j *journal) error {
	t.mu.Lock()
	buf := t.pending
	t.pending = t.spare[:0]
	t.spare = nil
	t.mu.Unlock()
	if len(buf) == 0 {
		t.mu.Lock()
		t.spare = buf
		t.mu.Unlock()
		return nil
	}
	_, err := j.f.Write(buf)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		// Nothing of buf counts as written: cut a torn tail off (a torn
		// record would end every later replay there) and keep buf pending,
		// ahead of the records added meanwhile, for the next flush.
		_ = j.f.Truncate(j.size)
		t.mu.Lock()
		t.pending = append(buf, t.pending...)
		t.mu.Unlock()
		return fmt.Errorf("sync journal: %w", err)
	}
	j.size += int64(len(buf))
	t.mu.Lock()
	t.spare = buf[:0]
	t.mu.Unlock()
	return nil
}

// Journaling says whether the table journals its changes.
func (t *Table) Journaling() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.journal != nil
}

// JournalSize is the size of the journal in bytes (0 without one).
func (t *Table) JournalSize() int64 {
	t.mu.Lock()
	j := t.journal
	t.mu.Unlock()
	if j == nil {
		return 0
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Checkpoint writes the snapshot to path and empties the journal, which the
// snapshot then holds. Without a journal it is Save.
func (t *Table) Checkpoint(path string) error {
	t.mu.Lock()
	j := t.journal
	t.mu.Unlock()
	if j == nil {
		return t.Save(path)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	// Everything up to now is in the journal before the snapshot is taken:
	// should writing the snapshot fail, the journal still has it all.
	if err := t.flushLocked(j); err != nil {
		return err
	}
	if err := t.Save(path); err != nil {
		return err
	}
	// Changes made while the snapshot was written are pending, not in the
	// file: emptying it loses nothing (they may be in the snapshot too;
	// replaying them again is harmless).
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.size = 0
	return j.f.Sync()
}

// CloseJournal stops journaling (after a last Flush) and closes the file.
func (t *Table) CloseJournal() error {
	err := t.Flush()
	t.mu.Lock()
	j := t.journal
	t.journal = nil
	t.mu.Unlock()
	if j != nil {
		j.mu.Lock()
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		j.mu.Unlock()
	}
	return err
}

// logPut, logDel and logClear append a record of a change; t.mu is held.
func (t *Table) logPut(key string, e Entry) {
	if t.journal != nil {
		t.appendRecord('P', key, true, e)
	}
}

func (t *Table) logDel(key string) {
	if t.journal != nil {
		t.appendRecord('D', key, false, Entry{})
	}
}

func (t *Table) logClear() {
	if t.journal != nil {
		t.appendRecord('C', "", false, Entry{})
	}
}

// appendRecord frames one record in place at the end of t.pending.
func (t *Table) appendRecord(op byte, key string, withEntry bool, e Entry) {
	var num [binary.MaxVarintLen64]byte
	n := 1
	if op != 'C' {
		n += binary.PutUvarint(num[:], uint64(len(key))) + len(key)
	}
	if withEntry {
		n += 8 + binary.PutVarint(num[:], e.ExpireAt)
	}
	b := binary.AppendUvarint(t.pending, uint64(n))
	start := len(b)
	b = append(b, op)
	if op != 'C' {
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
	}
	if withEntry {
		b = binary.BigEndian.AppendUint64(b, e.Digest)
		b = binary.AppendVarint(b, e.ExpireAt)
	}
	t.pending = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

// replay applies the journal at path to m; a missing journal is empty. It
// stops at the first torn or damaged record (the end of what was synced)
// and says how many records it applied.
func replay(path string, m map[string]slot) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sync journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	applied := 0
	for {
		n, err := binary.ReadUvarint(r)
		if err != nil || n == 0 || n > 1<<30 {
			return applied, nil
		}
		rec := make([]byte, n+4)
		if _, err := io.ReadFull(r, rec); err != nil {
			return applied, nil
		}
		payload := rec[:n]
		if crc32.ChecksumIEEE(payload) != binary.BigEndian.Uint32(rec[n:]) || !applyRecord(payload, m) {
			return applied, nil
		}
		applied++
	}
}

// applyRecord applies one record's payload to m; false if it is malformed.
func applyRecord(p []byte, m map[string]slot) bool {
	switch p[0] {
	case 'C':
		clear(m)
		return len(p) == 1
	case 'P', 'D':
	default:
		return false
	}
	kl, n := binary.Uvarint(p[1:])
	if n <= 0 || kl > uint64(len(p)-1-n) {
		return false
	}
	rest := p[1+n:]
	key, rest := string(rest[:kl]), rest[kl:]
	if p[0] == 'D' {
		delete(m, key)
		return len(rest) == 0
	}
	if len(rest) < 9 {
		return false
	}
	d := binary.BigEndian.Uint64(rest[:8])
	exp, n := binary.Varint(rest[8:])
	if n <= 0 || 8+n != len(rest) {
		return false
	}
	m[key] = slot{Entry: Entry{Digest: d, ExpireAt: exp}}
	return true
}
