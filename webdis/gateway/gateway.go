// Package gateway is the hub gateway (redisrepl gateway): an HTTPS server
// with mutual TLS that speaks Webdis's protocol and serves each lab, known
// by its client certificate, only its own namespaces.
//
// Isolation is Redis's own: every tenant has an ACL user on the hub
// (tenant.go: aclRule) and is served only from connections authenticated
// as that user, so Redis checks every key, every key touched inside a
// script and every channel. The gateway adds what ACLs cannot do
// (policy.go): key names listed by SCAN and KEYS are filtered to the
// tenant's prefixes, subscriptions are confined to its channels, and
// commands are refused by default.
//
// Files: gateway.go (the server, reloads, the hub's restarts), request.go
// (Webdis's request syntax), reply.go (Webdis's reply formats), policy.go
// (what a tenant may run), tenant.go (a tenant in force, its pool), acl.go
// (its ACL user), exec.go (serving a request: limits, running a command),
// scan.go (SCAN and KEYS filtered), stream.go (SUBSCRIBE streams), glob.go,
// metrics.go (/metrics, /healthz, /status), quota.go (the tenants' memory
// quotas), fairqueue.go (requests in flight to the hub, per tenant);
// backend.go (a hub past one Redis), cluster*.go (a Redis Cluster hub).
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/pki"
)

// Gateway serves the Webdis protocol to the tenants of its file.
type Gateway struct {
	cfg      *config.Gateway // settings fixed at start (listen, redis, limits)
	log      zerolog.Logger
	admin    *redis.Pool  // the gateway's own Redis user: ACL management, SCAN, KEYS, INFO
	backend  hubBackend   // a hub past one Redis (backend.go); nil: the one Redis of admin and the tenants' pools
	seed     []byte       // tenant passwords derive from it (password.go)
	sentinel *sentinelHub // the Sentinels of a hub they manage; nil: [gateway] redis
	metrics  *metrics
	disabled map[string]bool // [gateway] disabled
	tlsConf  atomic.Pointer[tls.Config]
	state    atomic.Pointer[state]
	redisUp  atomic.Bool
	// eventsSet: keyspace_events are on in the hub (set again after a restart).
	eventsSet atomic.Bool
	conns     atomic.Int64 // open connections (throttle.go)
	bodies    bodyBudget   // request bodies held
	quota     quotas       // the tenants' memory (quota.go)
	queue     *fairQueue   // requests in flight to the hub (fairqueue.go)

	mu        sync.Mutex // reloads
	lastErr   string
	lastErrAt time.Time
	runID     string

	ln         net.Listener
	srv        *http.Server
	cancelBase context.CancelFunc // ends every request's context: streams stop
	done       chan struct{}
	err        error
}

// state is the set of tenants in force; replaced whole on reload.
type state struct {
	gen      int
	byClient map[string]*tenant
	byName   map[string]*tenant
}

// New checks the certificates of cfg and prepares the gateway; Start
// serves it.
func New(cfg *config.Gateway, log zerolog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, metrics: newMetrics(), done: make(chan struct{}), disabled: map[string]bool{}}
	g.cfg = withDefaults(cfg)
	g.bodies.max = g.cfg.MaxBodyMemory
	g.registerQuota(g.metrics.reg)
	g.queue = newFairQueue(g.cfg.MaxRequests, g.metrics.reg)
	for _, c := range cfg.Disabled {
		g.disabled[strings.ToUpper(c)] = true
	}
	if cfg.Sentinel.Set() {
		g.sentinel = newSentinelHub(cfg.Sentinel, log) // sentinel.go
	}
	g.admin = &redis.Pool{Dial: g.dialAdmin, MaxIdle: 4, IdleTimeout: time.Minute,
		TestOnBorrow: func(c redis.Conn, idle time.Time) error {
			if err := g.staleMaster(c); err != nil {
				return err
			}
			if time.Since(idle) < time.Second {
				return nil
			}
			_, err := c.Do("PING")
			return err
		}}
	tc, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	if g.seed, err = passwordSeed(cfg.Key); err != nil {
		return nil, err
	}
	g.tlsConf.Store(tc)
	g.state.Store(&state{byClient: map[string]*tenant{}, byName: map[string]*tenant{}})
	if len(g.cfg.RedisCluster) > 0 {
		g.backend = newClusterHub(g)
	}
	return g, nil
}

// withDefaults is cfg with the limits it leaves at zero (a configuration
// built in code) set to their defaults.
func withDefaults(cfg *config.Gateway) *config.Gateway {
	c := *cfg
	c.Limits = c.Limits.WithDefaults(config.DefaultLimits)
	if c.MaxConnections == 0 {
		c.MaxConnections = config.DefaultGatewayMaxConnections
	}
	if c.MaxBodyMemory == 0 {
		c.MaxBodyMemory = config.DefaultGatewayMaxBodyMemory
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = config.DefaultGatewayBodyTimeout
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = config.DefaultGatewayMaxRequests
	}
	if c.Quota == (config.QuotaScan{}) {
		c.Quota = config.DefaultQuotaScan
	}
	return &c
}

// loadTLS is the server's TLS configuration (pki.ServerConfig).
func loadTLS(cfg *config.Gateway) (*tls.Config, error) {
	return pki.ServerConfig(cfg.Cert, cfg.Key, cfg.ClientCA)
}

// Start applies cfg's tenants (setting their ACL users on the hub, and
// removing the users of tenants no longer in the file), binds the listen
// address and serves until Close. A hub Redis that is down is no reason
// not to start: its tenants are set up when it answers.
func (g *Gateway) Start(ctx context.Context) error {
	g.Apply(ctx, g.cfg)
	g.checkHub(ctx) // run_id, keyspace events
	if stale, err := g.staleUsers(ctx, g.users()); err == nil {
		for _, u := range stale {
			if err := g.delUser(ctx, u); err == nil {
				g.log.Info().Str("user", u).Msg("removed the ACL user of a tenant no longer in the file")
			}
		}
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return err
	}
	g.ln = ln
	if g.backend == nil {
		g.warnEviction(ctx)
	}
	base, cancel := context.WithCancel(context.Background())
	g.cancelBase = cancel
	g.srv = &http.Server{
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext:       connContext,
		Handler:           g,
		ReadHeaderTimeout: g.cfg.HeaderTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
		TLSConfig:         &tls.Config{GetConfigForClient: g.configForClient},
	}
	g.srv.ErrorLog = newStdLog(g.log)
	go func() {
		defer close(g.done)
		err := g.srv.ServeTLS(limitListener{ln, g}, "", "")
		if !errors.Is(err, http.ErrServerClosed) {
			g.err = err
		}
	}()
	go g.watchHub(ctx)
	if g.sentinel != nil {
		go g.followSentinels(ctx)
	}
	go g.measureMemory(ctx)
	g.log.Info().Str("listen", ln.Addr().String()).Str("path", g.cfg.URLPath).
		Int("tenants", len(g.state.Load().byName)).Msg("gateway serving")
	return nil
}

// Addr is the address the gateway listens on (after Start).
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Close stops serving: open streams are cut, requests in flight get up to
// 5 s to finish. The tenants' ACL users stay on the hub (a restarted
// gateway sets them again).
func (g *Gateway) Close() error {
	if g.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.cancelBase() // streams end now; commands in flight finish (they do not watch it)
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.srv.Close()
	}
	<-g.done
	for _, t := range g.state.Load().byName {
		t.pool.Close()
	}
	g.admin.Close()
	if g.backend != nil {
		g.backend.close()
	}
	return g.err
}

// Apply puts the tenants of cfg in force: added ones get an ACL user,
// changed ones have it updated, removed ones have it deleted (Redis then
// closes their connections, streams included); unchanged tenants and their
// streams are left alone. The server certificate and client CA are read
// again. Other [gateway] settings take effect at the next start.
func (g *Gateway) Apply(ctx context.Context, cfg *config.Gateway) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cfg != g.cfg {
		if tc, err := loadTLS(cfg); err == nil {
			g.tlsConf.Store(tc)
		} else {
			g.log.Error().Err(err).Msg("keeping the certificates in force")
		}
	}
	old := g.state.Load()
	next := &state{gen: old.gen + 1, byClient: map[string]*tenant{}, byName: map[string]*tenant{}}
	var retired, set []*tenant
	for _, tc := range cfg.Tenants {
		prev := old.byName[tc.Name]
		t := prev
		switch {
		case prev == nil:
			t = newTenant(g, tc, g.tenantPassword(g.cfg.UserPrefix+tc.Name)) // password.go
			g.log.Info().Str("tenant", tc.Name).Str("client", tc.Client).Strs("namespaces", tc.Namespaces).
				Strs("read", tc.Read).Msg("tenant added")
		case !prev.cfg.Equal(tc):
			t = newTenant(g, tc, prev.pass)
			retired = append(retired, prev)
			g.log.Info().Str("tenant", tc.Name).Str("client", tc.Client).Strs("namespaces", tc.Namespaces).
				Strs("read", tc.Read).Msg("tenant changed")
		}
		if t != prev || !t.isReady() {
			set = append(set, t)
		}
		next.byName[tc.Name] = t
		next.byClient[tc.Client] = t
	}
	var removed []*tenant
	for name, t := range old.byName {
		if _, ok := next.byName[name]; !ok {
			retired = append(retired, t)
			removed = append(removed, t)
		}
	}
	// Retired first: once retired, a tenant no longer sets its user (a
	// hub check or a reconnection in flight would put its old rules back).
	for _, t := range retired {
		t.retireNow()
	}
	for _, t := range set {
		if err := t.setUser(ctx); err != nil {
			g.log.Error().Err(err).Str("tenant", t.cfg.Name).Msg("cannot set the tenant's ACL user yet; will retry")
		}
	}
	for _, t := range removed {
		if err := g.delUser(ctx, t.user); err != nil {
			g.log.Error().Err(err).Str("tenant", t.cfg.Name).Msg("cannot delete the removed tenant's ACL user")
		}
		g.log.Info().Str("tenant", t.cfg.Name).Msg("tenant removed")
	}
	g.state.Store(next)
	for _, t := range retired {
		t.pool.Close() // idle connections now; busy ones when returned
	}
	g.lastErr, g.lastErrAt = "", time.Time{}
	g.metrics.generation.Set(float64(next.gen))
}

// ReloadFailed records an edit of the file that did not validate: the
// tenants in force stay, /status and /healthz show the error.
func (g *Gateway) ReloadFailed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastErr, g.lastErrAt = err.Error(), time.Now()
	g.metrics.reloadErrs.Inc()
	g.log.Error().Err(err).Msg("configuration not reloaded; the tenants in force are kept")
}

func (g *Gateway) users() map[string]bool {
	m := map[string]bool{}
	for _, t := range g.state.Load().byName {
		m[t.user] = true
	}
	return m
}

// watchHub checks the hub every 2 s: a new run_id (a restart) or a tenant
// whose user could not be set has its ACL user set again. Connections
// notice a restart by themselves too (tenant.dial).
func (g *Gateway) watchHub(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.done:
			return
		case <-tick.C:
		}
		g.checkHub(ctx)
	}
}

func (g *Gateway) checkHub(ctx context.Context) {
	if g.backend != nil {
		g.backend.check(ctx)
		return
	}
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		g.redisUp.Store(false)
		return
	}
	info, err := redis.String(c.Do("INFO", "server"))
	c.Close()
	if err != nil {
		g.redisUp.Store(false)
		return
	}
	g.redisUp.Store(true)
	id := infoField(info, "run_id")
	g.mu.Lock()
	restarted := g.runID != "" && id != g.runID
	g.runID = id
	g.mu.Unlock()
	if restarted || !g.eventsSet.Load() {
		g.ensureKeyspaceEvents(ctx)
	}
	g.ensureScriptThreshold(ctx)
	for _, t := range g.state.Load().byName {
		if restarted || !t.isReady() {
			if err := t.setUser(ctx); err == nil && restarted {
				g.log.Info().Str("tenant", t.cfg.Name).Msg("hub Redis restarted: ACL user set again")
			}
		}
	}
}

// ensureKeyspaceEvents adds [gateway] keyspace_events to the hub's
// notify-keyspace-events, keeping the classes already there: tenants may
// not run CONFIG SET, and links need keyspace events on the hub.
func (g *Gateway) ensureKeyspaceEvents(ctx context.Context) {
	if g.backend != nil {
		g.backend.ensureEvents(ctx)
		return
	}
	if g.cfg.KeyspaceEvents == "" {
		g.eventsSet.Store(true)
		return
	}
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	vs, err := redis.Strings(c.Do("CONFIG", "GET", "notify-keyspace-events"))
	if err != nil || len(vs) != 2 {
		g.log.Error().Err(err).Msg("cannot read the hub's notify-keyspace-events; set keyspace_events in the hub's redis.conf")
		return
	}
	want := mergeFlags(vs[1], g.cfg.KeyspaceEvents)
	if want != vs[1] {
		if _, err := c.Do("CONFIG", "SET", "notify-keyspace-events", want); err != nil {
			g.log.Error().Err(err).Msg("cannot turn keyspace events on in the hub; set notify-keyspace-events in its redis.conf")
			return
		}
		g.log.Info().Str("notify-keyspace-events", want).Msg("keyspace events turned on in the hub")
	}
	g.eventsSet.Store(true)
}

// mergeFlags adds to flags the classes of add it lacks; 'A' stands for
// "g$lshzxet" (Redis's notify-keyspace-events syntax).
func mergeFlags(flags, add string) string {
	has := func(c rune) bool {
		if strings.ContainsRune(flags, c) {
			return true
		}
		if c == 'A' {
			for _, x := range "g$lshzxet" {
				if !strings.ContainsRune(flags, x) {
					return false
				}
			}
			return true
		}
		return strings.ContainsRune(flags, 'A') && strings.ContainsRune("g$lshzxet", c)
	}
	out := flags
	for _, c := range add {
		if !has(c) {
			out += string(c)
		}
	}
	return out
}

func infoField(info, field string) string {
	for len(info) > 0 {
		line := info
		if i := indexString(info, "\n"); i >= 0 {
			line, info = info[:i], info[i+1:]
		} else {
			info = ""
		}
		if len(line) > len(field) && line[:len(field)] == field && line[len(field)] == ':' {
			v := line[len(field)+1:]
			if n := len(v); n > 0 && v[n-1] == '\r' {
				v = v[:n-1]
			}
			return v
		}
	}
	return ""
}

func indexString(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// Tenants names the tenants in force, for tests and /status.
func (g *Gateway) Tenants() []string {
	return slices.Sorted(maps.Keys(g.state.Load().byName))
}

// match finds the tenant of a verified client certificate: its subject CN
// or one of its DNS SANs is a tenant's client.
func (s *state) match(cs *tls.ConnectionState) *tenant {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if t, ok := s.byClient[leaf.Subject.CommonName]; ok && leaf.Subject.CommonName != "" {
		return t
	}
	for _, n := range leaf.DNSNames {
		if t, ok := s.byClient[n]; ok {
			return t
		}
	}
	return nil
}

// certName is what a refusal log says of an unknown certificate.
func certName(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}
