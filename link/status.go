package link

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redisrepl/redisrepl/config"
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

// Status is what /status shows of a link.
type Status struct {
	Name       string           `json:"name"`
	State      State            `json:"state"`
	Direction  config.Direction `json:"direction"`
	LastError  string           `json:"last_error,omitempty"`
	ErrorAt    time.Time        `json:"last_error_at,omitzero"`
	DirtyKeys  int              `json:"dirty_keys"`
	SyncedKeys int              `json:"synced_keys"` // keys the dedup table remembers
	LagP50Ms   float64          `json:"lag_p50_ms"`
	LagP99Ms   float64          `json:"lag_p99_ms"`

	ResyncStatus
	Counts

	WritePath  store.Path        `json:"write_path"` // "eval" (atomic, batched) or "plain" (fallback)
	Sides      []SideStatus      `json:"sides"`
	LocalReset *LocalResetStatus `json:"local_reset,omitempty"`
}

// ResyncStatus is what /status shows of the last resync.
type ResyncStatus struct {
	LastResync         time.Time `json:"last_resync,omitzero"`
	LastResyncOutcome  string    `json:"last_resync_outcome,omitempty"`
	LastResyncDuration string    `json:"last_resync_duration,omitempty"`
}

// Counts are the link's Stats as /status shows them.
type Counts struct {
	EventsLocal  int64 `json:"events_local"`
	EventsRemote int64 `json:"events_remote"`
	KeysToRemote int64 `json:"keys_to_remote"`
	KeysToLocal  int64 `json:"keys_to_local"`
	KeysSkipped  int64 `json:"keys_skipped"`
	Requests     int64 `json:"remote_requests"`
	Errors       int64 `json:"errors"`
	KeyErrors    int64 `json:"key_errors"`
	Resyncs      int64 `json:"resyncs"`
	KeysRepaired int64 `json:"keys_repaired"`
	EventLapses  int64 `json:"event_lapses"`
}

// resyncInfo is the outcome of the last resync.
type resyncInfo struct {
	mu       sync.Mutex
	at       time.Time
	outcome  string
	duration time.Duration
}

func (r *resyncInfo) set(at time.Time, took time.Duration, outcome string) {
	r.mu.Lock()
	r.at, r.duration, r.outcome = at, took, outcome
	r.mu.Unlock()
}

func (r *resyncInfo) get() (at time.Time, outcome string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at, r.outcome, r.duration
}

// Status returns the link's current status.
func (l *Link) Status() Status {
	lastErr, errAt := l.standing.lastError()
	rat, rout, rdur := l.rs.last.get()
	s := &l.Stats
	st := Status{
		Name: l.cfg.Name, State: l.State(), Direction: l.cfg.Direction,
		LastError: lastErr, ErrorAt: errAt,
		DirtyKeys: l.dirty.Len(), SyncedKeys: l.synced.Len(),
		LagP50Ms: quantileMs(s.Lag, 0.5), LagP99Ms: quantileMs(s.Lag, 0.99),
		ResyncStatus: ResyncStatus{LastResync: rat, LastResyncOutcome: rout},
		Counts: Counts{
			EventsLocal: s.EventsLocal.Load(), EventsRemote: s.EventsRemote.Load(),
			KeysToRemote: s.KeysToRemote.Load(), KeysToLocal: s.KeysToLocal.Load(),
			KeysSkipped: s.KeysSkipped.Load(), Requests: s.RemoteRequests.Load(),
			Errors: s.Errors.Load(), KeyErrors: s.KeyErrors.Load(), Resyncs: s.Resyncs.Load(), KeysRepaired: s.Repaired.Load(),
			EventLapses: s.EventLapses.Load(),
		},
		WritePath:  l.remote.st.Path(),
		Sides:      []SideStatus{l.local.health.status(LocalSide), l.remote.health.status(RemoteSide)},
		LocalReset: l.reset.status(),
	}
	if !rat.IsZero() {
		st.LastResyncDuration = rdur.Round(time.Millisecond).String()
	}
	return st
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

// fallbackMsg is logged once when the remote refuses scripts.
const fallbackMsg = "the hub refuses scripts (EVAL): falling back to plain commands; " +
	"each key is still written atomically, but replication is slower, reads are not atomic, " +
	"streams are not replicated, and listing the namespace uses KEYS; /status shows write_path: plain"

// reportFallback is the remote Store's OnFallback: it says once, as a
// warning, that the link now uses plain commands, and why.
func (l *Link) reportFallback(err error) {
	l.log.Warn().Err(err).Str("write_path", store.PathPlain.String()).Msg(fallbackMsg)
}
