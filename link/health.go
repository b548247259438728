package link

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// Health (docs/ARCHITECTURE.md, "Health"): a link must never go silent.
//
//   - Events are proved to flow, end to end: every canaryEvery the link
//     writes a short-lived canary key (store.CanaryKey, never replicated) on
//     each side it listens to, and expects its keyspace event back on its own
//     subscription within canaryTimeout. This needs no CONFIG, and proves the
//     notification setting, the pattern, the connection and, on the hub, the
//     whole stream. When the proof fails the side has lapsed: notifications
//     are enabled again where allowed, a resync is asked for (events were
//     lost), and the lapse is reported (log, /status, /healthz, /metrics).
//   - Each side is asked PING every probeEvery, with probeTimeout: a hung
//     side (a stopped Webdis, nginx or Redis) is noticed within seconds, not
//     when a request times out. When it answers again, a resync follows.

const (
	canaryEvery   = 2 * time.Second
	canaryTimeout = 3500 * time.Millisecond
	canaryTTLms   = "30000"
	probeEvery    = 2 * time.Second
	probeTimeout  = 4 * time.Second

	// lapsedRetryTicks: while a side's events lapse, every this many
	// canaries (30 s) the link resyncs and tries to enable them again.
	lapsedRetryTicks = 15
)

// Side names one side of a link.
type Side int

const (
	LocalSide Side = iota
	RemoteSide
)

func (s Side) String() string {
	if s == RemoteSide {
		return "remote"
	}
	return "local"
}

// sideHealth is what the link knows of one side's liveness.
type sideHealth struct {
	mu        sync.Mutex
	listened  bool      // the link subscribes to this side's events
	unseen    time.Time // a canary written and its event not seen yet; zero if none
	lastProof time.Time // when a canary's event last arrived
	lapsed    bool      // events do not flow
	lapses    int64
	down      bool   // the side does not answer the probe
	unproven  string // why the canary cannot be written; "" if it can
}

// SideStatus is what /status shows of one side.
type SideStatus struct {
	Side          string    `json:"side"`
	Answering     bool      `json:"answering"`
	EventsFlowing *bool     `json:"events_flowing,omitempty"` // nil: not listened to, or not provable
	LastProof     time.Time `json:"last_event_proof,omitzero"`
	Lapses        int64     `json:"event_lapses"`
	Unproven      string    `json:"events_unproven,omitempty"`
}

func (h *sideHealth) status(s Side) SideStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := SideStatus{Side: s.String(), Answering: !h.down, LastProof: h.lastProof, Lapses: h.lapses, Unproven: h.unproven}
	if h.listened && h.unproven == "" {
		ok := !h.lapsed
		st.EventsFlowing = &ok
	}
	return st
}

// healthy says whether no side has lapsed or stopped answering, and no
// local reset is kept.
func (l *Link) healthy() bool {
	if l.reset.active() {
		return false
	}
	for i := range l.health {
		h := &l.health[i]
		h.mu.Lock()
		bad := h.lapsed || h.down
		h.mu.Unlock()
		if bad {
			return false
		}
	}
	return true
}

// setLive makes the link live, or degraded while a side is unhealthy.
func (l *Link) setLive() {
	if l.healthy() {
		l.setState(Live)
	} else {
		l.setState(Degraded)
	}
}

// canarySeen is called by a subscriber when the canary's event arrives.
func (l *Link) canarySeen(s Side) {
	h := &l.health[s]
	h.mu.Lock()
	h.unseen, h.lastProof = time.Time{}, time.Now()
	recovered := h.lapsed
	h.lapsed = false
	h.mu.Unlock()
	if recovered {
		l.log.Info().Str("side", s.String()).Msg("keyspace events flow again: resyncing")
		l.requestResync(false)
	}
}

// provedWithin says whether a canary's event of side s arrived within d:
// its subscription delivers.
func (l *Link) provedWithin(s Side, d time.Duration) bool {
	h := &l.health[s]
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.lastProof.IsZero() && time.Since(h.lastProof) < d
}

// canaryLoop writes the canary on side s and checks that its events come.
func (l *Link) canaryLoop(ctx context.Context, s Side) {
	h := &l.health[s]
	h.mu.Lock()
	h.listened = true
	h.mu.Unlock()
	st, key := l.local, store.CanaryKey(l.local.Prefix)
	if s == RemoteSide {
		st = l.remote
	}
	t := time.NewTicker(canaryEvery)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		overdue := !h.unseen.IsZero() && time.Since(h.unseen) > canaryTimeout && !h.lapsed && !h.down
		if overdue {
			h.lapsed = true
			h.lapses++
		}
		stillLapsed := h.lapsed && !overdue
		since := h.unseen
		h.mu.Unlock()
		switch {
		case overdue:
			l.lapsed(ctx, s, since)
		case stillLapsed && tick%lapsedRetryTicks == 0:
			// Without events, only resyncs bring changes over: one every
			// lapsedRetryTicks canaries, and another try at enabling them.
			_ = l.enableNotifications(ctx, s)
			l.requestResync(false)
		}
		wctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err := st.Doer().Do(wctx, []byte("SET"), key, []byte(time.Now().Format(time.RFC3339Nano)), []byte("PX"), []byte(canaryTTLms))
		cancel()
		h.mu.Lock()
		switch {
		case err == nil:
			l.Stats.CanaryWrites[s].Add(1)
			h.unproven = ""
			if h.unseen.IsZero() {
				h.unseen = time.Now()
			}
		case refused(err) && h.unproven == "":
			h.unproven = "the canary key cannot be written: " + err.Error()
			l.log.Warn().Str("side", s.String()).Err(err).
				Msg("cannot prove that keyspace events flow (the canary key is refused); allow SET on the namespace to have lapses noticed")
		}
		h.mu.Unlock()
	}
}

// lapsed handles a side whose canary event did not come.
func (l *Link) lapsed(ctx context.Context, s Side, since time.Time) {
	l.Stats.EventLapses.Add(1)
	l.fail(fmt.Errorf("%s: no keyspace event for the canary written %v ago: notifications are off there, or the subscription is dead; events are being lost",
		s, time.Since(since).Round(time.Millisecond)), "events")
	l.setState(Degraded)
	if err := l.enableNotifications(ctx, s); err != nil {
		l.fail(err, "enable notifications")
	}
	l.requestResync(false)
}

// probeLoop asks side s PING every probeEvery; a link built by Hubs
// follows the probes it shares instead (hubs.go).
func (l *Link) probeLoop(ctx context.Context, s Side) {
	switch {
	case s == RemoteSide && l.hub != nil:
		l.follow(ctx, s, &l.hub.probe)
		return
	case s == LocalSide && l.localProbe != nil:
		l.follow(ctx, s, &l.localProbe.probe)
		return
	}
	do := l.local.Doer()
	if s == RemoteSide {
		do = l.client // unmeasured: the probe is not replication traffic
	}
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		start := time.Now()
		_, err := do.Do(pctx, []byte("PING"))
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.probed(s, err, time.Since(start))
	}
}

// probed handles the outcome of a PING of side s that took took.
func (l *Link) probed(s Side, err error, took time.Duration) {
	if err != nil && refused(err) {
		err = nil // it answered: PING is refused, not the side down
	}
	h := &l.health[s]
	h.mu.Lock()
	was := h.down
	h.down = err != nil
	h.mu.Unlock()
	switch {
	case err != nil && !was:
		l.fail(fmt.Errorf("%s does not answer (PING, %v): %w", s, took.Round(time.Millisecond), err), "probe")
		l.setState(Degraded)
	case err == nil && was:
		l.log.Info().Str("side", s.String()).Msg("answers again: resyncing")
		l.requestResync(false)
	}
}

// refused says whether err is the side refusing a command (an ACL, a
// renamed command, Webdis's ACL), as opposed to not answering.
func refused(err error) bool {
	var re redis.Error
	return errors.As(err, &re) || webdis.KindOf(err) == webdis.KindForbidden
}

// connDoer runs commands on one connection of its own.
type connDoer struct{ c redis.Conn }

func (d connDoer) Do(ctx context.Context, args ...[]byte) (any, error) {
	rest := make([]any, len(args)-1)
	for i, a := range args[1:] {
		rest[i] = a
	}
	return redis.DoContext(d.c, ctx, string(args[0]), rest...)
}

// enableNotifications turns on the keyspace events the link needs on side
// s, locally on a fresh connection of its own (a pooled one may be stale
// after a restart of Redis). A connection error is returned as it is; a
// refusal as a *notifyError saying what to set.
func (l *Link) enableNotifications(ctx context.Context, s Side) error {
	if s == RemoteSide {
		return EnableNotifications(ctx, l.client, l.remote.Name)
	}
	c, err := l.pool.Addr().Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return EnableNotifications(ctx, connDoer{c}, l.local.Name)
}
