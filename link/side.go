package link

import (
	"bytes"
	"context"
	"sync/atomic"

	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link/store"
)

// The two sides of a link (docs/ARCHITECTURE.md, "Sides"). A link holds
// one side value for each: what it knows and does of that side alone (its
// store, its events, their proof, its counters, its name in logs and
// metrics). What the sides share (the dirty set, the synced table, the
// policy) is the link's. Code that differs by side asks the side's id, a
// Side, never a flag or a string.

// Side names one side of a link.
type Side int

const (
	LocalSide Side = iota
	RemoteSide
)

// String is the side's name in logs, metrics and /status.
func (s Side) String() string {
	if s == RemoteSide {
		return "remote"
	}
	return "local"
}

// changed is the reason a key is dirty when this side reports it.
func (s Side) changed() uint8 {
	if s == RemoteSide {
		return changedRemote
	}
	return changedLocal
}

// side is one side of a link.
type side struct {
	id      Side
	st      *store.Store // the namespace there
	db      int          // the database its keyspace events are of
	channel []byte       // dedup.KeyspaceChannel(db): what every event's channel starts with
	health  sideHealth   // events proved, probes answered (health.go)
	echoes  *echoFilter  // events of marked writes not yet confirmed (echoes.go)

	// The proof that events flow, outside every namespace (health.go): the
	// canary key, and on the hub the keepalive channel of an idle stream
	// (nil on the local side).
	canary, keepalive []byte

	// The hub's stream (subscribe.go): it said it takes several patterns
	// per stream (the gateway), and it refused the canary's pattern.
	several, noCanary atomic.Bool

	events      *atomic.Int64 // the link's Stats: keyspace events read from this side
	keys, bytes *atomic.Int64 // the link's Stats: keys and value bytes written on this side
}

// newSide is side id of a link with the counters of stats.
func newSide(id Side, st *store.Store, db int, canary []byte, stats *Stats) *side {
	s := &side{id: id, st: st, db: db, channel: []byte(dedup.KeyspaceChannel(db)), echoes: newEchoFilter(), canary: canary}
	if id == RemoteSide {
		s.keepalive = append(append([]byte{}, st.Prefix...), dedup.KeepaliveMark...)
		s.events, s.keys, s.bytes = &stats.EventsRemote, &stats.KeysToRemote, &stats.BytesToRemote
	} else {
		s.events, s.keys, s.bytes = &stats.EventsLocal, &stats.KeysToLocal, &stats.BytesToLocal
	}
	return s
}

// side is the link's side s.
func (l *Link) side(s Side) *side {
	if s == RemoteSide {
		return l.remote
	}
	return l.local
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
// a key of the namespace that changed.
func (l *Link) event(s *side, ch []byte) {
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
		if s.echoes.drop(key) {
			l.Stats.EchoesDropped.Add(1)
			return
		}
		l.dirty.Add(key, s.id.changed())
	}
}
