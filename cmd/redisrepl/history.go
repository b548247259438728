package main

import (
	"context"
	"sync"
	"time"

	"github.com/redisrepl/redisrepl/link"
)

// The status page's recent history: every historyEvery, each running link's
// lag histogram and key counters are sampled, and the lag p99 and keys/s of
// that interval (not since the start, which would hide a lag that began a
// minute ago) are kept for the last historyLen intervals.
const (
	historyEvery = 5 * time.Second
	historyLen   = 120 // 10 minutes
)

// historyPoint is one interval of one link.
type historyPoint struct {
	At time.Time `json:"t"`
	// LagP99Ms is the p99 of the lag observed in the interval (the upper
	// bound of its bucket, as in /status), nil when no key was copied.
	LagP99Ms   *float64 `json:"lag_p99_ms"`
	KeysPerSec float64  `json:"keys_per_s"` // both directions
}

// linkSample is what a point is computed from: cumulative values.
type linkSample struct {
	at   time.Time
	lag  []uint64 // cumulative bucket counts
	n    uint64
	keys int64
	link *link.Link // a restarted link starts its counters again
}

// history is the ring of points per link name, and the last sample of each.
type history struct {
	mu     sync.Mutex
	points map[string][]historyPoint
	last   map[string]linkSample
}

func newHistory() *history {
	return &history{points: map[string][]historyPoint{}, last: map[string]linkSample{}}
}

// sample takes one sample of every running link of v at now; links no
// longer in v are forgotten.
func (h *history) sample(v serviceView, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for _, l := range v.links {
		name := l.cfg.Name
		seen[name] = true
		if l.r == nil {
			delete(h.last, name)
			continue
		}
		lk := l.r.link
		cum, n, _ := lk.Stats.Lag.Snapshot()
		cur := linkSample{at: now, lag: cum, n: n, keys: lk.Stats.KeysToRemote.Load() + lk.Stats.KeysToLocal.Load(), link: lk}
		prev, ok := h.last[name]
		h.last[name] = cur
		if !ok || prev.link != lk {
			continue
		}
		p := historyPoint{At: now, LagP99Ms: windowQuantileMs(lk.Stats.Lag.Bounds, prev.lag, cur.lag, cur.n-prev.n, 0.99)}
		if secs := now.Sub(prev.at).Seconds(); secs > 0 {
			p.KeysPerSec = float64(cur.keys-prev.keys) / secs
		}
		pts := append(h.points[name], p)
		if len(pts) > historyLen {
			pts = pts[len(pts)-historyLen:]
		}
		h.points[name] = pts
	}
	for name := range h.points {
		if !seen[name] {
			delete(h.points, name)
		}
	}
	for name := range h.last {
		if !seen[name] {
			delete(h.last, name)
		}
	}
}

// windowQuantileMs is the q-quantile, in ms, of the observations between
// two cumulative snapshots of a histogram: the upper bound of the bucket
// holding it, or the last bound for one beyond it); nil when there were
// none. n is the number of observations in between.
func windowQuantileMs(bounds []float64, before, after []uint64, n uint64, q float64) *float64 {
	if len(before) != len(after) || len(after) != len(bounds) || len(bounds) == 0 || n == 0 {
		return nil
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank == 0 {
		rank = 1
	}
	ms := bounds[len(bounds)-1] * 1000
	for i := range after {
		if after[i]-before[i] >= rank {
			ms = bounds[i] * 1000
			break
		}
	}
	return &ms
}

// snapshot is a copy of the points of every link.
func (h *history) snapshot() map[string][]historyPoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]historyPoint, len(h.points))
	for name, pts := range h.points {
		out[name] = append([]historyPoint(nil), pts...)
	}
	return out
}

// run samples s every historyEvery until ctx is done.
func (h *history) run(ctx context.Context, s *service) {
	h.sample(s.view(), time.Now())
	t := time.NewTicker(historyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.sample(s.view(), now)
		}
	}
}
