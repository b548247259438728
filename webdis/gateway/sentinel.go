package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
)

// A hub managed by Sentinel (docs/ARCHITECTURE.md, "Past one Redis"): the
// gateway dials whichever server the Sentinels name master, checks with
// ROLE that it is one, and follows failovers (+switch-master, and the
// Sentinels asked again every 2 s). A failover
//
//   - sends new connections to the new master, and drops pooled ones made
//     before it (TestOnBorrow: staleMaster);
//   - ends every stream: events of the gap are lost, and a link reads the
//     end of its stream as a reason to resync, which repairs what the new
//     master lacks (writes acknowledged by the old one and not replicated);
//   - changes the hub's run_id, so checkHub sets every ACL user and the
//     keyspace events again on the new master.
//
// ACL users and notify-keyspace-events are per server, so they are set on
// the replicas too, for the one that gets promoted to serve at once.
//
// Sentinel is spoken through go-redis: its Sentinel client does the
// lookups and holds a +switch-master subscription that reconnects by
// itself. The hub's own connections stay redigo's.

// sentinelHub follows the master the Sentinels name.
type sentinelHub struct {
	cfg     config.Sentinel
	clients []*goredis.SentinelClient // one per Sentinel, in cfg's order
	log     zerolog.Logger

	mu    sync.Mutex
	addr  string // the master in force; "" = ask the Sentinels at the next dial
	last  string // the master last found
	epoch uint64 // failovers seen: a connection of an earlier epoch is stale
	// moved is cancelled at the next failover: streams end.
	moved     context.Context
	moveNow   context.CancelFunc
	failovers int
	// replicas: what the users of each replica were last set for (its
	// run_id and the state's generation).
	replicas map[string]string
	conns    map[*masterConn]struct{} // open connections to the master in force
}

func newSentinelHub(cfg config.Sentinel, log zerolog.Logger) *sentinelHub {
	s := &sentinelHub{cfg: cfg, log: log, replicas: map[string]string{}, conns: map[*masterConn]struct{}{}}
	for _, a := range cfg.List() {
		s.clients = append(s.clients, goredis.NewSentinelClient(&goredis.Options{
			Addr: a, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
			MaxRetries: -1, // each Sentinel is asked once: the next one is the retry
		}))
	}
	s.moved, s.moveNow = context.WithCancel(context.Background())
	return s
}

// checkMasterTimeout bounds the check of a new connection.
const checkMasterTimeout = 5 * time.Second

// masterConn is a connection to the hub with the epoch it was made in. A
// new epoch closes it, even in the middle of a command: an old master that
// hangs (partitioned, stopped) would otherwise hold the command until its
// timeout.
type masterConn struct {
	redis.Conn
	epoch uint64
	s     *sentinelHub
}

func (c *masterConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// masterAddr is where the hub is: [gateway] redis, or the master the
// Sentinels name, with its epoch.
func (g *Gateway) masterAddr() (string, uint64, error) {
	if g.sentinel == nil {
		return g.cfg.RedisAddr, 0, nil
	}
	return g.sentinel.master()
}

// checkMaster makes sure c, just dialled to addr, is the master: a
// Sentinel may name the old one for a moment during a failover, and the
// old one, back, runs as a replica. The gateway's own credentials are
// used for ROLE (a tenant's user may not run it); a tenant's dial then
// logs in as the tenant.
func (g *Gateway) checkMaster(c redis.Conn, addr string, epoch uint64) (redis.Conn, error) {
	if g.sentinel == nil {
		return c, nil
	}
	// A short wait: this connection is not yet one a failover closes, and
	// a master that hangs must not hold the dial for commandTimeout.
	if args := g.adminAuth(); args != nil {
		if _, err := redis.DoWithTimeout(c, checkMasterTimeout, "AUTH", args...); err != nil {
			c.Close()
			return nil, err
		}
	}
	role, err := redis.Values(redis.DoWithTimeout(c, checkMasterTimeout, "ROLE"))
	if err == nil {
		var r []byte
		if len(role) > 0 {
			r, _ = role[0].([]byte)
		}
		if string(r) != "master" {
			err = fmt.Errorf("the hub Redis at %s is not the master (ROLE %q): a failover is under way", addr, r)
			g.sentinel.forget(addr)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	mc := &masterConn{Conn: c, epoch: epoch, s: g.sentinel}
	g.sentinel.mu.Lock()
	defer g.sentinel.mu.Unlock()
	if epoch != g.sentinel.epoch { // a failover meanwhile
		c.Close()
		return nil, errors.New("the hub's master moved while connecting")
	}
	g.sentinel.conns[mc] = struct{}{}
	return mc, nil
}

// staleMaster refuses a pooled connection made before the last failover.
func (g *Gateway) staleMaster(c redis.Conn) error {
	if g.sentinel == nil {
		return nil
	}
	if mc, ok := c.(*masterConn); ok && mc.epoch != g.sentinel.currentEpoch() {
		return errors.New("connection to the hub's previous master")
	}
	return nil
}

// masterMoved is done at the next failover of the hub (never without
// Sentinel).
func (g *Gateway) masterMoved() context.Context {
	if g.sentinel == nil {
		return context.Background()
	}
	g.sentinel.mu.Lock()
	defer g.sentinel.mu.Unlock()
	return g.sentinel.moved
}

func (s *sentinelHub) currentEpoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

func (s *sentinelHub) master() (string, uint64, error) {
	s.mu.Lock()
	addr, epoch := s.addr, s.epoch
	s.mu.Unlock()
	if addr != "" {
		return addr, epoch, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := s.ask(ctx)
	if err != nil {
		return "", 0, err
	}
	return addr, s.moveTo(addr), nil
}

// ask asks the Sentinels in turn for the master's address; the first that
// names one answers.
func (s *sentinelHub) ask(ctx context.Context) (string, error) {
	var errs []error
	for i, c := range s.clients {
		r, err := c.GetMasterAddrByName(ctx, s.cfg.Master).Result()
		if err == nil && len(r) == 2 {
			return net.JoinHostPort(r[0], r[1]), nil
		}
		if err == nil {
			err = fmt.Errorf("reply %q", r)
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %w", s.cfg.List()[i], err))
	}
	return "", fmt.Errorf("no Sentinel names the master %q: %w", s.cfg.Master, errors.Join(errs...))
}

// moveTo makes addr the master in force and returns its epoch; another
// address than the last found is a failover.
func (s *sentinelHub) moveTo(addr string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case addr == s.addr:
	case s.last == "":
		s.log.Info().Str("master", addr).Str("name", s.cfg.Master).Msg("hub master found through Sentinel")
	case addr != s.last:
		s.log.Warn().Str("from", s.last).Str("master", addr).Str("name", s.cfg.Master).
			Msg("hub master moved (failover): streams end, ACL users set again")
		s.failovers++
		s.newEpoch()
	}
	s.addr, s.last = addr, addr
	return s.epoch
}

// forget drops addr as the master in force, which it no longer is: the
// next dial asks the Sentinels again, and what was made on it ends.
func (s *sentinelHub) forget(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr == addr {
		s.addr = ""
		s.newEpoch()
	}
}

// newEpoch: connections made until now are closed (a command on one fails
// now, and the pool drops it) and streams end.
func (s *sentinelHub) newEpoch() {
	s.epoch++
	s.moveNow()
	s.moved, s.moveNow = context.WithCancel(context.Background())
	for c := range s.conns {
		c.Conn.Close()
		delete(s.conns, c)
	}
}

var descFailovers = prometheus.NewDesc("redisrepl_gateway_hub_failovers_total",
	"Times the master of the hub managed by Sentinel changed since the gateway started.", nil, nil)

// sentinelCollector serves descFailovers (a gateway whose hub Sentinel
// manages).
type sentinelCollector struct{ s *sentinelHub }

func (c sentinelCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descFailovers }

func (c sentinelCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	n := c.s.failovers
	c.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(n))
}

// followSentinels follows the master until the gateway closes: the
// +switch-master messages of every Sentinel, and every 2 s the Sentinels
// asked again (a message is lost while a Sentinel is unreachable). Every
// 10 s, and after a failover, the replicas get the users.
func (g *Gateway) followSentinels(ctx context.Context) {
	s := g.sentinel
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-g.done:
		}
		cancel()
	}()
	var wg sync.WaitGroup
	for _, c := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchSwitches(ctx, c)
		}()
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		epoch := s.currentEpoch()
		ask, stop := context.WithTimeout(ctx, 5*time.Second)
		if addr, err := s.ask(ask); err == nil {
			s.moveTo(addr)
		} else if ctx.Err() == nil {
			g.log.Warn().Err(err).Msg("Sentinel lookup of the hub master failed")
		}
		stop()
		if n%5 == 0 || s.currentEpoch() != epoch {
			g.setReplicas(ctx)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			for _, c := range s.clients {
				c.Close()
			}
			return
		case <-tick.C:
		}
	}
}

// watchSwitches reads c's +switch-master messages ("<name> <old ip>
// <old port> <new ip> <new port>"); go-redis resubscribes after a broken
// connection.
func (s *sentinelHub) watchSwitches(ctx context.Context, c *goredis.SentinelClient) {
	ps := c.Subscribe(ctx, "+switch-master")
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			f := strings.Fields(m.Payload)
			if len(f) == 5 && f[0] == s.cfg.Master {
				s.moveTo(net.JoinHostPort(f[3], f[4]))
			}
		}
	}
}

// setReplicas sets every tenant's ACL user and the keyspace events on the
// replicas the Sentinels know, each again only when it restarted or the
// tenants changed.
func (g *Gateway) setReplicas(ctx context.Context) {
	s := g.sentinel
	var reps []map[string]string
	for _, c := range s.clients {
		ask, stop := context.WithTimeout(ctx, 2*time.Second)
		r, err := c.Replicas(ask, s.cfg.Master).Result()
		stop()
		if err == nil {
			reps = r
			break
		}
	}
	st := g.state.Load()
	for _, r := range reps {
		if strings.Contains(r["flags"], "down") || strings.Contains(r["flags"], "disconnected") {
			continue
		}
		addr := net.JoinHostPort(r["ip"], r["port"])
		if err := g.setReplica(addr, st); err != nil {
			g.log.Warn().Err(err).Str("replica", addr).Msg("cannot set the ACL users on a replica of the hub yet")
		}
	}
}

func (g *Gateway) setReplica(addr string, st *state) error {
	c, err := redis.Dial("tcp", addr, g.dialOptions(5*time.Second)...)
	if err != nil {
		return err
	}
	defer c.Close()
	if args := g.adminAuth(); args != nil {
		if _, err := c.Do("AUTH", args...); err != nil {
			return err
		}
	}
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return err
	}
	done := infoField(info, "run_id") + "/" + strconv.Itoa(st.gen)
	g.sentinel.mu.Lock()
	same := g.sentinel.replicas[addr] == done
	g.sentinel.mu.Unlock()
	if same {
		return nil
	}
	for _, t := range st.byName {
		if t.retired.Err() != nil {
			continue
		}
		if _, err := c.Do("ACL", aclRule(t.user, t.pass, g.cfg.RedisDB, t.cfg)...); err != nil {
			return fmt.Errorf("ACL SETUSER %s: %w", t.user, err)
		}
	}
	if g.cfg.KeyspaceEvents != "" {
		vs, err := redis.Strings(c.Do("CONFIG", "GET", "notify-keyspace-events"))
		if err != nil || len(vs) != 2 {
			return fmt.Errorf("CONFIG GET notify-keyspace-events: %v", err)
		}
		if want := mergeFlags(vs[1], g.cfg.KeyspaceEvents); want != vs[1] {
			if _, err := c.Do("CONFIG", "SET", "notify-keyspace-events", want); err != nil {
				return err
			}
		}
	}
	g.sentinel.mu.Lock()
	g.sentinel.replicas[addr] = done
	g.sentinel.mu.Unlock()
	g.log.Info().Str("replica", addr).Int("tenants", len(st.byName)).Msg("ACL users set on a replica of the hub")
	return nil
}
