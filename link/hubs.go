package link

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// Many links in one process (docs/ARCHITECTURE.md, "Many links, one hub"):
// links built by the same Hubs whose hub is the same (its URL, and the
// contents of the certificate, key and CA files) share one *webdis.Client,
// so one bounded set of HTTPS connections, and the per-hub work of health:
// one PING probe and one run_id watch (INFO) per hub, whose results every
// link of the hub handles as its own probe's. The rest stays per link: its
// local pool and subscription, its canaries (they prove its own
// subscription), its workers, resyncs and flush probes (they sample its own
// synced keys). The PING probe of a local Redis is shared the same way by
// the links that reach it with the same address and credentials.

// HubConns bounds the HTTPS connections of requests to one hub shared by
// links: enough for a few links copying at full speed at once (a link uses
// up to workers+2, 10 by default), and well under what a hub's nginx
// accepts from a process running hundreds of links. Event streams
// (direction both) are not counted: each holds a connection of its own
// while open (webdis.Client.Subscribe).
const HubConns = 32

// remoteConns is the fewest connections a link of its own opens to its
// hub at most (they are dialled as needed): over HTTP/1.1, which carries
// one request per connection at a time, they bound the requests in
// flight, and across a WAN a rate of writes needs rate × round trip of
// them (docs/ARCHITECTURE.md, "The path of a change"). Over HTTP/2 one
// connection carries them all.
const remoteConns = 32

// Hubs is the set of hubs shared by the links it builds. Create it with
// NewHubs, build links with its New; a hub's client is closed when the last
// of its links stops (Run returns). The zero value is not usable.
type Hubs struct {
	// MaxConns bounds each hub's connections of requests; 0 means
	// HubConns. Set it before building links.
	MaxConns int

	mu     sync.Mutex
	hubs   map[string]*hub
	locals map[string]*localRedis
}

// NewHubs returns an empty set.
func NewHubs() *Hubs { return &Hubs{hubs: map[string]*hub{}, locals: map[string]*localRedis{}} }

// Clients is the number of hub clients open: one per distinct hub of the
// links running.
func (hs *Hubs) Clients() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.hubs)
}

// shared is what a link built by Hubs shares with the other links of its
// hub and of its local Redis; zero for a link of its own.
type shared struct {
	hub   *hub        // the hub of its client
	local *localRedis // the probe of its local Redis
}

// A link of its own differs from one built by Hubs only where these ask
// whether it shares (the zero shared: it does not).

// probe is the shared probe of side s, nil for a link of its own.
func (sh shared) probe(s Side) *prober {
	switch {
	case s == RemoteSide && sh.hub != nil:
		return &sh.hub.probe
	case s == LocalSide && sh.local != nil:
		return &sh.local.probe
	}
	return nil
}

// notifySetting is the hub's notify-keyspace-events: as the shared hub
// read it lately, or read now on c.
func (sh shared) notifySetting(ctx context.Context, c *webdis.Client) (string, error) {
	if sh.hub != nil {
		return sh.hub.notifySetting(ctx)
	}
	return notifySetting(ctx, c)
}

// watchedRunID is the hub's run_id as its shared watch read it last, or
// read now on c.
func (sh shared) watchedRunID(ctx context.Context, c *webdis.Client) (string, error) {
	if sh.hub != nil {
		return sh.hub.lastRunID()
	}
	return remoteRunID(ctx, c)
}

// hub is one shared client and the health work done once for its links.
type hub struct {
	hs     *Hubs
	key    string
	client *webdis.Client
	refs   int // links holding it; guarded by hs.mu
	stop   context.CancelFunc
	done   chan struct{}

	probe prober // the hub's PING
	runMu sync.Mutex
	runID string // the last run_id read, "" if the last INFO failed
	runEr error

	flush flushProbe // of the links running on it

	setting notifyCache // the hub's notify-keyspace-events

	// batches bounds the batches read and not yet written by all the
	// links of the hub: two per connection, so that every connection has
	// the next batch ready (a worker's pipeline), and memory is bounded by
	// the hub, not by the number of links (each batch holds at most
	// max_batch_bytes of values). Their workers outnumber its connections,
	// and each would otherwise hold a batch read while waiting for one.
	batches chan struct{}
}

// takeBatch waits for room for one more batch read and not yet written
// (false: ctx is done). A link of its own (nil hub) is bounded by its
// workers alone.
func (h *hub) takeBatch(ctx context.Context) bool {
	if h == nil {
		return true
	}
	select {
	case h.batches <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// batchDone gives back the room takeBatch took.
func (h *hub) batchDone() {
	if h != nil {
		<-h.batches
	}
}

// localRedis is the PING probe of a local Redis done once for the links
// of hs that reach it the same way (address, database, user, password,
// TLS files), on a connection of its own.
type localRedis struct {
	hs    *Hubs
	key   string
	pool  *store.Pool // of one connection
	refs  int         // guarded by hs.mu
	stop  context.CancelFunc
	done  chan struct{}
	probe prober
	flush flushProbe // of the links running on it
}

// acquireLocal returns the local probe of addr, starting it for the first
// link.
func (hs *Hubs) acquireLocal(addr store.RedisAddr) *localRedis {
	key := fmt.Sprintf("%q %d %q %q %v %q %q %q", addr.Addr, addr.DB, addr.User, addr.Password, addr.TLS, addr.CAFile, addr.CertFile, addr.KeyFile)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if lr := hs.locals[key]; lr != nil {
		lr.refs++
		return lr
	}
	ctx, stop := context.WithCancel(context.Background())
	lr := &localRedis{hs: hs, key: key, pool: store.NewPool(addr, 1), refs: 1, stop: stop, done: make(chan struct{})}
	lr.probe.init()
	hs.locals[key] = lr
	go func() {
		defer close(lr.done)
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		flush := time.NewTicker(flushProbeEvery)
		defer flush.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-flush.C:
				lr.flush.probe(ctx, LocalSide)
				continue
			case <-t.C:
			}
			r := ping(ctx, lr.pool)
			if ctx.Err() != nil {
				return
			}
			lr.probe.probed(r)
		}
	}()
	return lr
}

func (lr *localRedis) release() {
	if lr.hs.unref(&lr.refs, func() { delete(lr.hs.locals, lr.key) }) {
		lr.stop()
		<-lr.done
		lr.pool.Close()
	}
}

// unref drops one reference of a shared hub or local probe (refs, guarded
// by hs.mu); the last one also runs forget, which takes it out of hs, and
// says so: the caller then stops it, outside the lock.
func (hs *Hubs) unref(refs *int, forget func()) (last bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	*refs--
	if *refs > 0 {
		return false
	}
	forget()
	return true
}

// hubKey identifies a hub by its URL and the contents of the files the
// client loads: a link whose certificate was renewed in place gets a client
// of its own, with the new files, while links still on the old ones keep
// theirs.
func hubKey(cfg config.Link) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q\n", cfg.Remote)
	for _, f := range []string{cfg.Cert, cfg.Key, cfg.CA} {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("link %q: %w", cfg.Name, err)
		}
		fmt.Fprintf(h, "%d\n", len(data))
		h.Write(data)
	}
	return string(h.Sum(nil)), nil
}

// acquire returns the hub of cfg, opening it for the first link.
func (hs *Hubs) acquire(cfg config.Link) (*hub, error) {
	key, err := hubKey(cfg)
	if err != nil {
		return nil, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h := hs.hubs[key]; h != nil {
		h.refs++
		return h, nil
	}
	conns := hs.MaxConns
	if conns <= 0 {
		conns = HubConns
	}
	client, err := webdis.New(hubOptions(cfg, conns))
	if err != nil {
		return nil, fmt.Errorf("link %q: %w", cfg.Name, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &hub{hs: hs, key: key, client: client, refs: 1, stop: stop, done: make(chan struct{}), batches: make(chan struct{}, 2*conns)}
	h.probe.init()
	hs.hubs[key] = h
	go func() {
		defer close(h.done)
		h.watch(ctx)
	}()
	return h, nil
}

// release gives the hub back; the last link's release stops its watch and
// closes its client.
func (h *hub) release() {
	if h.hs.unref(&h.refs, func() { delete(h.hs.hubs, h.key) }) {
		h.stop()
		<-h.done
		h.client.Close()
	}
}

// watch probes the hub (PING every probeEvery, as a link's own probeLoop)
// and reads its run_id (INFO every flushProbeEvery, as watchRemote) until
// ctx is done.
func (h *hub) watch(ctx context.Context) {
	probe := time.NewTicker(probeEvery)
	defer probe.Stop()
	info := time.NewTicker(flushProbeEvery)
	defer info.Stop()
	h.readRunID(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			r := ping(ctx, h.client)
			if ctx.Err() != nil {
				return
			}
			h.probe.probed(r)
		case <-info.C:
			h.readRunID(ctx)
			h.flush.probe(ctx, RemoteSide)
		}
	}
}

func (h *hub) readRunID(ctx context.Context) {
	id, err := remoteRunID(ctx, h.client)
	h.runMu.Lock()
	h.runID, h.runEr = id, err
	h.runMu.Unlock()
}

// notifySetting is the hub's notify-keyspace-events, read now or within
// the last canaryEvery/2 by one of its links.
func (h *hub) notifySetting(ctx context.Context) (string, error) {
	c := &h.setting
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= canaryEvery/2 {
		c.flags, c.err = notifySetting(ctx, h.client)
		c.at = time.Now()
	}
	return c.flags, c.err
}

// notifyCache is a hub's notify-keyspace-events, read for the links that
// prove the hub by it (health.go), at most once per canaryEvery/2 for all.
type notifyCache struct {
	mu    sync.Mutex
	flags string
	err   error
	at    time.Time
}

// lastRunID is the run_id the hub's watch read last.
func (h *hub) lastRunID() (string, error) {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	return h.runID, h.runEr
}

// follow is probeLoop for side s of a link whose probe is shared (hubs.go):
// each change the shared probe sees is handled as the link's own probe's.
func (l *Link) follow(ctx context.Context, s *side, p *prober) {
	for {
		r, ok, c := p.b.next()
		if ok {
			l.probed(s, r.err, r.took)
		}
		select {
		case <-ctx.Done():
			return
		case <-c:
		}
	}
}

// openSides opens the link's two sides: on its own Webdis client, or on
// the shared client of its hub in hs.
func (l *Link) openSides(hs *Hubs) (*store.Sides, error) {
	o := StoreOptions(l.cfg, max(l.cfg.Workers+2, remoteConns))
	o.Wrap = func(d store.Doer) store.Doer {
		return timedDoer{d, l.Stats.RemoteLatency, &l.Stats.RemoteRequests}
	}
	var h *hub
	if hs != nil {
		var err error
		if h, err = hs.acquire(l.cfg); err != nil {
			return nil, err
		}
		o.Client = h.client
	}
	sides, err := store.Open(o)
	if err != nil {
		if h != nil {
			h.release()
		}
		return nil, err
	}
	if h != nil {
		l.shared = shared{hub: h, local: hs.acquireLocal(sides.Pool.Addr())}
	}
	return sides, nil
}

// joinShared has the shared probes of the link's hub and local Redis look
// for flushes for it too, until the returned function is called.
func (l *Link) joinShared() (leave func()) {
	if l.shared.hub == nil {
		return func() {}
	}
	l.shared.hub.flush.join(l)
	l.shared.local.flush.join(l)
	return func() {
		l.shared.hub.flush.leave(l)
		l.shared.local.flush.leave(l)
	}
}

// closeClient closes the link's own client, or gives its hub and local
// probe back.
func (l *Link) closeClient() { l.shared.release(l.client) }

func (sh shared) release(own *webdis.Client) {
	if sh.hub == nil {
		own.Close()
		return
	}
	sh.hub.release()
	sh.local.release()
}

// flushProbe is flushedSide done once for the links sharing a side: every
// flushProbeEvery one EXISTS of up to flushSampleShared keys the links know
// synced, instead of one request per link. A flush (FLUSHALL, FLUSHDB: no
// event) empties the whole database, every namespace at once, so the keys
// of a few links tell for all; when every one of them is gone, each link
// checks its own keys (flushedSide) and handles what it finds.
type flushProbe struct {
	mu    sync.Mutex
	links map[*Link]struct{}
}

const flushSampleShared = 16

func (f *flushProbe) join(l *Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links == nil {
		f.links = map[*Link]struct{}{}
	}
	f.links[l] = struct{}{}
}

func (f *flushProbe) leave(l *Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.links, l)
}

func (f *flushProbe) probe(ctx context.Context, s Side) {
	f.mu.Lock()
	links := make([]*Link, 0, len(f.links))
	for l := range f.links {
		links = append(links, l)
	}
	f.mu.Unlock()
	var sample [][]byte
	var st *store.Store
	for _, l := range links {
		if len(sample) >= flushSampleShared {
			break
		}
		if keys := l.flushSample(); len(keys) > 0 {
			sample = append(sample, keys[:min(len(keys), 4)]...)
			st = l.side(s).st
		}
	}
	if len(sample) < 4 {
		return
	}
	exists, err := st.Exists(ctx, sample)
	if err != nil {
		return // the links' workers report errors
	}
	for _, e := range exists {
		if e {
			return
		}
	}
	for _, l := range links {
		l.suspectFlush()
	}
}
