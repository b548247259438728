// Package link is one replication link: the namespace of a local Redis kept
// equal to the same namespace of a remote Redis reached through Webdis.
// docs/ARCHITECTURE.md describes the whole path; in short, a change travels
// through:
//
//	subscribe.go  keyspace events → the dirty set (dirty.go), never blocking
//	sync.go       workers (link.go) take dirty keys in batches, read them,
//	              decide what to copy (dedup.Decide in direction both) and
//	              copy it
//	link/store    one side's whole-key reads and atomic writes
//
// resync.go compares both namespaces (store.Compare) after anything that may
// have lost events (start, reconnect, overflow, a restarted or flushed side)
// and marks what differs dirty, so the same workers repair it. notify.go
// turns keyspace notifications on; runids.go and syncstate.go keep what
// direction both must remember across restarts.
package link

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// State is where a link stands.
type State string

const (
	Starting  State = "starting"  // created, not yet resynced
	Resyncing State = "resyncing" // comparing both sides after a gap
	Live      State = "live"      // replicating events as they come
	Degraded  State = "degraded"  // an error met; retrying with backoff
	Stopped   State = "stopped"   // Run returned
)

// shutdownGrace is how long writes in flight may take to finish after the
// link is asked to stop.
const shutdownGrace = 10 * time.Second

// Link replicates one namespace. Create it with New, run it with Run.
type Link struct {
	cfg    config.Link
	log    zerolog.Logger
	pool   *store.Pool    // to the local Redis
	client *webdis.Client // to the hub, through Webdis
	// The two sides (side.go), and what they share: the dirty set, the
	// synced states, the policy (cfg).
	local, remote *side
	dirty         *dirtySet
	synced        *dedup.Table
	Stats         Stats

	standing standing    // where the link stands, the last error met
	rs       resyncState // resyncs asked for and done (resync.go)
	work     work        // the workers' shared state
	reset    localReset  // a kept local reset (direction push)
	persist  syncPersist // the sync state's files (syncstate.go)
	shared   shared      // with the other links of a Hubs (hubs.go); zero for a link of its own
}

// work is what the workers of a link share.
type work struct {
	takeMu  sync.Mutex // one worker at a time waits for keys (worker)
	pace    pace       // the workers' backoff after a failed write
	retries keyRetries // keys that failed alone (keyerrors.go)
}

// standing is where a link stands, and the last error it met.
type standing struct {
	state atomic.Value // a State

	mu      sync.Mutex
	lastErr string
	errAt   time.Time
}

func (s *standing) lastError() (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.errAt
}

// New checks cfg (settings left zero take config's defaults) and loads its
// certificates; it contacts nothing. The link has a Webdis client of its
// own: links that share a hub are built by Hubs.New (hubs.go).
func New(cfg config.Link, log zerolog.Logger) (*Link, error) { return newLink(cfg, log, nil) }

func newLink(cfg config.Link, log zerolog.Logger, hubs *Hubs) (*Link, error) {
	cfg = cfg.WithDefaults()
	if strings.HasPrefix(cfg.CanaryKey, cfg.Namespace) {
		return nil, fmt.Errorf("link %q: canary key %q lies in the namespace %q: it must be outside every replicated namespace", cfg.Name, cfg.CanaryKey, cfg.Namespace)
	}
	l := &Link{
		cfg:    cfg,
		log:    log.With().Str("link", cfg.Name).Logger(),
		Stats:  newStats(),
		dirty:  newDirtySet(cfg.MaxDirtyKeys),
		synced: dedup.New(syncedCap(cfg.Direction)),
		rs:     resyncState{req: make(chan struct{}, 1), flushSuspect: make(chan struct{}, 1)},
	}
	if err := l.lockState(); err != nil {
		return nil, err
	}
	sides, err := l.openSides(hubs)
	if err != nil {
		l.persist.lock.Unlock()
		return nil, err
	}
	l.pool, l.client = sides.Pool, sides.Client
	l.local = newSide(LocalSide, sides.Local, cfg.LocalDB, []byte(cfg.CanaryKey), &l.Stats)
	l.remote = newSide(RemoteSide, sides.Remote, cfg.RemoteDB, []byte(dedup.HubCanaryPrefix(cfg.Namespace)+cfg.Name), &l.Stats)
	l.remote.st.OnFallback = l.reportFallback
	l.standing.state.Store(Starting)
	return l, nil
}

// both says whether the link copies in both directions.
func (l *Link) both() bool { return l.cfg.Direction == config.Both }

// syncedCap bounds the dedup table. Push needs it only to skip no-op
// writes; direction both needs an entry for every key to keep deletes from
// being resurrected, so it holds ten times more (about 96 bytes plus the
// key each: 10M keys of 20 bytes is about 1 GB).
func syncedCap(d config.Direction) int {
	if d == config.Both {
		return 10_000_000
	}
	return 1_000_000
}

// Name is the link's name.
func (l *Link) Name() string { return l.cfg.Name }

// State is where the link stands.
func (l *Link) State() State { return l.standing.state.Load().(State) }

// LastError is the last error the link met, "" if none.
func (l *Link) LastError() string {
	e, _ := l.standing.lastError()
	return e
}

// Idle says whether no key is waiting or being copied.
func (l *Link) Idle() bool { return l.dirty.Idle() }

// Pending is the number of dirty keys waiting.
func (l *Link) Pending() int { return l.dirty.Len() }

func (l *Link) setState(s State) {
	if old := l.standing.state.Swap(s); old != s {
		l.log.Info().Str("from", string(old.(State))).Str("to", string(s)).Msg("link state")
	}
}

// fail reports an error: counted, logged (its message cut to logErrMax:
// messages can hold key names of any length), and kept as LastError.
func (l *Link) fail(err error, what string) {
	l.noteErr(err, what)
	ev := l.log.Error().Str("error", truncate(err.Error(), logErrMax)).Str("op", what)
	if k := webdis.KindOf(err); k != webdis.KindUnknown {
		ev = ev.Str("kind", k.String())
	}
	ev.Msg("replication error")
}

// noteErr counts err and keeps it as LastError, without logging it.
func (l *Link) noteErr(err error, what string) {
	l.Stats.Errors.Add(1)
	l.standing.mu.Lock()
	l.standing.lastErr, l.standing.errAt = what+": "+truncate(err.Error(), logErrMax), time.Now()
	l.standing.mu.Unlock()
}

// requestResync asks for a full comparison of both sides. With forget, a
// side lost its data (it was flushed): the states last synced no longer say
// who changed what (see runids.go).
func (l *Link) requestResync(forget bool) {
	if forget {
		l.rs.forget.Store(true)
	}
	select {
	case l.rs.req <- struct{}{}:
	default:
	}
}

// Resync asks for a comparison of both sides now (as after any gap).
func (l *Link) Resync() { l.requestResync(false) }

// Run replicates until ctx is done, then lets the writes in flight finish
// (up to shutdownGrace) and returns nil. It returns an error only when the
// link cannot run at all.
func (l *Link) Run(ctx context.Context) error {
	defer l.persist.lock.Unlock()
	defer l.closeClient()
	defer l.pool.Close()
	l.log.Info().Str("local", l.cfg.LocalRedacted()).Str("remote", l.client.URL()).
		Str("namespace", fmt.Sprintf("%q", l.cfg.Namespace)).Str("direction", string(l.cfg.Direction)).Msg("link starting")

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
	if l.both() {
		l.loadSyncState()
	} else {
		l.loadLocalReset()
	}
	run(func() { l.subscribe(ctx, l.local) })
	if l.both() {
		run(func() { l.subscribe(ctx, l.remote) })
		run(func() { l.saveSyncStateLoop(ctx) })
	}
	run(func() { l.resyncLoop(ctx) })
	run(func() { l.watchRemote(ctx) })
	run(func() { l.canaryLoop(ctx) })
	run(func() { l.probeLoop(ctx, l.local) })
	run(func() { l.probeLoop(ctx, l.remote) })
	if l.both() {
		run(func() { l.remoteProofLoop(ctx) })
	}
	for range l.cfg.Workers {
		run(func() { l.worker(ctx, opCtx) })
	}
	wg.Wait()
	if l.both() {
		l.closeSyncState()
	}
	l.setState(Stopped)
	l.log.Info().Msg("link stopped")
	return nil
}

// worker copies batches of dirty keys until ctx is done. It takes room in
// the client's window of requests in flight (webdis/window.go) before it
// takes keys, reads and decides them (prepare), and sends their writes
// (commit) without waiting for the reply: a key that becomes dirty while
// writes are on their way goes out at once in another request, and waits
// only while the window is full, gathering the keys behind it into a
// bigger batch. Keys of batches in flight differ: a key is in flight until
// its batch is done (dirty.go).
func (l *Link) worker(ctx, opCtx context.Context) {
	var writes sync.WaitGroup
	defer writes.Wait()
	for {
		if !l.work.pace.wait(ctx) {
			return
		}
		room, b := l.takeWork(ctx)
		if b == nil {
			return
		}
		direct, read := b, (*batch)(nil)
		if l.both() {
			direct, read = l.splitByRead(b)
		}
		if direct != nil {
			if !l.send(ctx, opCtx, room, direct, &writes, false) {
				if read != nil {
					l.dirty.Done(read, true)
				}
				return
			}
			room = nil
		}
		if read == nil {
			continue
		}
		// Its remote read is a round trip: it runs beside the worker,
		// which goes on taking keys.
		if room == nil {
			if room = l.client.TakeRoom(ctx); room == nil {
				l.dirty.Done(read, true)
				return
			}
		}
		if !l.send(ctx, opCtx, room, read, &writes, true) {
			return
		}
	}
}

// send reads and decides b (prepare) and writes it (commit) in the room
// taken for it, the write beside the worker (with async, the read too).
// false: ctx is done, b is handed back.
func (l *Link) send(ctx, opCtx context.Context, room *webdis.Room, b *batch, writes *sync.WaitGroup, async bool) bool {
	if !l.shared.hub.takeBatch(ctx) {
		room.Release()
		l.dirty.Done(b, true)
		return false
	}
	run := func(p *plan, err error) {
		if err == nil {
			err = l.commit(opCtx, p)
		}
		l.shared.hub.batchDone()
		room.Release()
		l.settle(opCtx, b, err)
	}
	writes.Add(1)
	if async {
		go func() {
			defer writes.Done()
			run(l.prepare(opCtx, b))
		}()
		return true
	}
	p, err := l.prepare(opCtx, b)
	if err == nil && !room.Grow(ctx, p.size()) {
		writes.Done()
		l.shared.hub.batchDone()
		room.Release()
		l.dirty.Done(b, true)
		return false
	}
	if err != nil {
		defer writes.Done()
		run(nil, err)
		return true
	}
	go func() {
		defer writes.Done()
		run(p, nil)
	}()
	return true
}

// takeWork waits for dirty keys, then for room for a request, then takes
// the keys (nil batch: ctx is done). One worker of the link waits at a
// time (takeMu), and none holds room while it waits for keys: the room of
// a Client shared by many links must go to the links that have work.
func (l *Link) takeWork(ctx context.Context) (*webdis.Room, *batch) {
	l.work.takeMu.Lock()
	defer l.work.takeMu.Unlock()
	for l.dirty.WaitPending(ctx) {
		// While the window is full the keys pile up: the request that
		// gets the next room carries more of them (congestedBatch), so
		// that what a window carries per round trip grows with the
		// backlog, not only with the number of requests in flight.
		n := l.cfg.BatchKeys
		if l.client.Full() {
			n *= congestedBatch
		}
		room := l.client.TakeRoom(ctx)
		if room == nil {
			return nil, nil
		}
		if b := l.dirty.TryTake(n); b != nil {
			return room, b
		}
		room.Release() // taken meanwhile (a resync's keys went another way)
	}
	return nil, nil
}

// congestedBatch is how many times batch_keys a worker takes when it had
// to wait for room: the reads stay bounded by max_batch_bytes (Deferred
// keys), the requests by max_request_bytes.
const congestedBatch = 4

// settle ends the copy of batch b whose outcome is err: a batch that failed
// for a reason other than its side is copied key by key (one bad key must
// not hold up the others), failures are reported and back the workers off.
func (l *Link) settle(opCtx context.Context, b *batch, err error) {
	if err != nil && !sideWide(err) {
		// Maybe one key's fault: the others must go through.
		err = l.isolate(opCtx, b)
	} else if err == nil {
		l.work.retries.ok(b.keys)
	}
	l.dirty.Done(b, err != nil)
	if err != nil {
		l.fail(err, "copy")
		l.setState(Degraded)
		l.work.pace.failed()
		return
	}
	if l.work.pace.ok() {
		// The first success after failures: events may have been lost
		// meanwhile (Redis drops them for nobody), so compare all.
		l.requestResync(false)
	}
}

// pace holds the workers of a link back after a failed write, with
// capped exponential backoff: writes run apart from their workers, so the
// pause is the link's, not a worker's.
type pace struct {
	mu    sync.Mutex
	bo    *backoff
	until time.Time
}

func (p *pace) failed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bo == nil {
		p.bo = newBackoff()
	}
	p.until = time.Now().Add(p.bo.next())
}

// ok reports a success, and whether failures came before it.
func (p *pace) ok() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bo == nil {
		return false
	}
	p.until = time.Time{}
	return p.bo.reset()
}

// wait waits out the pause, if any (false: ctx is done).
func (p *pace) wait(ctx context.Context) bool {
	p.mu.Lock()
	d := time.Until(p.until)
	p.mu.Unlock()
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepCtx(ctx, d)
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
