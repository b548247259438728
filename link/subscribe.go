package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// pingEvery is how often an idle subscription is checked.
const pingEvery = 5 * time.Second

// readLocalEvents reads one subscription of the local Redis, on a
// connection of its own.
func (l *Link) readLocalEvents(ctx context.Context, s *side, bo *backoff) error {
	if err := l.enableNotifications(ctx, s); err != nil {
		if sideWide(err) && !answered(err) {
			return err // not a refusal: Redis is not there (yet)
		}
		// A refusal is not fatal: notifications may be on already (the
		// canary tells), and resyncs still converge. Say what to do.
		l.fail(err, "enable notifications")
	}
	conn, err := l.pool.DialFollowing(ctx) // ends at a failover of a Sentinel-managed Redis
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	pattern := append(append([]byte{}, s.channel...), store.MatchPattern(s.st.Prefix)...)
	psc := redis.PubSubConn{Conn: conn}
	if err := psc.PSubscribe(pattern); err != nil {
		return fmt.Errorf("%s: psubscribe: %w", s.st.Name, err)
	}
	// The canary key lives outside the namespace; its pattern goes on this
	// same connection, so that its events prove this connection
	// (health.go). A command of its own: an ACL refusing its channel must
	// not refuse the namespace's.
	if err := psc.PSubscribe(append(append([]byte{}, s.channel...), store.GlobEscape(s.canary)...)); err != nil {
		return fmt.Errorf("%s: psubscribe: %w", s.st.Name, err)
	}
	replies := 0 // of the two PSUBSCRIBEs: the namespace's, then the canary's
	// A dead connection is found by pings answered (as Pong) on the same
	// stream; redigo allows one writer beside the reader.
	pinger := time.NewTicker(pingEvery)
	defer pinger.Stop()
	done := make(chan struct{})
	defer close(done) // the pinger ends with this connection
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-pinger.C:
				if l.provedWithin(s, pingEvery) {
					continue // the canary's event came on this stream: it is alive
				}
				if psc.Ping("") != nil {
					return
				}
			}
		}
	}()
	subscribed := false
	for {
		kind, ch, err := receiveEvent(conn, 3*pingEvery)
		var refusal redis.Error
		if errors.As(err, &refusal) && replies < 2 {
			replies++
			if replies == 1 {
				return fmt.Errorf("%s: psubscribe: %w", s.st.Name, err)
			}
			l.canaryRefused(s, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: events: %w", s.st.Name, err)
		}
		switch kind {
		case "pmessage":
			l.event(s, ch, nil)
		case "psubscribe":
			if replies++; replies == 2 {
				l.canaryAllowed(s)
			}
			if !subscribed {
				subscribed = true
				l.streamMade(s, true)
				s.echoes.reset() // marks sent before are lost
				bo.reset()
				l.log.Info().Str("pattern", string(pattern)).Msg("subscribed to local events")
				l.requestResync(false)
			}
		}
	}
}

// receiveEvent reads one reply of a subscribed connection: its kind
// ("pmessage", "psubscribe", "pong", ...) and, for a message, its channel.
// It does what redigo's PubSubConn.Receive does without its
// reflection-based Scan and string copies, which cost more than the rest
// of an event's path (the channel is the reply's own bytes).
func receiveEvent(c redis.Conn, timeout time.Duration) (kind string, channel []byte, err error) {
	reply, err := redis.ReceiveWithTimeout(c, timeout)
	if err != nil {
		return "", nil, err
	}
	vs, ok := reply.([]any)
	if !ok || len(vs) == 0 {
		return "", nil, fmt.Errorf("unexpected reply %T on a subscribed connection", reply)
	}
	k, ok := vs[0].([]byte)
	if !ok {
		return "", nil, fmt.Errorf("unexpected reply kind %T on a subscribed connection", vs[0])
	}
	switch string(k) {
	case "pmessage":
		if len(vs) != 4 {
			return "", nil, fmt.Errorf("a pmessage of %d fields", len(vs))
		}
		ch, ok := vs[2].([]byte)
		if !ok {
			return "", nil, fmt.Errorf("a pmessage whose channel is %T", vs[2])
		}
		return "pmessage", ch, nil
	case "psubscribe":
		return "psubscribe", nil, nil
	case "pong":
		return "pong", nil, nil
	}
	return string(k), nil, nil
}

// keepaliveEvery: a hub stream idle this long gets a message on the
// keepalive channel (dedup.KeepaliveMark after the namespace), so that the
// stream is never idle for long (proxies close idle streams) and a dead
// stream is noticed. It is a message on a channel of the namespace's
// pattern (Webdis takes one pattern per stream), never a key: the only
// thing a subscriber of the namespace sees from an idle link.
const keepaliveEvery = 3 * time.Second

// streamStallAfter: a remote stream silent this long (no keepalive, no
// event) is taken for dead and reconnected: with keepaliveEvery, a dead
// stream is noticed within about 10 s.
const streamStallAfter = 8 * time.Second

// readRemoteEvents reads one stream of the hub's events. A hub that says
// it takes several patterns per stream (the gateway:
// webdis.SeveralPatternsHeader) gets the hub canary key's pattern beside
// the namespace's, and is proved by its canary; any other (Webdis) gets the
// namespace's alone, and is proved by the keepalive and its notification
// setting (health.go). Two patterns are never sent to a hub that did not
// say so: Webdis answers them without a status line, which nginx passes on.
func (l *Link) readRemoteEvents(ctx context.Context, s *side, bo *backoff) error {
	if err := l.enableNotifications(ctx, s); err != nil {
		if sideWide(err) && !answered(err) {
			return err // the hub does not answer: retried with backoff
		}
		// The hub may refuse CONFIG (a managed Redis, a Webdis ACL) and
		// still have notifications on (the canary tells): say what to do
		// and go on.
		l.fail(err, "enable remote notifications")
	}
	for {
		withCanary := s.several.Load() && !s.noCanary.Load()
		made, err := l.remoteStream(ctx, s, bo, withCanary)
		switch {
		case errors.Is(err, errSeveralPatterns):
			continue // made again at once, with the canary's pattern
		case withCanary && !made && webdis.KindOf(err) == webdis.KindForbidden:
			s.noCanary.Store(true)
			l.log.Warn().Err(err).Str("canary_key", fmt.Sprintf("%q", s.canary)).
				Msg("the hub refuses the canary key's channel: its stream is proved by a keepalive while idle instead")
			continue
		}
		return err
	}
}

// errSeveralPatterns ends a stream of one pattern on a hub that takes
// several: it is made again with the canary's.
var errSeveralPatterns = errors.New("the hub takes several patterns per stream")

// remoteStream reads a stream of the hub's events until it ends: of the
// namespace's pattern, and withCanary of the hub canary key's too. It says
// whether the stream was made (every pattern confirmed).
func (l *Link) remoteStream(ctx context.Context, s *side, bo *backoff, withCanary bool) (made bool, err error) {
	pattern := append(append([]byte{}, s.channel...), store.MatchPattern(s.st.Prefix)...)
	patterns := [][]byte{pattern}
	if withCanary {
		patterns = append(patterns, append(append([]byte{}, s.channel...), store.GlobEscape(s.canary)...))
	}
	keepalive := append(append([]byte{}, s.channel...), s.keepalive...)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var last atomic.Int64 // unix ns of the last message
	last.Store(time.Now().UnixNano())
	stalled := make(chan struct{})
	// The keepalive publishes to the link's own channel, so that the stream
	// is never idle (proxies close idle streams), unless a message came
	// within keepaliveEvery: the stream is busy already. Each PUBLISH has a
	// deadline, and the stall check runs apart from it: a hung hub must not
	// hide a hung stream.
	go func() {
		// Checked twice per keepaliveEvery: a stream is never idle much
		// longer than keepaliveEvery, well within streamStallAfter.
		t := time.NewTicker(keepaliveEvery / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, last.Load())) < keepaliveEvery {
				continue // the stream is busy
			}
			pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
			_, _ = l.client.Do(pctx, []byte("PUBLISH"), keepalive, []byte("1"))
			pcancel()
		}
	}()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, last.Load())) > streamStallAfter {
				close(stalled)
				cancel()
				return
			}
		}
	}()
	upgrade := false
	err = l.client.Stream(ctx, patterns, s.st.ValuesRequest(), func(info webdis.StreamInfo) {
		if info.Several && !withCanary && !s.noCanary.Load() {
			s.several.Store(true)
			upgrade = true
			cancel()
			return
		}
		made = true
		l.streamMade(s, withCanary)
		bo.reset()
		s.echoes.reset() // marks sent before are lost
		l.log.Info().Str("pattern", string(pattern)).Msg("subscribed to remote events")
		l.requestResync(false)
	}, func(e webdis.Event) {
		last.Store(time.Now().UnixNano())
		l.event(s, e.Channel, e.Value)
	})
	if upgrade {
		return false, errSeveralPatterns
	}
	if made && (ctx.Err() == nil || isClosed(stalled)) {
		l.streamBroken(s)
	}
	select {
	case <-stalled:
		return made, fmt.Errorf("%s: no event, not even the link's keepalive, for %v: reconnecting", s.st.Name, streamStallAfter)
	default:
	}
	if err == nil && ctx.Err() == nil {
		err = fmt.Errorf("%s: event stream ended", s.st.Name)
	}
	return made, err
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// subscribe reads side s's keyspace events of the namespace into the dirty
// set, reconnecting with backoff until ctx is done. It does nothing slow
// per event: Redis drops a subscriber that falls behind.
//
// Every (re)subscription asks for a resync: whatever changed while no one
// listened (including before the link started) is found by comparison.
func (l *Link) subscribe(ctx context.Context, s *side) {
	bo := newBackoff()
	for ctx.Err() == nil {
		err := l.readEvents(ctx, s, bo)
		if ctx.Err() != nil {
			return
		}
		l.fail(err, s.id.String()+" events")
		l.setState(Degraded)
		if !sleepCtx(ctx, bo.next()) {
			return
		}
	}
}

// readEvents reads one subscription of side s until it breaks.
func (l *Link) readEvents(ctx context.Context, s *side, bo *backoff) error {
	if s.id == RemoteSide {
		return l.readRemoteEvents(ctx, s, bo)
	}
	err := l.readLocalEvents(ctx, s, bo)
	if ctx.Err() == nil {
		// The hub's stream tells whether it was made (remoteStream).
		l.streamBroken(s)
	}
	return err
}

// event handles a message of side s's subscription on channel ch: the
// proof of its canary, a write mark or the keepalive (never replicated), or
// a key of the namespace that changed, with the state the event carried
// (value: values on the hub's stream, store/carried.go; nil for none).
func (l *Link) event(s *side, ch []byte, value any) {
	if len(ch) < len(s.channel) {
		return
	}
	key := ch[len(s.channel):]
	switch {
	case bytes.Equal(key, s.canary):
		l.canarySeen(s)
	case store.IsStaging(s.st.Prefix, key) || s.keepalive != nil && bytes.Equal(key, s.keepalive):
		if t, ok := store.ParseWriteMark(s.st.Prefix, key); ok {
			s.echoes.release(t)
		}
	default:
		s.events.Add(1)
		var carried *store.State
		if value != nil {
			if st, ok := s.st.ParseValue(key, value); ok {
				carried = &st
			}
		}
		if !s.echoes.admit(key, carried) {
			l.Stats.EchoesDropped.Add(1)
			return
		}
		l.dirty.Add(key, s.id.changed())
	}
}
