// Package dedup is the loop-prevention core of a link: it remembers, per key,
// the state the link last made equal on both sides.
//
// Replication is by state, not by event: when a key changes, its whole
// current state is read and written to the other side. That write comes back
// as an event from the side written to; reading the key there finds the very
// state the link just wrote. The link asks the Table whether the state it
// read is the one it last synced: if so the event is an echo (or a no-op) and
// is dropped. Content, not timing, decides, so a slow link cannot turn an
// echo into a loop, and a real change that happens to arrive late is never
// mistaken for one.
package dedup

import (
	"strconv"
	"sync"
)

// Entry is the synced state of one key: a digest of its type and contents
// and its absolute expiry (unix ms, 0 = none).
type Entry struct {
	Digest   uint64
	ExpireAt int64
}

// Table maps keys to their last synced state. It is safe for concurrent use
// and holds at most Max entries: past that it forgets arbitrary entries,
// which costs at worst one redundant write for a forgotten key, never a loop
// (the redundant write is recorded and its echo then matches).
type Table struct {
	mu      sync.Mutex
	m       map[string]Entry
	max     int
	changes uint64

	journal        *journal // nil: changes are not journaled (journal.go)
	pending, spare []byte   // records not yet written to the journal
}

// New returns a table holding at most max entries (max <= 0: 1,000,000).
func New(max int) *Table {
	if max <= 0 {
		max = 1_000_000
	}
	return &Table{m: make(map[string]Entry), max: max}
}

// ParseDigest turns a hex digest (as the link's Lua scripts return, SHA-1)
// into the 64 bits kept per key. It returns 0, false for "" (unknown).
func ParseDigest(hex string) (uint64, bool) {
	if len(hex) < 16 {
		return 0, false
	}
	d, err := strconv.ParseUint(hex[:16], 16, 64)
	return d, err == nil
}

// Record remembers that key holds the state (digest, expireAt) on both
// sides. An unknown digest ("") forgets the key instead.
func (t *Table) Record(key []byte, digest string, expireAt int64) {
	d, ok := ParseDigest(digest)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changes++
	if !ok {
		delete(t.m, string(key))
		t.logDel(string(key))
		return
	}
	if _, present := t.m[string(key)]; !present {
		t.makeRoom()
	}
	t.put(string(key), Entry{Digest: d, ExpireAt: expireAt})
}

// makeRoom forgets an arbitrary entry when the table is full; t.mu is held.
func (t *Table) makeRoom() {
	if len(t.m) < t.max {
		return
	}
	for k := range t.m {
		delete(t.m, k)
		t.logDel(k)
		break
	}
}

// put sets key's entry; t.mu is held.
func (t *Table) put(key string, e Entry) {
	t.m[key] = e
	t.logPut(key, e)
}

// RecordIf is Record only if key's entry is still prev (absent when
// !prevOK): a comparison made from older reads must not overwrite the state
// a newer copy recorded meanwhile.
func (t *Table) RecordIf(key []byte, prev Entry, prevOK bool, digest string, expireAt int64) {
	d, ok := ParseDigest(digest)
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, has := t.m[string(key)]; has != prevOK || cur != prev {
		return
	}
	t.changes++
	if !ok {
		delete(t.m, string(key))
		t.logDel(string(key))
		return
	}
	if !prevOK {
		t.makeRoom()
	}
	t.put(string(key), Entry{Digest: d, ExpireAt: expireAt})
}

// ForgetIf is Forget only if key's entry is still prev.
func (t *Table) ForgetIf(key []byte, prev Entry, prevOK bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, has := t.m[string(key)]; has == prevOK && cur == prev && has {
		delete(t.m, string(key))
		t.logDel(string(key))
		t.changes++
	}
}

// Synced says whether key's state (digest, expireAt) is the one last synced:
// same digest, expiry within tolerance ms.
func (t *Table) Synced(key []byte, digest string, expireAt, tolerance int64) bool {
	d, ok := ParseDigest(digest)
	if !ok {
		return false
	}
	t.mu.Lock()
	e, found := t.m[string(key)]
	t.mu.Unlock()
	return found && e.Digest == d && SameExpiry(e.ExpireAt, expireAt, tolerance)
}

// Lookup returns key's last synced state.
func (t *Table) Lookup(key []byte) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[string(key)]
	return e, ok
}

// Forget drops key.
func (t *Table) Forget(key []byte) {
	t.mu.Lock()
	if _, ok := t.m[string(key)]; ok {
		delete(t.m, string(key))
		t.logDel(string(key))
	}
	t.changes++
	t.mu.Unlock()
}

// Clear forgets every key.
func (t *Table) Clear() {
	t.mu.Lock()
	t.m = make(map[string]Entry)
	t.logClear()
	t.changes++
	t.mu.Unlock()
}

// Len is the number of keys remembered.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Sample returns up to n keys whose entries satisfy keep, picked
// arbitrarily (Go's map order), looking at no more than 64*n entries.
func (t *Table) Sample(n int, keep func(Entry) bool) [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][]byte
	seen := 0
	for k, e := range t.m {
		if len(out) >= n || seen >= 64*n {
			break
		}
		seen++
		if keep(e) {
			out = append(out, []byte(k))
		}
	}
	return out
}
