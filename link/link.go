// Package link is one replication link: the namespace of a local Redis kept
// equal to the same namespace of a remote Redis reached through Webdis.
//
// A change travels through three files:
//
//	subscribe.go  keyspace events → the dirty set (dirty.go), never blocking
//	sync.go       workers (link.go) take dirty keys in batches, decide what
//	              to copy (dedup.Decide in direction both) and copy it
//	store.go      whole-key reads and atomic writes, by Lua scripts (scripts.go)
//
// resync.go and compare.go compare both namespaces after anything that may
// have lost events (start, reconnect, overflow, a restarted or flushed side)
// and mark what differs dirty, so the same workers repair it. bigkey.go
// copies and digests keys too big for one request; plain.go stands in for
// the scripts when the hub refuses EVAL; runids.go and syncstate.go keep what
// direction both must remember across restarts.
package link

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/webdis"
)

// ttlTolerance is how far apart (ms) two absolute expiry times may be and
// still count as the same TTL: they are computed from each side's clock.
const ttlTolerance = 1000

// maxBatchBytes bounds the values one worker holds at a time.
const maxBatchBytes = 4 << 20

// shutdownGrace is how long writes in flight may take to finish after the
// link is asked to stop.
const shutdownGrace = 10 * time.Second

// Link replicates one namespace. Create it with New, run it with Run.
type Link struct {
	cfg    config.Link
	log    zerolog.Logger
	pool   *Pool
	client *webdis.Client
	local  *Store
	remote *Store
	dirty  *dirtySet
	synced *dedup.Table

	resyncReq      chan struct{}
	resyncForget   atomic.Bool  // the resync requested must forget the synced states
	runIDs         runIDs       // of both Redis servers, as the last resync saw them
	bar            io.Writer    // where resyncs draw a progress bar; nil = none
	lastResyncKeys int          // keys the last resync compared: the next one's expected total
	state          atomic.Value // string: see State
	Stats          Stats

	resyncs      resyncInfo
	savedChanges uint64 // synced.Changes() when the sync state was last saved

	errMu   sync.Mutex
	lastErr string
	errAt   time.Time
}

// New checks cfg and loads its certificates; it contacts nothing.
func New(cfg config.Link, log zerolog.Logger) (*Link, error) {
	local, remote, pool, client, err := newStores(cfg, max(cfg.Workers, 1)+2)
	if err != nil {
		return nil, err
	}
	l := &Link{
		cfg:       cfg,
		log:       log.With().Str("link", cfg.Name).Logger(),
		pool:      pool,
		client:    client,
		local:     local,
		Stats:     newStats(),
		remote:    remote,
		dirty:     newDirtySet(cfg.MaxDirtyKeys),
		synced:    dedup.New(syncedCap(cfg.Direction)),
		resyncReq: make(chan struct{}, 1),
	}
	l.remote.Do = timedDoer{client, l.Stats.RemoteLatency, &l.Stats.RemoteRequests}
	l.remote.OnFallback = l.reportFallback
	l.state.Store("starting")
	return l, nil
}

// direction is "push" or "both".
func (l *Link) direction() string {
	if l.cfg.Direction == "both" {
		return "both"
	}
	return "push"
}

// syncedCap bounds the dedup table. Push needs it only to skip no-op
// writes; direction both needs an entry for every key to keep deletes from
// being resurrected, so it holds ten times more (about 75 bytes plus the
// key each: 10M keys of 20 bytes is about 1 GB).
func syncedCap(direction string) int {
	if direction == "both" {
		return 10_000_000
	}
	return 1_000_000
}

// Name is the link's name.
func (l *Link) Name() string { return l.cfg.Name }

// State is one of starting, connecting, resyncing, live, degraded, stopped.
func (l *Link) State() string { return l.state.Load().(string) }

// LastError is the last error the link met, "" if none.
func (l *Link) LastError() string {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.lastErr
}

// Idle says whether no key is waiting or being copied.
func (l *Link) Idle() bool { return l.dirty.Idle() }

// Pending is the number of dirty keys waiting.
func (l *Link) Pending() int { return l.dirty.Len() }

func (l *Link) setState(s string) {
	if old := l.state.Swap(s); old != s {
		l.log.Info().Str("from", old.(string)).Str("to", s).Msg("link state")
	}
}

func (l *Link) fail(err error, what string) {
	l.Stats.Errors.Add(1)
	l.errMu.Lock()
	l.lastErr, l.errAt = what+": "+err.Error(), time.Now()
	l.errMu.Unlock()
	ev := l.log.Error().Err(err).Str("op", what)
	if k := webdis.KindOf(err); k != webdis.KindUnknown {
		ev = ev.Str("kind", k.String())
	}
	ev.Msg("replication error")
}

// requestResync asks for a full comparison of both sides. With forget, a
// side lost its data (it was flushed): the states last synced no longer say
// who changed what (see runids.go).
func (l *Link) requestResync(forget bool) {
	if forget {
		l.resyncForget.Store(true)
	}
	select {
	case l.resyncReq <- struct{}{}:
	default:
	}
}

// Run replicates until ctx is done, then lets the writes in flight finish
// (up to shutdownGrace) and returns nil. It returns an error only when the
// link cannot run at all.
func (l *Link) Run(ctx context.Context) error {
	defer l.client.Close()
	defer l.pool.Close()
	l.log.Info().Str("local", l.cfg.LocalRedacted()).Str("remote", l.client.URL()).
		Str("namespace", fmt.Sprintf("%q", l.cfg.Namespace)).Str("direction", l.cfg.Direction).Msg("link starting")

	// Writes in flight get their own context, cancelled shutdownGrace after
	// ctx, so that stopping does not cut a request in half without need.
	opCtx, cancelOps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOps()
	stopOps := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownGrace, cancelOps) })
	defer stopOps()

	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	if l.direction() == "both" {
		l.loadSyncState()
	}
	run(func() { l.subscribeLocal(ctx) })
	if l.direction() == "both" {
		run(func() { l.subscribeRemote(ctx) })
		run(func() { l.saveSyncStateLoop(ctx) })
	}
	run(func() { l.resyncLoop(ctx) })
	run(func() { l.watchRemote(ctx) })
	for range max(l.cfg.Workers, 1) {
		run(func() { l.worker(ctx, opCtx) })
	}
	wg.Wait()
	if l.direction() == "both" {
		l.saveSyncState()
	}
	l.setState("stopped")
	l.log.Info().Msg("link stopped")
	return nil
}

// worker copies batches of dirty keys until ctx is done.
func (l *Link) worker(ctx, opCtx context.Context) {
	bo := newBackoff()
	for {
		b := l.dirty.Take(ctx, max(l.cfg.BatchKeys, 1))
		if b == nil {
			return
		}
		err := l.copyBatch(opCtx, b)
		l.dirty.Done(b, err != nil)
		if err != nil {
			l.fail(err, "copy")
			l.setState("degraded")
			if !sleepCtx(ctx, bo.next()) {
				return
			}
			continue
		}
		if bo.reset() {
			// The first success after failures: events may have been lost
			// meanwhile (Redis drops them for nobody), so compare all.
			l.requestResync(false)
		}
	}
}

func (l *Link) maxValue() int64 {
	if l.cfg.MaxValueBytes > 0 {
		return l.cfg.MaxValueBytes
	}
	return 512 << 20
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
