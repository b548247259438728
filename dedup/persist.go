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
