package gateway

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// A Redis Cluster hub (docs/ARCHITECTURE.md, "A cluster hub"). go-redis's
// ClusterClient, one per tenant logged in as its ACL user, routes each
// command to its slot's node and follows MOVED, ASK, TRYAGAIN and
// failovers; the gateway adds what only it can know (cluster_route.go):
// how the link's batch scripts split per slot, and how their replies
// merge. ACL users and notify-keyspace-events are per node: the gateway
// sets them on every node, masters and replicas, and again whenever the
// topology changes (a node joins, a replica is promoted). A tenant's
// stream subscribes on every master (cluster_stream.go) and ends when the
// masters change, so the link resyncs. SCAN walks every master with a
// cursor that names the node (adminDo).

// clusterHub is the hubBackend of a Redis Cluster.
type clusterHub struct {
	g     *Gateway
	admin *goredis.ClusterClient // the gateway's own user: discovery, the slot map

	mu      sync.Mutex
	topo    *topology
	nodes   map[string]*goredis.Client         // the gateway's user, per node address
	tenants map[*tenant]*goredis.ClusterClient // a tenant's user, per tenant in force
	changed chan struct{}                      // closed when the masters change
}

// topology is the cluster as last read (CLUSTER SHARDS).
type topology struct {
	masters            []string // addresses of the masters serving slots, sorted
	all                []string // addresses of every node online, sorted
	mastersSig, allSig string
	changed            <-chan struct{} // closed when masters differ from these
}

func newClusterHub(g *Gateway) *clusterHub {
	// go-redis logs its reconnections to stderr through one logger of the
	// process; they are the debug lines of the gateway's own log.
	goredis.SetLogger(goredisLog{g.log})
	h := &clusterHub{g: g, nodes: map[string]*goredis.Client{}, tenants: map[*tenant]*goredis.ClusterClient{},
		changed: make(chan struct{})}
	h.admin = goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs: g.cfg.RedisCluster, Username: g.cfg.RedisUser, Password: g.cfg.RedisPassword,
		Protocol: 2, DisableIdentity: true, DisableRoutingPolicies: true, TLSConfig: h.tlsConfig(),
		DialTimeout: 5 * time.Second, ReadTimeout: commandTimeout, WriteTimeout: 30 * time.Second, PoolSize: 8,
	})
	return h
}

func (h *clusterHub) tlsConfig() *tls.Config {
	if !h.g.cfg.RedisTLS {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// nodeOptions are those of a client of one node as user.
func (h *clusterHub) nodeOptions(addr, user, pass string) *goredis.Options {
	o := &goredis.Options{Addr: addr, Username: user, Password: pass, Protocol: 2, DisableIdentity: true,
		TLSConfig: h.tlsConfig(), DialTimeout: 5 * time.Second, ReadTimeout: commandTimeout,
		WriteTimeout: 30 * time.Second, PoolSize: 4, MaxRetries: -1}
	if o.TLSConfig != nil {
		host, _, _ := net.SplitHostPort(addr)
		o.TLSConfig.ServerName = host
	}
	return o
}

// slots is the slot map of the gateway's user, which tenants' clients use
// as theirs: tenants may not run CLUSTER.
func (h *clusterHub) slots(ctx context.Context) ([]goredis.ClusterSlot, error) {
	//lint:ignore SA1019 go-redis's ClusterOptions.ClusterSlots hook takes this shape; Redis 7 still answers CLUSTER SLOTS
	return h.admin.ClusterSlots(ctx).Result()
}

// refresh reads the topology; when the masters changed, streams of the
// old ones end; nodes says whether the set of nodes or their roles
// changed (check then sets the ACL users on every node again).
func (h *clusterHub) refresh(ctx context.Context) (tp *topology, nodes bool, err error) {
	shards, err := h.admin.ClusterShards(ctx).Result()
	if err != nil {
		return nil, false, err
	}
	var masters, all, msig, asig []string
	for _, s := range shards {
		for _, n := range s.Nodes {
			if n.Health == "failed" || n.Health == "fail" {
				continue
			}
			ip := n.IP
			if ip == "" {
				ip = n.Endpoint
			}
			addr := net.JoinHostPort(ip, strconv.FormatInt(n.Port, 10))
			all = append(all, addr)
			asig = append(asig, n.ID+" "+n.Role+" "+addr)
			if n.Role == "master" && len(s.Slots) > 0 && n.Health == "online" {
				masters = append(masters, addr)
				msig = append(msig, n.ID+" "+addr)
			}
		}
	}
	if len(masters) == 0 {
		return nil, false, errors.New("the cluster has no master serving slots")
	}
	slices.Sort(masters)
	slices.Sort(all)
	slices.Sort(msig)
	slices.Sort(asig)
	next := &topology{masters: masters, all: all, mastersSig: strings.Join(msig, ","), allSig: strings.Join(asig, ",")}
	h.mu.Lock()
	prev := h.topo
	if prev != nil && prev.mastersSig != next.mastersSig {
		close(h.changed)
		h.changed = make(chan struct{})
	}
	next.changed = h.changed
	h.topo = next
	for _, a := range all {
		if h.nodes[a] == nil {
			h.nodes[a] = goredis.NewClient(h.nodeOptions(a, h.g.cfg.RedisUser, h.g.cfg.RedisPassword))
		}
	}
	for a, c := range h.nodes {
		if !slices.Contains(all, a) {
			c.Close()
			delete(h.nodes, a)
		}
	}
	h.mu.Unlock()
	nodes = prev == nil || prev.allSig != next.allSig
	if nodes {
		h.ensureEvents(ctx)
	}
	if prev != nil && prev.mastersSig != next.mastersSig {
		h.admin.ReloadState(ctx)
		for _, cc := range h.tenantClients() {
			cc.ReloadState(ctx)
		}
	}
	return next, nodes, nil
}

// setUsers sets every tenant's ACL user on every node.
func (h *clusterHub) setUsers(ctx context.Context) {
	for _, t := range h.g.state.Load().byName {
		if err := t.setUser(ctx); err != nil {
			h.g.log.Error().Err(err).Str("tenant", t.cfg.Name).Msg("cannot set the tenant's ACL user on every node yet; will retry")
		}
	}
}

func (h *clusterHub) topology(ctx context.Context) (*topology, error) {
	h.mu.Lock()
	t := h.topo
	h.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, _, err := h.refresh(ctx)
	return t, err
}

// node is the gateway's client of the node at addr.
func (h *clusterHub) node(addr string) *goredis.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[addr]
}

// eachNode runs fn on every node of the topology (all: replicas too), at
// once; the error is the first one, naming the node.
func (h *clusterHub) eachNode(ctx context.Context, all bool, fn func(*goredis.Client) error) error {
	tp, err := h.topology(ctx)
	if err != nil {
		return err
	}
	addrs := tp.masters
	if all {
		addrs = tp.all
	}
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		c := h.node(a)
		if c == nil {
			errs[i] = fmt.Errorf("node %s: no client", a)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(c); err != nil {
				errs[i] = fmt.Errorf("node %s: %w", a, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (h *clusterHub) setUser(ctx context.Context, rule []any) error {
	args := append([]any{"ACL"}, rule...)
	return h.eachNode(ctx, true, func(c *goredis.Client) error { return c.Do(ctx, args...).Err() })
}

func (h *clusterHub) delUser(ctx context.Context, user string) error {
	return h.eachNode(ctx, true, func(c *goredis.Client) error { return c.Do(ctx, "ACL", "DELUSER", user).Err() })
}

func (h *clusterHub) users(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	err := h.eachNode(ctx, true, func(c *goredis.Client) error {
		us, err := c.Do(ctx, "ACL", "USERS").StringSlice()
		mu.Lock()
		for _, u := range us {
			seen[u] = true
		}
		mu.Unlock()
		return err
	})
	return slices.Sorted(maps.Keys(seen)), err
}

// ensureEvents adds [gateway] keyspace_events to notify-keyspace-events
// of every node (replicas too: one may be promoted).
func (h *clusterHub) ensureEvents(ctx context.Context) {
	if h.g.cfg.KeyspaceEvents == "" {
		h.g.eventsSet.Store(true)
		return
	}
	err := h.eachNode(ctx, true, func(c *goredis.Client) error {
		m, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
		if err != nil {
			return err
		}
		cur := m["notify-keyspace-events"]
		if want := mergeFlags(cur, h.g.cfg.KeyspaceEvents); want != cur {
			return c.ConfigSet(ctx, "notify-keyspace-events", want).Err()
		}
		return nil
	})
	if err != nil {
		h.g.log.Error().Err(err).Msg("cannot turn keyspace events on in every cluster node; set notify-keyspace-events in their redis.conf")
		return
	}
	h.g.eventsSet.Store(true)
}

// check follows the topology every watchHub tick, drops the clients of
// tenants no longer in force, and retries users that could not be set.
func (h *clusterHub) check(ctx context.Context) {
	tp, nodes, err := h.refresh(ctx)
	h.g.redisUp.Store(err == nil)
	if err != nil {
		return
	}
	if nodes {
		h.g.log.Info().Strs("masters", tp.masters).Strs("nodes", tp.all).
			Msg("cluster nodes: ACL users and keyspace events set on every node")
		h.setUsers(ctx)
	}
	st := h.g.state.Load()
	h.mu.Lock()
	for t, cc := range h.tenants {
		if st.byName[t.cfg.Name] != t {
			cc.Close()
			delete(h.tenants, t)
		}
	}
	h.mu.Unlock()
	for _, t := range st.byName {
		if !t.isReady() {
			t.setUser(ctx)
		}
	}
}

func (h *clusterHub) tenantClients() []*goredis.ClusterClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*goredis.ClusterClient, 0, len(h.tenants))
	for _, cc := range h.tenants {
		out = append(out, cc)
	}
	return out
}

// client is t's ClusterClient, logged in as its ACL user.
func (h *clusterHub) client(t *tenant) *goredis.ClusterClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cc := h.tenants[t]; cc != nil {
		return cc
	}
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs: h.g.cfg.RedisCluster, Username: t.user, Password: t.pass, ClusterSlots: h.slots,
		Protocol: 2, DisableIdentity: true, DisableRoutingPolicies: true, TLSConfig: h.tlsConfig(),
		DialTimeout: 5 * time.Second, ReadTimeout: commandTimeout, WriteTimeout: 30 * time.Second,
		PoolSize: h.g.cfg.MaxRequests, MaxRedirects: 8,
	})
	h.tenants[t] = cc
	return cc
}

func (h *clusterHub) conn(ctx context.Context, t *tenant) (redis.Conn, error) {
	return &clusterConn{ctx: ctx, h: h, t: t, cc: h.client(t)}, nil
}

// adminDo: INFO is the cluster's (a run_id that changes when any master
// changes: a link then refills rather than trusts its sync state), SCAN
// walks every master (scanNode), anything else runs on the first master.
func (h *clusterHub) adminDo(ctx context.Context, cmd string, args ...any) (any, error) {
	tp, err := h.topology(ctx)
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(cmd) {
	case "INFO":
		return h.info(ctx, tp)
	case "SCAN":
		return h.scanNode(ctx, tp, args)
	}
	c := h.node(tp.masters[0])
	if c == nil {
		return nil, errors.New("no client of the first master")
	}
	return fromGoRedis(cmd, args, c.Do(ctx, append([]any{cmd}, args...)...))
}

// info is INFO server of the cluster as one hub: the first master's
// version, and a run_id digest of every master's.
func (h *clusterHub) info(ctx context.Context, tp *topology) (any, error) {
	ids := make([]string, len(tp.masters))
	var version string
	var uptime int64 = -1
	var mu sync.Mutex
	err := h.eachNode(ctx, false, func(c *goredis.Client) error {
		s, err := c.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		i := slices.Index(tp.masters, c.Options().Addr)
		if i >= 0 {
			ids[i] = infoField(s, "run_id")
		}
		if version == "" {
			version = infoField(s, "redis_version")
		}
		if up, err := strconv.ParseInt(infoField(s, "uptime_in_seconds"), 10, 64); err == nil && (uptime < 0 || up < uptime) {
			uptime = up
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum([]byte(strings.Join(ids, ",")))
	return []byte(fmt.Sprintf("# Server\r\nredis_version:%s\r\nredis_mode:cluster\r\nrun_id:%s\r\nuptime_in_seconds:%d\r\n",
		version, hex.EncodeToString(sum[:]), max(uptime, 0))), nil
}

// The cursor of a SCAN across the cluster names the master in its low
// byte, the master's own cursor above it; masters are in address order.
// A cursor of a master gone past the last starts nothing (the topology
// changed: the streams of the links ended and they resync).
const cursorNodeBits = 8

func (h *clusterHub) scanNode(ctx context.Context, tp *topology, args []any) (any, error) {
	if len(args) == 0 {
		return redis.Error("ERR wrong number of arguments for 'scan' command"), nil
	}
	cur, err := strconv.ParseUint(string(argBytes(args[0])), 10, 64)
	if err != nil {
		return redis.Error("ERR invalid cursor"), nil
	}
	idx, inner := int(cur&(1<<cursorNodeBits-1)), cur>>cursorNodeBits
	if idx >= len(tp.masters) {
		return []any{[]byte("0"), []any{}}, nil
	}
	c := h.node(tp.masters[idx])
	if c == nil {
		return nil, errors.New("no client of a master")
	}
	a := append([]any{"SCAN", strconv.FormatUint(inner, 10)}, args[1:]...)
	reply, err := fromGoRedis("SCAN", nil, c.Do(ctx, a...))
	if err != nil {
		return nil, err
	}
	v, ok := reply.([]any)
	if !ok || len(v) != 2 {
		return reply, nil
	}
	next, err := strconv.ParseUint(string(argBytes(v[0])), 10, 64)
	if err != nil || next >= 1<<(64-cursorNodeBits) {
		return redis.Error("ERR gateway: a node's SCAN cursor does not fit"), nil
	}
	switch {
	case next != 0:
		next = next<<cursorNodeBits | uint64(idx)
	case idx+1 < len(tp.masters):
		next = uint64(idx + 1)
	}
	v[0] = []byte(strconv.FormatUint(next, 10))
	return v, nil
}

func (h *clusterHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cc := range h.tenants {
		cc.Close()
	}
	for _, c := range h.nodes {
		c.Close()
	}
	h.admin.Close()
}

func argBytes(a any) []byte {
	switch v := a.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	case int:
		return strconv.AppendInt(nil, int64(v), 10)
	case int64:
		return strconv.AppendInt(nil, v, 10)
	}
	return []byte(fmt.Sprint(a))
}

// goredisLog passes go-redis's messages to the gateway's log, at debug
// level: what they say (a node refusing connections) the gateway reports
// itself when it matters.
type goredisLog struct{ l zerolog.Logger }

func (w goredisLog) Printf(_ context.Context, format string, v ...any) {
	w.l.Debug().Str("from", "go-redis").Msg(fmt.Sprintf(format, v...))
}
