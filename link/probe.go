package link

import (
	"context"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
)

// connDoer runs commands on one connection of its own.
type connDoer struct{ c redis.Conn }

func (d connDoer) Do(ctx context.Context, args ...[]byte) (any, error) {
	rest := make([]any, len(args)-1)
	for i, a := range args[1:] {
		rest[i] = a
	}
	return redis.DoContext(d.c, ctx, string(args[0]), rest...)
}

// ping asks do PING within probeTimeout.
func ping(ctx context.Context, do store.Doer) probeResult {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	start := time.Now()
	_, err := do.Do(pctx, []byte("PING"))
	return probeResult{err, time.Since(start)}
}

// probeResult is one PING of a side.
type probeResult struct {
	err  error
	took time.Duration
}

// bulletin holds the latest of a series of values and wakes its readers
// at each new one.
type bulletin[T any] struct {
	mu  sync.Mutex
	v   T
	set bool          // a value was posted
	c   chan struct{} // closed when v is replaced
}

func (b *bulletin[T]) init() { b.c = make(chan struct{}) }

func (b *bulletin[T]) post(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.v, b.set = v, true
	close(b.c)
	b.c = make(chan struct{})
}

// next is the latest value (ok: one was posted) and the channel closed by
// the post after it.
func (b *bulletin[T]) next() (v T, ok bool, c <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v, b.set, b.c
}

// prober posts the outcomes of a side's PING that change whether it
// answers: idle links wake only when their side goes down or comes back.
type prober struct {
	b    bulletin[probeResult]
	down bool
}

func (p *prober) init() { p.b.init() }

func (p *prober) probed(r probeResult) {
	if r.err != nil && answered(r.err) {
		r.err = nil // it answered: PING is refused, not the side down
	}
	if down := r.err != nil; down != p.down || !p.b.set {
		p.down = down
		p.b.post(r)
	}
}
