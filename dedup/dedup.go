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
	"time"
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
	m       map[string]slot
	max     int
	changes uint64
	gen     uint32    // the current sweep generation (BeginSweep)
	epoch   time.Time // slot.at counts seconds from here

	journal        *journal // nil: changes are not journaled (journal.go)
	pending, spare []byte   // records not yet written to the journal
}

// slot is an entry with what keeps the table true (see BeginSweep and
// Echo): the sweep generation that last saw the key, and when the link last
// wrote it (seconds after the table's epoch + 1; 0 = not written by this
// process, e.g. loaded from the state file or found equal by a resync).
type slot struct {
	Entry
	gen uint32
	at  uint32
}

// EchoWindow is how long after the link wrote a state an event reading that
// state still counts as the write's echo. Past it, or for a state the link
// did not write (loaded at start, found equal by a resync), an equal state
// is a write of its own: a key written again with the value it had when last
// synced, after both sides were emptied, must still be copied. An echo
// mistaken for a write costs one redundant copy, never a loop.
const EchoWindow = 60 * time.Second

// New returns a table holding at most max entries (max <= 0: 1,000,000).
func New(max int) *Table {
	if max <= 0 {
		max = 1_000_000
	}
	return &Table{m: make(map[string]slot), max: max, epoch: time.Now()}
}

// now is the current time as a slot's at.
func (t *Table) now() uint32 { return uint32(time.Since(t.epoch)/time.Second) + 1 }

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
	if len(t.m) >= t.max {
		if _, present := t.m[string(key)]; !present {
			t.makeRoom()
		}
	}
	t.put(string(key), Entry{Digest: d, ExpireAt: expireAt}, t.now())
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

// put sets key's entry, written by the link at at (0: not written by it);
// t.mu is held.
func (t *Table) put(key string, e Entry, at uint32) {
	t.m[key] = slot{Entry: e, gen: t.gen, at: at}
	t.logPut(key, e)
}

// RecordIf is Record only if key's entry is still prev (absent when
// !prevOK): a comparison made from older reads must not overwrite the state
// a newer copy recorded meanwhile.
func (t *Table) RecordIf(key []byte, prev Entry, prevOK bool, digest string, expireAt int64) {
	d, ok := ParseDigest(digest)
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, has := t.m[string(key)]
	if has != prevOK || cur.Entry != prev {
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
	// Found equal on both sides, not written by the link: no echo comes.
	at := uint32(0)
	if e := (Entry{Digest: d, ExpireAt: expireAt}); e == cur.Entry {
		at = cur.at
	}
	t.put(string(key), Entry{Digest: d, ExpireAt: expireAt}, at)
}

// ForgetIf is Forget only if key's entry is still prev.
func (t *Table) ForgetIf(key []byte, prev Entry, prevOK bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, has := t.m[string(key)]; has == prevOK && cur.Entry == prev && has {
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

// Echo says whether key's state (digest, expireAt) is the one the link
// wrote there within EchoWindow: an event that reads it is the write's echo.
func (t *Table) Echo(key []byte, digest string, expireAt, tolerance int64) bool {
	d, ok := ParseDigest(digest)
	if !ok {
		return false
	}
	t.mu.Lock()
	e, found := t.m[string(key)]
	now := t.now()
	t.mu.Unlock()
	return found && e.at > 0 && now-e.at <= uint32(EchoWindow/time.Second) &&
		e.Digest == d && SameExpiry(e.ExpireAt, expireAt, tolerance)
}

// BeginSweep starts a sweep generation: a resync Touches every key that
// exists on either side, and EndSweep then forgets the entries of keys it
// did not see, which exist on neither side. Keys recorded meanwhile belong
// to the new generation and are kept.
func (t *Table) BeginSweep() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	return t.gen
}

// Touch marks keys as seen by the sweep under way.
func (t *Table) Touch(keys [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if s, ok := t.m[string(k)]; ok && s.gen != t.gen {
			s.gen = t.gen
			t.m[string(k)] = s
		}
	}
}

// EndSweep forgets the entries that generation gen did not see, and says
// how many. A later sweep begun meanwhile makes it do nothing.
func (t *Table) EndSweep(gen uint32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return 0
	}
	n := 0
	for k, s := range t.m {
		if s.gen != gen {
			delete(t.m, k)
			t.logDel(k)
			n++
		}
	}
	if n > 0 {
		t.changes++
	}
	return n
}

// Lookup returns key's last synced state.
func (t *Table) Lookup(key []byte) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[string(key)]
	return s.Entry, ok
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
	t.m = make(map[string]slot)
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
		if keep(e.Entry) {
			out = append(out, []byte(k))
		}
	}
	return out
}
