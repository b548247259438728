package link

import (
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
