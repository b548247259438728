package webdis

import (
	"context"
	"sync"
)

// Requests in flight (docs/ARCHITECTURE.md, "The path of a change"). A
// writer that waits for a reply before it sends the next request makes
// every key behind it wait a round trip; a writer that sends without bound
// queues requests inside net/http for a connection, which is the same wait
// hidden. So a Client keeps a window: as many requests in flight as its
// transport carries at once (one per connection over HTTP/1.1, which does
// not pipeline; many streams on one connection over HTTP/2), and at most
// windowBytes of bodies. Writers take room before they take work: while
// the window is full, dirty keys pile up into the next, bigger batch
// instead of queueing. The number in flight then follows the round trip
// by itself: at a given rate, a longer round trip holds more requests open.
const (
	// h2Streams is the window over HTTP/2: nginx's
	// http2_max_concurrent_streams, 128 (Go's server takes 250). Past a
	// server's streams per connection net/http dials more connections,
	// each a handshake on the path of the requests that wait for it: a
	// window of 256 through nginx opened 211 connections in 5 s at 1,000
	// writes/s across 200 ms. Past 128 in flight, keys wait for room in
	// bigger batches.
	h2Streams = 128
	// windowBytes bounds the bodies in flight on one Client (a batch is
	// at most a request, max_request_bytes): the memory a WAN's round
	// trip may hold.
	windowBytes = 64 << 20
)

// window is a counting semaphore whose limit can change, with a byte
// budget beside it.
type window struct {
	mu           sync.Mutex
	n, limit     int
	bytes, bmax  int
	wake         chan struct{} // closed when room is given back
	multiplexing bool
}

func newWindow(limit int) *window {
	return &window{limit: limit, bmax: windowBytes, wake: make(chan struct{})}
}

// acquire waits for room for one more request (false: ctx is done).
func (w *window) acquire(ctx context.Context) bool {
	for {
		w.mu.Lock()
		if w.n < w.limit {
			w.n++
			w.mu.Unlock()
			return true
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

func (w *window) release(size int) {
	w.mu.Lock()
	w.n--
	w.bytes -= size
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// multiplexed raises the limit to h2Streams, once: the server spoke
// HTTP/2.
func (w *window) multiplexed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.multiplexing {
		return
	}
	w.multiplexing = true
	w.limit = max(w.limit, h2Streams)
	close(w.wake)
	w.wake = make(chan struct{})
}

// Room is room taken in a Client's window for one request in flight.
type Room struct {
	w    *window
	size int
}

// Full says whether every room of the Client's window is taken: a
// request now would wait for another's reply.
func (c *Client) Full() bool {
	c.win.mu.Lock()
	defer c.win.mu.Unlock()
	return c.win.n >= c.win.limit
}

// TakeRoom waits until the Client can carry one more request in flight
// without queueing it behind the others (nil: ctx is done). size is what
// its body holds, or 0 if not known yet (Grow). Give it back with Release
// once the reply is in.
func (c *Client) TakeRoom(ctx context.Context) *Room {
	if !c.win.acquire(ctx) {
		return nil
	}
	return &Room{w: c.win}
}

// Grow adds size bytes to the room, waiting while the Client's bodies in
// flight would pass their budget (false: ctx is done; the room is kept).
// A request larger than the whole budget still goes, alone.
func (r *Room) Grow(ctx context.Context, size int) bool {
	if size <= 0 {
		return true
	}
	w := r.w
	for {
		w.mu.Lock()
		if w.bytes == r.size || w.bytes+size <= w.bmax {
			w.bytes += size
			r.size += size
			w.mu.Unlock()
			return true
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

// Release gives the room back.
func (r *Room) Release() { r.w.release(r.size) }

// Multiplexed says whether the server answered over HTTP/2 (many
// requests share a connection).
func (c *Client) Multiplexed() bool {
	c.win.mu.Lock()
	defer c.win.mu.Unlock()
	return c.win.multiplexing
}
