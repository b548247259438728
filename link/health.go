package link

import (
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
)

// Health (docs/ARCHITECTURE.md, "Health"): a link must never go silent,
// and proves it without writing into the namespaces it replicates.
//
//   - Local events are proved to flow, end to end: every canaryEvery the
//     link writes a short-lived canary key (cfg.CanaryKey, outside every
//     namespace) and expects its keyspace event within canaryTimeout on the
//     same connection as the namespace's events (a second pattern of that
//     connection: subscribe.go). This needs no CONFIG, and proves the
//     notification setting, the connection and the subscription.
//   - The hub's stream holds one pattern (Webdis subscribes one per
//     stream), the namespace's: it is proved by what arrives on it, the
//     keepalive published to it when it has been idle included
//     (subscribe.go), and the hub's notification setting by reading it
//     (CONFIG GET notify-keyspace-events) every canaryEvery.
//   - When a proof fails the side has lapsed: notifications are enabled
//     again where allowed, a resync is asked for (events were lost), and
//     the lapse is reported (log, /status, /healthz, /metrics).
//   - Each side is asked PING every probeEvery, with probeTimeout: a hung
//     side (a stopped Webdis, nginx or Redis) is noticed within seconds, not
//     when a request times out. When it answers again, a resync follows.

// healthy says whether no side has lapsed or stopped answering, and no
// local reset is kept.
func (l *Link) healthy() bool {
	if l.reset.active() {
		return false
	}
	for _, s := range []*side{l.local, l.remote} {
		h := &s.health
		h.mu.Lock()
		bad := h.lapsed || h.down || h.streamDead
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

// canarySeen is called when side s's events are proved to flow: the
// canary's event arrived, or the hub's notification setting reads right.
func (l *Link) canarySeen(s *side) {
	h := &s.health
	h.mu.Lock()
	h.unseen, h.lastProof = time.Time{}, time.Now()
	recovered := h.lapsed
	h.lapsed = false
	h.mu.Unlock()
	if recovered {
		l.log.Info().Str("side", s.id.String()).Msg("keyspace events flow again: resyncing")
		l.requestResync(false)
	}
}

// streamBroken marks side s's subscription broken (a lapse: events are
// lost until it is made again); streamMade marks it made again.
func (l *Link) streamBroken(s *side) {
	h := &s.health
	h.mu.Lock()
	if !h.streamDead && h.listened {
		h.streamDead = true
		h.lapses++
		l.Stats.EventLapses.Add(1)
	}
	h.mu.Unlock()
}

func (l *Link) streamMade(s *side, withCanary bool) {
	h := &s.health
	h.mu.Lock()
	// A canary written before the stream was made proves nothing of it.
	h.streamDead, h.canary, h.unseen = false, withCanary, time.Time{}
	h.mu.Unlock()
}

// provedWithin says whether a canary's event of side s arrived within d:
// its subscription delivers.
func (l *Link) provedWithin(s *side, d time.Duration) bool {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.lastProof.IsZero() && time.Since(h.lastProof) < d
}

// proveLoop marks side s listened to and calls prove every canaryEvery
// (its tick counted from 1) until ctx is done, after deleting the canary
// key an older link left in the namespace there.
func (l *Link) proveLoop(ctx context.Context, s *side, prove func(tick int)) {
	h := &s.health
	h.mu.Lock()
	h.listened = true
	h.mu.Unlock()
	t := time.NewTicker(canaryEvery)
	defer t.Stop()
	legacyGone := false
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !legacyGone {
			legacyGone = l.dropLegacyCanary(ctx, s)
		}
		prove(tick)
	}
}

// canaryLoop writes the local canary key and checks that its events come.
func (l *Link) canaryLoop(ctx context.Context) {
	l.proveLoop(ctx, l.local, func(tick int) { l.canaryTick(ctx, l.local, tick) })
}

// canaryTick checks that the event of the canary written last on side s
// came, and writes it again.
func (l *Link) canaryTick(ctx context.Context, s *side, tick int) {
	h := &s.health
	h.mu.Lock()
	refusedChannel := h.channelRefused != ""
	overdue := !refusedChannel && !h.unseen.IsZero() && time.Since(h.unseen) > canaryTimeout && !h.lapsed && !h.down
	if overdue {
		h.lapsed = true
		h.lapses++
	}
	stillLapsed := h.lapsed && !overdue
	since := h.unseen
	h.mu.Unlock()
	switch {
	case overdue:
		l.lapsed(ctx, s, fmt.Errorf("%s: no keyspace event for the canary written %v ago: notifications are off there, or the subscription is dead; events are being lost",
			s.id, time.Since(since).Round(time.Millisecond)))
	case stillLapsed && tick%lapsedRetryTicks == 0:
		// Without events, only resyncs bring changes over: one every
		// lapsedRetryTicks canaries, and another try at enabling them.
		_ = l.enableNotifications(ctx, s)
		l.requestResync(false)
	}
	if refusedChannel {
		return // its event could not arrive: nothing to prove
	}
	wctx, cancel := context.WithTimeout(ctx, probeTimeout)
	_, err := s.st.Doer().Do(wctx, []byte("SET"), s.canary, []byte(time.Now().Format(time.RFC3339Nano)), []byte("PX"), []byte(canaryTTLms))
	cancel()
	h.mu.Lock()
	switch {
	case err == nil:
		l.Stats.CanaryWrites[s.id].Add(1)
		h.unproven = ""
		if h.unseen.IsZero() {
			h.unseen = time.Now()
		}
	case answered(err) && h.unproven == "":
		h.unproven = "the canary key cannot be written: " + err.Error()
		l.log.Warn().Str("side", s.id.String()).Str("canary_key", fmt.Sprintf("%q", s.canary)).Err(err).
			Msg("cannot prove that keyspace events flow (the canary key is refused); allow SET on canary_key to have lapses noticed")
	}
	h.mu.Unlock()
}

// canaryRefused records that the canary's channel cannot be subscribed to
// on side s (an ACL without it): its events cannot be proved.
func (l *Link) canaryRefused(s *side, err error) {
	h := &s.health
	h.mu.Lock()
	first := h.channelRefused == ""
	h.channelRefused = "the canary key's channel cannot be subscribed to: " + err.Error()
	h.unseen = time.Time{}
	h.mu.Unlock()
	if first {
		l.log.Warn().Str("side", s.id.String()).Str("canary_key", fmt.Sprintf("%q", s.canary)).Err(err).
			Msg("cannot prove that keyspace events flow (the canary's keyspace channel is refused); allow it to have lapses noticed")
	}
}

// canaryAllowed records that the canary's channel is subscribed to on
// side s (again).
func (l *Link) canaryAllowed(s *side) {
	h := &s.health
	h.mu.Lock()
	h.channelRefused = ""
	h.mu.Unlock()
}

// remoteProofLoop proves the hub's events (direction both): by the hub's
// canary where its stream carries the canary's pattern (behind the
// gateway); else its stream is watched by its subscription (subscribe.go) and here, every
// canaryEvery, the hub's notification setting is read: a setting without
// the classes the link needs is a lapse.
func (l *Link) remoteProofLoop(ctx context.Context) {
	s := l.remote
	l.proveLoop(ctx, s, func(tick int) {
		h := &s.health
		h.mu.Lock()
		canary := h.canary
		h.mu.Unlock()
		if canary {
			l.canaryTick(ctx, s, tick)
		} else {
			l.settingTick(ctx, tick)
		}
	})
}

// settingTick reads the hub's notification setting: a lapse if it lacks
// what the link needs, a proof if not.
func (l *Link) settingTick(ctx context.Context, tick int) {
	s := l.remote
	h := &s.health
	gctx, cancel := context.WithTimeout(ctx, probeTimeout)
	flags, err := l.hubNotifySetting(gctx)
	cancel()
	switch {
	case err != nil && answered(err):
		h.mu.Lock()
		first := h.unproven == ""
		h.unproven = "the hub's notify-keyspace-events cannot be read: " + err.Error()
		h.mu.Unlock()
		if first {
			l.log.Warn().Str("side", s.id.String()).Err(err).
				Msg("cannot check the hub's keyspace notifications (CONFIG GET notify-keyspace-events is refused): a lapse of them goes unnoticed; allow it")
		}
	case err != nil:
		// Not answering: the probe reports it.
	case mergeFlags(flags, notifyFlags) != flags:
		h.mu.Lock()
		h.unproven = ""
		first := !h.lapsed && !h.down
		if first {
			h.lapsed = true
			h.lapses++
		}
		h.mu.Unlock()
		switch {
		case first:
			l.lapsed(ctx, s, fmt.Errorf("%s: no keyspace event is published there: notify-keyspace-events is %q, without %s; events are being lost",
				s.id, flags, notifyFlags))
		case tick%lapsedRetryTicks == 0:
			_ = l.enableNotifications(ctx, s)
			l.requestResync(false)
		}
	default:
		h.mu.Lock()
		h.unproven = ""
		h.mu.Unlock()
		l.canarySeen(s)
	}
}

// hubNotifySetting is the hub's notify-keyspace-events, read once for the
// links of a shared hub (hubs.go).
func (l *Link) hubNotifySetting(ctx context.Context) (string, error) {
	return l.shared.notifySetting(ctx, l.client)
}

// dropLegacyCanary deletes the canary key older links wrote in the
// namespace of side s (store.LegacyCanaryKey), if it is there, and says
// whether that is done.
func (l *Link) dropLegacyCanary(ctx context.Context, s *side) bool {
	do, key := s.st.Doer(), store.LegacyCanaryKey(s.st.Prefix)
	dctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	n, err := redis.Int(do.Do(dctx, []byte("EXISTS"), key))
	if err != nil || n == 0 {
		return err == nil || answered(err)
	}
	if _, err := do.Do(dctx, []byte("DEL"), key); err != nil {
		return answered(err)
	}
	l.log.Info().Str("side", s.id.String()).Msg("deleted the canary key an older redisrepl left in the namespace")
	return true
}

// lapsed handles a side whose events were found not to flow, for the
// reason err.
func (l *Link) lapsed(ctx context.Context, s *side, err error) {
	l.Stats.EventLapses.Add(1)
	l.fail(err, "events")
	l.setState(Degraded)
	if err := l.enableNotifications(ctx, s); err != nil {
		l.fail(err, "enable notifications")
	}
	l.requestResync(false)
}

// probeLoop asks side s PING every probeEvery; a link built by Hubs
// follows the probes it shares instead (hubs.go).
func (l *Link) probeLoop(ctx context.Context, s *side) {
	if p := l.shared.probe(s.id); p != nil {
		l.follow(ctx, s, p)
		return
	}
	do := s.st.Doer()
	if s.id == RemoteSide {
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
func (l *Link) probed(s *side, err error, took time.Duration) {
	if err != nil && answered(err) {
		err = nil // it answered: PING is refused, not the side down
	}
	h := &s.health
	h.mu.Lock()
	was := h.down
	h.down = err != nil
	h.mu.Unlock()
	switch {
	case err != nil && !was:
		l.fail(fmt.Errorf("%s does not answer (PING, %v): %w", s.id, took.Round(time.Millisecond), err), "probe")
		l.setState(Degraded)
	case err == nil && was:
		l.log.Info().Str("side", s.id.String()).Msg("answers again: resyncing")
		l.requestResync(false)
	}
}

// enableNotifications turns on the keyspace events the link needs on side
// s, locally on a fresh connection of its own (a pooled one may be stale
// after a restart of Redis). A connection error is returned as it is; a
// refusal as a *notifyError saying what to set.
func (l *Link) enableNotifications(ctx context.Context, s *side) error {
	if s.id == RemoteSide {
		return EnableNotifications(ctx, l.client, s.st.Name)
	}
	c, err := l.pool.Addr().Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return EnableNotifications(ctx, connDoer{c}, s.st.Name)
}
