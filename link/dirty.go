package link

import (
	"context"
	"sync"
	"time"
)

// Why a key is dirty; several may be set.
const (
	changedLocal  uint8 = 1 << iota // an event on the local side
	changedRemote                   // an event on the remote side
	mustCompare                     // a resync found the sides differ: copy even if dedup says synced
)

// dirtySet is a link's pending work: the set of keys that changed and wait to
// be copied, in the order they first changed. It is a set, not a queue of
// events: a key that changes a thousand times while it waits is copied once.
//
// A key being copied is "in flight" and is not handed out again until Done;
// if it changes meanwhile it is queued again then. That keeps the copies of
// one key one at a time, whichever direction they go.
//
// A key that changed while it was in flight is hot: it waits hotDelay
// before it is queued again, so that the changes of a key written thousands
// of times a second coalesce into a copy every few milliseconds instead of
// one per round trip.
//
// The set holds at most max keys. Adding one more drops them all and sets
// the overflow flag: the link then resyncs the whole namespace, which costs
// memory proportional to one batch instead of to the backlog.
type dirtySet struct {
	mu       sync.Mutex
	pending  map[string]uint8  // waiting keys and why
	queue    []queued          // pending keys in arrival order
	head     int               // queue[:head] are taken
	inflight map[string]uint8  // keys being copied, and why they changed again since
	delayed  map[string]queued // hot keys waiting out hotDelay (key unused)
	max      int
	peak     int // most keys held since the maps were last made anew
	overflow bool
	wake     chan struct{}
	// overflowed is signalled when the set overflows (TakeOverflow says
	// whether it still has to be handled).
	overflowed chan struct{}
}

type queued struct {
	key   string
	since int64 // unix ns of the change that made it dirty
	why   uint8 // (delayed keys only)
	retry bool  // (delayed keys only) waiting after a failure, not for being hot
}

// hotDelay is how long a key that changed during its copy waits.
const hotDelay = 10 * time.Millisecond

// batch is keys handed out together, with why and since when each is dirty.
type batch struct {
	keys  []string
	whys  []uint8
	since []int64
	// later, when set, says per key how long it waits before it is tried
	// again: 0 done, > 0 that long, < 0 not until it changes (keyerrors.go).
	later []time.Duration
}

func newDirtySet(max int) *dirtySet {
	if max <= 0 {
		max = 1_000_000
	}
	return &dirtySet{
		pending:  make(map[string]uint8),
		inflight: make(map[string]uint8),
		delayed:  make(map[string]queued),
		max:      max,
		wake:     make(chan struct{}, 1),

		overflowed: make(chan struct{}, 1),
	}
}

// Add marks key dirty for reason why. It never blocks: it is called by the
// event readers, which must keep up with Redis.
func (d *dirtySet) Add(key []byte, why uint8) {
	d.mu.Lock()
	d.addLocked(key, why)
	d.mu.Unlock()
	d.signal()
}

// AddAll marks keys dirty at once, so that workers take them in batches.
func (d *dirtySet) AddAll(keys [][]byte, why uint8) {
	if len(keys) == 0 {
		return
	}
	d.mu.Lock()
	for _, k := range keys {
		d.addLocked(k, why)
	}
	d.mu.Unlock()
	d.signal()
}

func (d *dirtySet) addLocked(key []byte, why uint8) {
	if f, ok := d.inflight[string(key)]; ok {
		d.inflight[string(key)] = f | why
		return
	}
	if q, ok := d.delayed[string(key)]; ok {
		q.why |= why
		if q.retry {
			// A key waiting after it failed changed again (fixed, maybe):
			// try it now. Its timer's release finds it gone and skips it.
			delete(d.delayed, string(key))
			d.pushLocked(string(key), q.why, q.since)
			return
		}
		d.delayed[string(key)] = q
		return
	}
	if f, ok := d.pending[string(key)]; ok {
		d.pending[string(key)] = f | why
		return
	}
	if len(d.pending)+len(d.delayed) >= d.max {
		d.dropLocked()
		return
	}
	d.pushLocked(string(key), why, time.Now().UnixNano())
}

func (d *dirtySet) pushLocked(k string, why uint8, since int64) {
	d.pending[k] = why
	d.peak = max(d.peak, len(d.pending)+len(d.inflight))
	if d.head > 1024 && d.head*2 > len(d.queue) {
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue, d.head = d.queue[:n], 0
	}
	d.queue = append(d.queue, queued{key: k, since: since})
}

func (d *dirtySet) dropLocked() {
	d.pending = make(map[string]uint8)
	d.delayed = make(map[string]queued)
	d.queue, d.head = nil, 0
	d.overflow = true
	select {
	case d.overflowed <- struct{}{}:
	default:
	}
}

func (d *dirtySet) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Take waits until keys are pending (or ctx is done: it returns nil) and
// hands out at most max of them, marking them in flight.
func (d *dirtySet) Take(ctx context.Context, max int) *batch {
	for {
		if b := d.TryTake(max); b != nil {
			return b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
	}
}

// WaitPending waits until keys are pending, without taking them (false:
// ctx is done). A worker waits so before it takes room for a request
// (run.go): room held while idle would starve the writes of other links.
func (d *dirtySet) WaitPending(ctx context.Context) bool {
	for {
		d.mu.Lock()
		pending := d.head < len(d.queue)
		d.mu.Unlock()
		if pending {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-d.wake:
		}
	}
}

// TryTake is Take without waiting: nil when no key is pending.
func (d *dirtySet) TryTake(max int) *batch {
	d.mu.Lock()
	if d.head >= len(d.queue) {
		d.mu.Unlock()
		return nil
	}
	n := min(max, len(d.queue)-d.head)
	b := &batch{keys: make([]string, n), whys: make([]uint8, n), since: make([]int64, n)}
	for i, q := range d.queue[d.head : d.head+n] {
		b.keys[i], b.since[i] = q.key, q.since
		b.whys[i] = d.pending[q.key]
		delete(d.pending, q.key)
		d.inflight[q.key] = 0
	}
	clear(d.queue[d.head : d.head+n])
	d.head += n
	more := d.head < len(d.queue)
	d.mu.Unlock()
	if more {
		d.signal() // let another worker take the rest
	}
	return b
}

// Done ends the flight of b's keys. A key that changed meanwhile is queued
// again after hotDelay; with retry, every key is queued again at once
// (the copy failed; the worker backs off), keeping why and since.
func (d *dirtySet) Done(b *batch, retry bool) {
	requeued := false
	var hot []string
	now := time.Now().UnixNano()
	d.mu.Lock()
	for i, k := range b.keys {
		again := d.inflight[k]
		delete(d.inflight, k)
		since := now
		wait := hotDelay
		switch {
		case retry:
			again |= b.whys[i]
			since = b.since[i]
		case b.later != nil && b.later[i] > 0 && again == 0:
			// Failed alone: tried again on its own after its delay (a
			// change meanwhile is tried after hotDelay as usual).
			again, since, wait = b.whys[i], b.since[i], b.later[i]
		}
		if again == 0 {
			continue
		}
		if f, ok := d.pending[k]; ok {
			d.pending[k] = f | again
			continue
		}
		if len(d.pending)+len(d.delayed) >= d.max {
			d.dropLocked()
			continue
		}
		switch {
		case retry:
			d.pushLocked(k, again, since)
			requeued = true
		case wait == hotDelay:
			d.delayed[k] = queued{since: since, why: again}
			hot = append(hot, k)
		default:
			d.delayed[k] = queued{since: since, why: again, retry: true}
			time.AfterFunc(wait, func() { d.release([]string{k}) })
		}
	}
	d.shrinkLocked()
	d.mu.Unlock()
	if requeued {
		d.signal()
	}
	if len(hot) > 0 {
		time.AfterFunc(hotDelay, func() { d.release(hot) })
	}
}

// shrinkPeak: once the set is empty after holding more keys than this,
// its maps are made anew. Go maps never shrink: a link idle after a burst
// of a million keys would keep their room, and a process of hundreds of
// links the room of every burst.
const shrinkPeak = 256

func (d *dirtySet) shrinkLocked() {
	if d.peak <= shrinkPeak || len(d.pending)+len(d.inflight)+len(d.delayed) > 0 {
		return
	}
	d.pending, d.inflight, d.delayed = make(map[string]uint8), make(map[string]uint8), make(map[string]queued)
	d.queue, d.head, d.peak = nil, 0, 0
}

// release queues delayed keys whose delay is over.
func (d *dirtySet) release(keys []string) {
	d.mu.Lock()
	for _, k := range keys {
		q, ok := d.delayed[k]
		if !ok {
			continue // dropped by an overflow meanwhile
		}
		delete(d.delayed, k)
		d.pushLocked(k, q.why, q.since)
	}
	d.mu.Unlock()
	d.signal()
}

// Has says whether key is waiting, in flight or delayed.
func (d *dirtySet) Has(key []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, p := d.pending[string(key)]
	_, f := d.inflight[string(key)]
	_, w := d.delayed[string(key)]
	return p || f || w
}

// Room is how many more keys can wait before the set overflows.
func (d *dirtySet) Room() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.max - len(d.pending) - len(d.delayed)
}

// Len is the number of keys waiting (not counting those in flight).
func (d *dirtySet) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending) + len(d.delayed)
}

// Idle says whether nothing is waiting or in flight.
func (d *dirtySet) Idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending) == 0 && len(d.inflight) == 0 && len(d.delayed) == 0
}

// TakeOverflow reports whether keys were dropped since the last call.
func (d *dirtySet) TakeOverflow() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.overflow
	d.overflow = false
	return o
}
