package dedup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The table is saved to a small file so that a link in direction "both"
// still knows, after a restart, which side changed a key since the last sync
// (and so never resurrects a delete). Format: a header line, then per key
// uvarint(len) key, digest (8 bytes), varint expiry; then the number of keys
// (8 bytes) and a CRC-32 of everything before it. It is written to a
// temporary file and renamed, so a crash leaves the old file or the new one.

const fileHeader = "redisrepl-synced 1\n"

// Changes counts the changes made to the table, for deciding whether to
// save it again.
func (t *Table) Changes() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changes
}

// Save writes the table to path atomically.
func (t *Table) Save(path string) error {
	type rec struct {
		k string
		e Entry
	}
	t.mu.Lock()
	recs := make([]rec, 0, len(t.m))
	for k, s := range t.m {
		recs = append(recs, rec{k, s.Entry})
	}
	t.mu.Unlock()

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	crc := crc32.NewIEEE()
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<16)
	w.WriteString(fileHeader)
	var buf [binary.MaxVarintLen64 + 8]byte
	for _, r := range recs {
		n := binary.PutUvarint(buf[:], uint64(len(r.k)))
		w.Write(buf[:n])
		w.WriteString(r.k)
		binary.BigEndian.PutUint64(buf[:8], r.e.Digest)
		w.Write(buf[:8])
		n = binary.PutVarint(buf[:], r.e.ExpireAt)
		w.Write(buf[:n])
	}
	binary.BigEndian.PutUint64(buf[:8], uint64(len(recs)))
	w.Write(buf[:8])
	if err := w.Flush(); err != nil {
		return fmt.Errorf("sync state %s: %w", path, err)
	}
	binary.BigEndian.PutUint32(buf[:4], crc.Sum32())
	if _, err := f.Write(buf[:4]); err != nil {
		return fmt.Errorf("sync state %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync state %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sync state %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	return nil
}

// Load replaces the table's contents by those saved at path, with the
// journal at journalPath replayed on top ("" for none; see journal.go). A
// missing snapshot is os.ErrNotExist when the journal is missing too; a
// damaged one is an error and leaves the table empty.
func (t *Table) Load(path, journalPath string) error {
	data, err := os.ReadFile(path)
	m := make(map[string]slot)
	switch {
	case err == nil:
		if m, err = decode(data); err != nil {
			t.mu.Lock()
			t.m = make(map[string]slot)
			t.mu.Unlock()
			return fmt.Errorf("sync state %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	missing := err != nil
	if journalPath != "" {
		n, jerr := replay(journalPath, m)
		if jerr != nil {
			return jerr
		}
		missing = missing && n == 0
	}
	t.mu.Lock()
	t.m = m // gen 0 and at 0: seen by no sweep yet, not written by this process
	t.gen++
	t.mu.Unlock()
	if missing {
		return os.ErrNotExist
	}
	return nil
}

var errDamaged = errors.New("damaged file")

func decode(data []byte) (map[string]slot, error) {
	if len(data) < len(fileHeader)+12 || string(data[:len(fileHeader)]) != fileHeader {
		return nil, errDamaged
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errDamaged
	}
	count := binary.BigEndian.Uint64(body[len(body)-8:])
	p := body[len(fileHeader) : len(body)-8]
	m := make(map[string]slot, min(count, 1<<20))
	for len(p) > 0 {
		kl, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < 8 || kl > uint64(len(p)-n)-8 {
			return nil, errDamaged
		}
		p = p[n:]
		k := string(p[:kl])
		d := binary.BigEndian.Uint64(p[kl : kl+8])
		p = p[kl+8:]
		exp, n := binary.Varint(p)
		if n <= 0 {
			return nil, errDamaged
		}
		p = p[n:]
		m[k] = slot{Entry: Entry{Digest: d, ExpireAt: exp}}
	}
	if uint64(len(m)) != count {
		return nil, errDamaged
	}
	return m, nil
}

// StateLock holds a sync state (a state file, its journal and whatever else
// is kept beside it) for one process: an exclusive flock on
// <state file>.lock, which holds the pid of its holder. The kernel releases
// it when the process ends, however it ends. The lock file is never
// removed: removing it would let two processes lock two different files.
type StateLock struct{ f *os.File }

// HeldError says that another holder has the sync state.
type HeldError struct {
	State string // the state file
	PID   int    // the holder's pid, 0 if unknown
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("the process with pid %d", e.PID)
	}
	if e.PID == os.Getpid() {
		who = "another link of this process"
	}
	return fmt.Sprintf("the sync state %s is in use by %s (lock %s.lock): each link of each process needs a state file of its own (state_file, or -state)",
		e.State, who, e.State)
}

// LockState takes the lock of the sync state at path without waiting. A
// state held by another holder (another process, or another LockState of
// this one) is a *HeldError; any other error is the lock file's.
func LockState(path string) (*StateLock, error) {
	lock := path + ".lock"
	if err := os.MkdirAll(filepath.Dir(lock), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &HeldError{State: path, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", lock, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &StateLock{f: f}, nil
}

// Unlock releases the lock; nil does nothing.
func (l *StateLock) Unlock() error {
	if l == nil {
		return nil
	}
	return l.f.Close() // closing the file releases its flock
}
