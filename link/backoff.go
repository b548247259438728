package link

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// pace holds the workers of a link back after a failed write, with
// capped exponential backoff: writes run apart from their workers, so the
// pause is the link's, not a worker's.
type pace struct {
	mu    sync.Mutex
	bo    *backoff
	until time.Time
}

func (p *pace) failed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bo == nil {
		p.bo = newBackoff()
	}
	p.until = time.Now().Add(p.bo.next())
}

// ok reports a success, and whether failures came before it.
func (p *pace) ok() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bo == nil {
		return false
	}
	p.until = time.Time{}
	return p.bo.reset()
}

// wait waits out the pause, if any (false: ctx is done).
func (p *pace) wait(ctx context.Context) bool {
	p.mu.Lock()
	d := time.Until(p.until)
	p.mu.Unlock()
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepCtx(ctx, d)
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	d     time.Duration
	fails int
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 10 * time.Second
)

func newBackoff() *backoff { return &backoff{d: backoffMin} }

func (b *backoff) next() time.Duration {
	b.fails++
	d := b.d
	b.d = min(b.d*2, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// reset reports whether there had been failures.
func (b *backoff) reset() bool {
	had := b.fails > 0
	b.d, b.fails = backoffMin, 0
	return had
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
