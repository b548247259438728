package link

import (
	"sync"
	"time"

	"github.com/redisrepl/redisrepl/link/store"
)

// Echo marks (docs/ARCHITECTURE.md, "No echo loops"). In direction both a
// link hears its own writes: each write of a key on a side comes back as a
// keyspace event of that side, which the link would read back to find it
// equal to what it wrote. Instead, every write request the link sends
// publishes a mark in the same script, after its writes (store.WriteMark).
// Events reach the subscriber in the order they were made, and a script
// runs alone, so the events of a written key that arrive before its mark
// are the write's own or come from writes made before it, which it
// replaced over the state the decision was made on (store.State.Expect):
// they are dropped. Events after the mark are new changes.
//
// A key the write skipped (its side changed since it was read), a write
// that failed or could publish no mark (plain commands, PUBLISH refused),
// and a mark not seen within markTimeout let the key's events through
// again: at worst an echo is read back, as without marks.

// markTimeout is how long the events of a marked write's keys are dropped
// while its mark has not come: a mark arrives within milliseconds, unless
// the stream broke (which resubscribes and resyncs).
const markTimeout = 5 * time.Second

// echoFilter drops one side's events of keys written with a mark not seen
// yet.
type echoFilter struct {
	mu     sync.Mutex
	next   uint64
	keys   map[string]uint64 // key → token of the marked write it waits for
	tokens map[uint64]markWait

	// carried holds the states events of the hub brought along (values on
	// the stream, store/carried.go), until a worker takes their key. They
	// are kept here, under the lock of the marks, because a state read
	// before a write of the link is stale once the write is sent: expect
	// forgets it, and an event admitted while a write waits for its mark
	// is an echo and brings none.
	carried      map[string]*store.State
	carriedBytes int
}

// Bounds of the carried states: past them an event's state is not kept,
// and the worker reads the key as without values.
const (
	maxCarried      = 1 << 16
	maxCarriedBytes = 64 << 20
)

type markWait struct {
	keys []string
	at   time.Time
}

func newEchoFilter() *echoFilter {
	return &echoFilter{keys: map[string]uint64{}, tokens: map[uint64]markWait{}, carried: map[string]*store.State{}}
}

// expect registers keys about to be written with a mark, and returns the
// mark's token.
func (f *echoFilter) expect(keys []string) uint64 {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	t := f.next
	f.tokens[t] = markWait{keys: keys, at: now}
	for _, k := range keys {
		f.keys[k] = t
		f.forgetCarriedLocked(k)
	}
	return t
}

// admit says whether an event of key is a new change, not an echo (drop).
// A new change's state, carried by the event (nil: none), replaces what
// an earlier event of key carried, until a worker takes it (takeCarried).
func (f *echoFilter) admit(key []byte, st *store.State) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.keys[string(key)]; ok && time.Since(f.tokens[t].at) < markTimeout {
		return false
	}
	f.forgetCarriedLocked(string(key))
	if st != nil && len(f.carried) < maxCarried && f.carriedBytes+int(st.Size()) <= maxCarriedBytes {
		f.carried[string(key)] = st
		f.carriedBytes += int(st.Size())
	}
	return true
}

// takeCarried returns, and forgets, the state the last event of key
// carried (nil: none).
func (f *echoFilter) takeCarried(key []byte) *store.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.carried[string(key)]
	f.forgetCarriedLocked(string(key))
	return st
}

func (f *echoFilter) forgetCarriedLocked(key string) {
	if st, ok := f.carried[key]; ok {
		f.carriedBytes -= int(st.Size())
		delete(f.carried, key)
	}
}

// release forgets the write of token t: its mark came, or it failed or
// published none. Writes older than markTimeout are forgotten too.
func (f *echoFilter) release(t uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releaseLocked(t)
	for old, w := range f.tokens {
		if time.Since(w.at) > markTimeout {
			f.releaseLocked(old)
		}
	}
}

func (f *echoFilter) releaseLocked(t uint64) {
	w, ok := f.tokens[t]
	if !ok {
		return
	}
	delete(f.tokens, t)
	for _, k := range w.keys {
		if f.keys[k] == t {
			delete(f.keys, k)
		}
	}
}

// releaseKey lets the events of key through again: the write of token t
// skipped it.
func (f *echoFilter) releaseKey(key string, t uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[key] == t {
		delete(f.keys, key)
	}
}

// reset forgets every write: the side's events are listened to on a new
// subscription, where the marks sent before it never come.
func (f *echoFilter) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.keys)
	clear(f.tokens)
	clear(f.carried)
	f.carriedBytes = 0
}
