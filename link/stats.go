package link

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redisrepl/redisrepl/link/store"
)

// Histogram counts durations into fixed buckets, cheaply enough for the hot
// path; the service turns it into a Prometheus histogram at scrape time, so
// that this package does not depend on a metrics library.
type Histogram struct {
	Bounds []float64 // upper bounds in seconds, ascending
	counts []atomic.Uint64
	sumNs  atomic.Int64
	total  atomic.Uint64
}

// LatencyBounds are the buckets of lag and request latency histograms.
var LatencyBounds = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{Bounds: bounds, counts: make([]atomic.Uint64, len(bounds))}
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	for i, b := range h.Bounds {
		if s <= b {
			h.counts[i].Add(1)
			break
		}
	}
	h.sumNs.Add(int64(d))
	h.total.Add(1)
}

// Snapshot returns the cumulative count per bound, the total count and the
// sum in seconds.
func (h *Histogram) Snapshot() (cumulative []uint64, count uint64, sum float64) {
	cumulative = make([]uint64, len(h.Bounds))
	var c uint64
	for i := range h.counts {
		c += h.counts[i].Load()
		cumulative[i] = c
	}
	return cumulative, h.total.Load(), float64(h.sumNs.Load()) / 1e9
}

// Stats are a link's counters since it started.
type Stats struct {
	EventCounts
	CopyCounts
	ResyncCounts
	RemoteRequests atomic.Int64 // requests sent to the remote
	Errors         atomic.Int64

	Lag           *Histogram // from a key's change to its copy on the other side
	RemoteLatency *Histogram // of requests to the remote
}

// EventCounts count the keyspace events of both sides and their proof.
type EventCounts struct {
	EventsLocal   atomic.Int64    // keyspace events read from the local Redis
	EventsRemote  atomic.Int64    // keyspace events read from the remote (direction both)
	EchoesDropped atomic.Int64    // events of the link's own marked writes, dropped unread (echoes.go)
	ValuesUsed    atomic.Int64    // hub changes copied with the state their event carried, unread (echoes.go)
	EventLapses   atomic.Int64    // times a side's events stopped coming (see health.go)
	CanaryWrites  [2]atomic.Int64 // canary keys written, by Side (health.go): writes that are not replication
}

// CopyCounts count the keys copied.
type CopyCounts struct {
	KeysToRemote  atomic.Int64 // keys written on the remote (deletes included)
	KeysToLocal   atomic.Int64 // keys written on the local side (direction both)
	BytesToRemote atomic.Int64 // value bytes written on the remote
	BytesToLocal  atomic.Int64
	KeysSkipped   atomic.Int64 // dirty keys found already synced (echoes, no-ops)
	KeyErrors     atomic.Int64 // keys that failed alone (see keyerrors.go)
}

// ResyncCounts count the resyncs.
type ResyncCounts struct {
	Resyncs   atomic.Int64
	Repaired  atomic.Int64 // keys resyncs found different
	Overflows atomic.Int64 // times the dirty set overflowed (and was dropped for a resync)
}

func newStats() Stats {
	return Stats{Lag: newHistogram(LatencyBounds), RemoteLatency: newHistogram(LatencyBounds)}
}

// quantileMs estimates a quantile from the histogram's buckets (the upper
// bound of the bucket holding it), in ms; 0 when empty.
func quantileMs(h *Histogram, q float64) float64 {
	cum, n, _ := h.Snapshot()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	for i, c := range cum {
		if c >= rank {
			return h.Bounds[i] * 1000
		}
	}
	return h.Bounds[len(h.Bounds)-1] * 1000
}

// timedDoer measures the requests of a Doer.
type timedDoer struct {
	store.Doer
	h *Histogram
	n *atomic.Int64
}

func (t timedDoer) Do(ctx context.Context, args ...[]byte) (any, error) {
	start := time.Now()
	v, err := t.Doer.Do(ctx, args...)
	t.h.Observe(time.Since(start))
	t.n.Add(1)
	return v, err
}
