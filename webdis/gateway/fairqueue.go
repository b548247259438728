package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The fair queue to the hub (docs/ARCHITECTURE.md, "The hub gateway").
// Redis serves its connections in turn, a command of each ready one per
// turn of its event loop: a request of one tenant waits behind one command
// of every connection that has one. So the requests in flight to the hub
// are bounded per tenant (max_requests, by default an eighth of the total)
// and in all (max_total_requests); past them a request waits in its own
// tenant's queue, and a freed slot goes to the tenants that wait in turn,
// not to the longest queue. A tenant flooding the hub with slow commands
// thus holds at most max_requests of the hub's turns, and another tenant's
// request is next in line whatever the flood's length.

// fairQueue hands out the slots of requests in flight to the hub.
type fairQueue struct {
	mu     sync.Mutex
	total  int // max_total_requests
	used   int
	queues map[string]*tenantQueue // by tenant name, across reloads
	ring   []*tenantQueue          // the queues that have waiters, served in turn
	next   int

	queued *prometheus.CounterVec // tenant
	inUse  *prometheus.GaugeVec   // tenant
}

// tenantQueue is one tenant's slots and waiters.
type tenantQueue struct {
	name    string
	max     int // the tenant's max_requests
	used    int
	waiters []*waiter
	queued  prometheus.Counter
	inUse   prometheus.Gauge
}

type waiter struct {
	ch      chan struct{}
	granted bool
}

func newFairQueue(total int, reg *prometheus.Registry) *fairQueue {
	q := &fairQueue{total: total, queues: map[string]*tenantQueue{}}
	q.queued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redisrepl_gateway_queued_requests_total",
		Help: "Requests that waited for a slot to the hub (past the tenant's max_requests or max_total_requests).",
	}, []string{"tenant"})
	q.inUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "redisrepl_gateway_requests_in_flight", Help: "Requests of the tenant being run on the hub.",
	}, []string{"tenant"})
	reg.MustRegister(q.queued, q.inUse)
	return q
}

// tenant is the queue of the tenant of that name, allowed max slots.
func (q *fairQueue) tenant(name string, max int) *tenantQueue {
	q.mu.Lock()
	defer q.mu.Unlock()
	tq, ok := q.queues[name]
	if !ok {
		tq = &tenantQueue{name: name, queued: q.queued.WithLabelValues(name), inUse: q.inUse.WithLabelValues(name)}
		q.queues[name] = tq
	}
	tq.max = max
	q.dispatch() // a raised max may serve waiters
	return tq
}

// acquire takes a slot for tq, waiting up to wait in tq's queue. ok is
// false when the wait ran out or ctx ended.
func (q *fairQueue) acquire(ctx context.Context, tq *tenantQueue, wait time.Duration) bool {
	q.mu.Lock()
	if len(tq.waiters) == 0 && tq.used < tq.max && q.used < q.total {
		q.take(tq)
		q.mu.Unlock()
		return true
	}
	w := &waiter{ch: make(chan struct{})}
	if len(tq.waiters) == 0 {
		q.ring = append(q.ring, tq)
	}
	tq.waiters = append(tq.waiters, w)
	tq.queued.Inc()
	q.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-w.ch:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted {
		return true
	}
	for i, x := range tq.waiters {
		if x == w {
			tq.waiters = append(tq.waiters[:i], tq.waiters[i+1:]...)
			break
		}
	}
	if len(tq.waiters) == 0 {
		q.leaveRing(tq)
	}
	return false
}

// release gives back a slot of tq.
func (q *fairQueue) release(tq *tenantQueue) {
	q.mu.Lock()
	q.used--
	tq.used--
	tq.inUse.Dec()
	q.dispatch()
	q.mu.Unlock()
}

func (q *fairQueue) take(tq *tenantQueue) {
	q.used++
	tq.used++
	tq.inUse.Inc()
}

// dispatch grants free slots to waiters, one tenant after the other.
func (q *fairQueue) dispatch() {
	for q.used < q.total && len(q.ring) > 0 {
		granted := false
		for range len(q.ring) {
			q.next %= len(q.ring)
			tq := q.ring[q.next]
			if tq.used >= tq.max {
				q.next++
				continue
			}
			w := tq.waiters[0]
			tq.waiters = tq.waiters[1:]
			w.granted = true
			close(w.ch)
			q.take(tq)
			granted = true
			if len(tq.waiters) == 0 {
				q.leaveRing(tq) // the next tenant moves to q.next
			} else {
				q.next++
			}
			break
		}
		if !granted {
			return
		}
	}
}

func (q *fairQueue) leaveRing(tq *tenantQueue) {
	for i, x := range q.ring {
		if x == tq {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			if i < q.next {
				q.next--
			}
			return
		}
	}
}
