package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"
)

// A local Redis managed by Sentinel (local = "redis+sentinel://…",
// docs/ARCHITECTURE.md, "Past one Redis"): every dial asks the Sentinels
// for the master and checks ROLE on the new connection. A failover ends
// the link's connections (Sentinel kills the clients of the servers it
// reconfigures; a dead master's are broken), its subscription among them:
// the link resubscribes and resyncs, and a new master is a new run_id,
// which the resync treats as a restarted side (link/runids.go). The
// lookup is go-redis's Sentinel client; the connections stay redigo's.

var errOldMaster = errors.New("a connection to the previous master")

// Sentinel names a Sentinel-managed Redis: the Sentinels and the name they
// monitor its master under (config.Sentinel, converted by
// link.StoreOptions: the store does not read configuration).
type Sentinel struct {
	Addrs  []string
	Master string
}

// Set says whether a Sentinel-managed Redis is named.
func (s Sentinel) Set() bool { return len(s.Addrs) > 0 }

// List is the Sentinels' addresses.
func (s Sentinel) List() []string { return s.Addrs }

// sentinelLookupTimeout bounds the question to one Sentinel.
const sentinelLookupTimeout = 2 * time.Second

// dialAddr is the address to dial: Addr, or the master the Sentinels name.
func (a RedisAddr) dialAddr(ctx context.Context) (string, error) {
	if !a.Sentinel.Set() {
		return a.Addr, nil
	}
	clients := a.sentinelClients()
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	return a.askMaster(ctx, clients)
}

// sentinelClients are clients of a's Sentinels, in order.
func (a RedisAddr) sentinelClients() []*goredis.SentinelClient {
	var cs []*goredis.SentinelClient
	for _, s := range a.Sentinel.List() {
		cs = append(cs, goredis.NewSentinelClient(&goredis.Options{Addr: s, DialTimeout: sentinelLookupTimeout,
			ReadTimeout: sentinelLookupTimeout, WriteTimeout: sentinelLookupTimeout, MaxRetries: -1}))
	}
	return cs
}

// askMaster asks the Sentinels in turn; the first that names the master
// answers.
func (a RedisAddr) askMaster(ctx context.Context, clients []*goredis.SentinelClient) (string, error) {
	var errs []error
	for i, c := range clients {
		r, err := c.GetMasterAddrByName(ctx, a.Sentinel.Master).Result()
		if err == nil && len(r) == 2 {
			return net.JoinHostPort(r[0], r[1]), nil
		}
		if err == nil {
			err = fmt.Errorf("reply %q", r)
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %w", a.Sentinel.List()[i], err))
	}
	return "", fmt.Errorf("no Sentinel names the master %q: %w", a.Sentinel.Master, errors.Join(errs...))
}

// checkMaster: a Sentinel may still name the old master for a moment
// during a failover, and the old one, back, runs as a replica. A user
// that may not run ROLE is trusted to have reached the master.
func (a RedisAddr) checkMaster(ctx context.Context, c redis.Conn, addr string) error {
	if !a.Sentinel.Set() {
		return nil
	}
	// A short wait: the connection is not yet one a failover closes, and a
	// master that hangs must not hold the dial.
	ctx, cancel := context.WithTimeout(ctx, 2*sentinelLookupTimeout)
	defer cancel()
	role, err := redis.Values(redis.DoContext(c, ctx, "ROLE"))
	var re redis.Error
	switch {
	case errors.As(err, &re):
		return nil
	case err != nil:
		return err
	case len(role) == 0:
		return fmt.Errorf("%s answers ROLE with nothing", addr)
	}
	if r, _ := role[0].([]byte); string(r) != "master" {
		return fmt.Errorf("%s is not the master (ROLE %q): a failover is under way", addr, r)
	}
	return nil
}

// masterWatch follows the master of a Sentinel-managed Redis for one
// Pool: the Sentinels are asked every second (one question to one
// Sentinel), and a new master drops the pool's connections to the old one
// (TestOnBorrow) and closes the connections dialled with DialFollowing.
// Sentinel leaves the old master running as a master for several seconds
// after a failover, so a link that waited for its connections to break
// would go on reading the old one.
type masterWatch struct {
	a       RedisAddr
	clients []*goredis.SentinelClient // kept: asked every second
	conns   map[*masterConn]struct{}  // the pool's connections
	mu      sync.Mutex
	addr    string // the master last found
	// moved is cancelled when the master changes.
	moved context.Context
	move  context.CancelFunc
	stop  context.CancelFunc
	done  chan struct{}
}

// masterWatchEvery is how often the Sentinels are asked.
const masterWatchEvery = time.Second

func newMasterWatch(a RedisAddr) *masterWatch {
	if !a.Sentinel.Set() {
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &masterWatch{a: a, clients: a.sentinelClients(), conns: map[*masterConn]struct{}{}, stop: stop, done: make(chan struct{})}
	w.moved, w.move = context.WithCancel(context.Background())
	go w.run(ctx)
	return w
}

func (w *masterWatch) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(masterWatchEvery)
	defer tick.Stop()
	for {
		ask, cancel := context.WithTimeout(ctx, 2*sentinelLookupTimeout)
		addr, err := w.a.askMaster(ask, w.clients)
		cancel()
		if err == nil {
			w.found(addr)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *masterWatch) found(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if addr == w.addr {
		return
	}
	if w.addr != "" {
		w.move()
		w.moved, w.move = context.WithCancel(context.Background())
	}
	w.addr = addr
	for c := range w.conns {
		if c.addr != addr {
			c.fullConn.Close() // a command on it fails now; the pool drops it
			delete(w.conns, c)
		}
	}
}

// current is the master last found and the context its change cancels.
func (w *masterWatch) current() (string, context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addr, w.moved
}

func (w *masterWatch) close() {
	w.stop()
	<-w.done
	for _, c := range w.clients {
		c.Close()
	}
}

// fullConn is what a redigo connection is: the pool and PubSubConn use
// its timeouts and contexts.
type fullConn interface {
	redis.Conn
	redis.ConnWithContext
	redis.ConnWithTimeout
}

// masterConn is a connection with the address it was dialled to; w, when
// set, is the watch that closes it once that address is no longer the
// master, even in the middle of a command: an old master that hangs
// (partitioned, stopped) would otherwise hold the command forever.
type masterConn struct {
	fullConn
	addr string
	w    *masterWatch
}

func (c *masterConn) Close() error {
	if c.w != nil {
		c.w.mu.Lock()
		delete(c.w.conns, c)
		c.w.mu.Unlock()
	}
	return c.fullConn.Close()
}

// track has c closed when its master is no longer the one found.
func (w *masterWatch) track(c redis.Conn) {
	mc, ok := c.(*masterConn)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr != "" && mc.addr != w.addr {
		mc.fullConn.Close()
		return
	}
	mc.w = w
	w.conns[mc] = struct{}{}
}

// stale: c was dialled to a master that is no longer the one found.
func (w *masterWatch) stale(c redis.Conn) bool {
	mc, ok := c.(*masterConn)
	if !ok {
		return false
	}
	addr, _ := w.current()
	return addr != "" && mc.addr != addr
}

// followingConn is closed at the next failover (the link's subscription:
// its end makes the link subscribe again, and resync).
type followingConn struct {
	fullConn
	stop func() bool
}

func (c followingConn) Close() error {
	c.stop()
	return c.fullConn.Close()
}

// DialFollowing opens a connection outside the pool that, when the Redis
// is managed by Sentinel, is closed as soon as its master changes.
func (p *Pool) DialFollowing(ctx context.Context) (redis.Conn, error) {
	var moved context.Context
	if p.watch != nil {
		_, moved = p.watch.current()
	}
	c, err := p.addr.Dial(ctx)
	if err != nil || moved == nil {
		return c, err
	}
	fc, ok := c.(fullConn)
	if !ok {
		return c, nil
	}
	return followingConn{fc, context.AfterFunc(moved, func() { fc.Close() })}, nil
}

// Close closes the pool and stops following the master.
func (p *Pool) Close() error {
	if p.watch != nil {
		p.watch.close()
	}
	return p.Pool.Close()
}
