package link

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/webdis"
)

// shutdownGrace is how long writes in flight may take to finish after the
// link is asked to stop.
const shutdownGrace = 10 * time.Second

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

// New is link.New for a link that shares its hub with the other links of
// hs. The link holds its hub from now until its Run returns: build only
// links that will run.
func (hs *Hubs) New(cfg config.Link, log zerolog.Logger) (*Link, error) {
	return newLink(cfg, log, hs)
}
