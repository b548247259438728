package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
)

// tenant is a [[tenant]] in force: its ACL user, the pool of connections
// authenticated as that user, and what the policy needs precomputed.
type tenant struct {
	cfg  config.Tenant
	user string
	pass string // derived from the server key (password.go), held in memory only
	g    *Gateway

	readPrefixes [][]byte // namespaces and read prefixes
	grants       []grant  // channels it may subscribe to

	pool  *redis.Pool
	queue *tenantQueue // its requests in flight to the hub (fairqueue.go)
	// cmds and bytes are its rates (throttle.go).
	cmds, bytes *bucket
	// retired is done once the tenant is removed or changed: its streams
	// end (Redis ends those of its user; this ends those on the gateway's
	// connection).
	retired context.Context
	retire  context.CancelFunc
	m       *tenantMetrics // shared by every version of the tenant of this name
	usage   *usage         // its memory (quota.go), shared the same way

	mu    sync.Mutex
	ready bool // its ACL user is set on the hub as this gateway knows it
}

func newTenant(g *Gateway, c config.Tenant, pass string) *tenant {
	c.Limits = c.Limits.WithDefaults(g.cfg.Limits)
	t := &tenant{cfg: c, user: g.cfg.UserPrefix + c.Name, pass: pass, g: g,
		m: g.metrics.tenant(c.Name)}
	inFlight := config.TenantMaxRequests(c.Limits, g.cfg.MaxRequests)
	t.queue = g.queue.tenant(c.Name, inFlight)
	t.usage = g.quota.of(c.Name)
	t.derive()
	t.cmds, t.bytes = newBucket(c.Limits.CommandsPerSecond), newBucket(c.Limits.BytesPerSecond)
	t.retired, t.retire = context.WithCancel(context.Background())
	t.pool = &redis.Pool{
		Dial:        func() (redis.Conn, error) { return t.dial(commandTimeout) },
		MaxIdle:     inFlight,
		IdleTimeout: 5 * time.Minute,
		// A connection idle for a while may have been cut (a restarted
		// hub): check it, but not on the busy path.
		TestOnBorrow: func(c redis.Conn, idle time.Time) error {
			if err := g.staleMaster(c); err != nil { // sentinel.go
				return err
			}
			if time.Since(idle) < time.Second {
				return nil
			}
			_, err := c.Do("PING")
			return err
		},
	}
	return t
}

// derive fills the prefixes from cfg.
func (t *tenant) derive() {
	t.readPrefixes = nil
	for _, p := range append(append([]string{}, t.cfg.Namespaces...), t.cfg.Read...) {
		t.readPrefixes = append(t.readPrefixes, []byte(p))
	}
	t.grants = channelGrants(t.g.cfg.RedisDB, t.cfg)
}

// grant is a channel pattern a tenant may subscribe to: lit, its literal
// part, then anything.
type grant struct {
	lit     []byte
	pattern string
	// readOnly: the keyspace channel of a read prefix. It is not in the
	// tenant's ACL user (Redis grants a channel for PUBLISH too, and a
	// tenant must not fake events of keys it does not own): the gateway,
	// which checked the channel, subscribes to it on its own connection.
	readOnly bool
}

// channelGrants: the keyspace channels of every prefix of c (namespaces
// and read prefixes), and the channels named in its namespaces.
func channelGrants(db int, c config.Tenant) []grant {
	ks := dedup.KeyspaceChannel(db)
	var gs []grant
	for _, p := range c.Namespaces {
		gs = append(gs, grant{lit: []byte(ks + p), pattern: ks + globEscape(p) + "*"})
	}
	for _, p := range c.Read {
		gs = append(gs, grant{lit: []byte(ks + p), pattern: ks + globEscape(p) + "*", readOnly: true})
	}
	for _, ns := range c.Namespaces {
		gs = append(gs, grant{lit: []byte(ns), pattern: globEscape(ns) + "*"})
	}
	return append(gs, canaryGrants(db, c)...) // canary.go
}

// commandTimeout bounds the wait for one reply on a pooled connection
// (commands served are not blocking ones; a long script is the worst case).
const commandTimeout = 2 * time.Minute

// dial opens a connection authenticated as t's user, waiting at most
// readTimeout for a reply (0: forever, for streams). If the hub does not
// know the user (it restarted without it, or someone removed it), the user
// is set again first.
func (t *tenant) dial(readTimeout time.Duration) (redis.Conn, error) {
	c, err := t.g.dialRedis(readTimeout)
	if err != nil {
		return nil, err
	}
	_, err = c.Do("AUTH", t.user, t.pass)
	if err != nil && isAuthError(err) {
		t.g.log.Warn().Str("tenant", t.cfg.Name).Str("user", t.user).
			Msg("the hub does not know this tenant's ACL user (restarted?): setting it again")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = t.setUser(ctx)
		cancel()
		if err == nil {
			_, err = c.Do("AUTH", t.user, t.pass)
		}
	}
	if err == nil && t.g.cfg.RedisDB != 0 {
		_, err = c.Do("SELECT", t.g.cfg.RedisDB)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func isAuthError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	s := string(re)
	return strings.HasPrefix(s, "WRONGPASS") || strings.Contains(s, "invalid username-password") ||
		strings.HasPrefix(s, "NOPERM")
}

// dialRedis opens a plain connection to the hub Redis (its master, when
// Sentinel manages it: sentinel.go).
func (g *Gateway) dialRedis(readTimeout time.Duration) (redis.Conn, error) {
	addr, epoch, err := g.masterAddr()
	if err != nil {
		return nil, err
	}
	c, err := redis.Dial("tcp", addr, g.dialOptions(readTimeout)...)
	if err != nil {
		return nil, err
	}
	return g.checkMaster(c, addr, epoch)
}

func (g *Gateway) dialOptions(readTimeout time.Duration) []redis.DialOption {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(5 * time.Second),
		redis.DialReadTimeout(readTimeout), redis.DialWriteTimeout(30 * time.Second),
	}
	if g.cfg.RedisTLS {
		opts = append(opts, redis.DialUseTLS(true))
	}
	return opts
}

// adminAuth is the AUTH arguments of the gateway's own Redis user (nil: none).
func (g *Gateway) adminAuth() []any {
	switch {
	case g.cfg.RedisUser != "":
		return []any{g.cfg.RedisUser, g.cfg.RedisPassword}
	case g.cfg.RedisPassword != "":
		return []any{g.cfg.RedisPassword}
	}
	return nil
}

// dialAdmin opens a connection as the gateway's own Redis user.
func (g *Gateway) dialAdmin() (redis.Conn, error) { return g.dialAdminTimeout(commandTimeout) }

// dialAdminTimeout is dialAdmin waiting at most readTimeout for a reply (0:
// forever, for streams).
func (g *Gateway) dialAdminTimeout(readTimeout time.Duration) (redis.Conn, error) {
	c, err := g.dialRedis(readTimeout)
	if err != nil {
		return nil, err
	}
	if args := g.adminAuth(); args != nil && g.sentinel == nil { // checkMaster logged in already
		if _, err := c.Do("AUTH", args...); err != nil {
			c.Close()
			return nil, err
		}
	}
	if g.cfg.RedisDB != 0 {
		if _, err := c.Do("SELECT", g.cfg.RedisDB); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}
