package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Rates and connections (docs/ARCHITECTURE.md, "The hub gateway"). Each
// tenant has token buckets of commands and bytes, holding one second's
// worth, and a cap on its open connections; the gateway caps connections
// and buffered request bodies in total. Over a tenant's limit the answer
// is 429, over the gateway's 503, both with Retry-After.
//
// Fairness between tenants of the hub's time is fairqueue.go's.

const (
	reasonThrottled   = "throttled"
	reasonConnections = "too many connections"
	reasonBusy        = "gateway busy"
)

// bucket is a token bucket refilled at rate per second, holding at most
// rate tokens; rate 0 is no limit.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	return &bucket{rate: float64(rate), tokens: float64(rate), last: time.Now()}
}

// take removes n tokens if the bucket holds any (it may go below zero by
// n: one large request is let through, later ones wait for the debt). It
// returns how long until the bucket holds tokens again when it is empty.
func (b *bucket) take(n float64) (ok bool, wait time.Duration) {
	if b == nil || b.rate == 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens <= 0 {
		return false, time.Duration(-b.tokens/b.rate*float64(time.Second)) + time.Millisecond
	}
	b.tokens -= n
	return true, 0
}

// charge removes n tokens whatever the bucket holds (the bytes of a reply,
// known once sent).
func (b *bucket) charge(n float64) {
	if b == nil || b.rate == 0 {
		return
	}
	b.mu.Lock()
	b.tokens -= n
	b.mu.Unlock()
}

// pace removes n tokens and, if that leaves the bucket in debt, sleeps
// until it is paid: a reply being sent goes at the tenant's rate.
func (b *bucket) pace(n float64) {
	if b == nil || b.rate == 0 {
		return
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate) - n
	b.last = now
	debt := -b.tokens
	b.mu.Unlock()
	if debt > 0 {
		time.Sleep(time.Duration(debt / b.rate * float64(time.Second)))
	}
}

// retryAfter writes the Retry-After header: whole seconds, at least 1.
func retryAfter(w http.ResponseWriter, d time.Duration) {
	s := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(s, 1), 10))
}

// countedConn is a connection to the gateway, counted in the total and,
// once its certificate is known, in its tenant's count.
type countedConn struct {
	net.Conn
	g         *Gateway
	overTotal bool // accepted past max_total_connections
	once      sync.Once

	mu         sync.Mutex
	tenant     *atomic.Int64 // its tenant's count, once counted
	overTenant bool
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.g.conns.Add(-1)
		c.mu.Lock()
		if c.tenant != nil {
			c.tenant.Add(-1)
		}
		c.mu.Unlock()
	})
	return c.Conn.Close()
}

// configForClient is the TLS configuration of one handshake: the one in
// force, which also counts the connection in its tenant's once the
// certificate is verified, and refuses it past the tenant's
// max_connections (so that one tenant's idle connections do not take the
// places of the others').
func (g *Gateway) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	base := g.tlsConf.Load()
	cc, ok := hello.Conn.(*countedConn)
	if !ok {
		return base, nil
	}
	tc := base.Clone()
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		t := g.state.Load().match(&cs)
		if t == nil {
			return nil // refused at its first request, as an unknown certificate
		}
		if cc.countTenant(t) {
			t.m.refused(reasonConnections)
			g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonConnections).Msg("refused")
			return errTenantConnections
		}
		return nil
	}
	return tc, nil
}

var errTenantConnections = errors.New("the tenant has max_connections open")

// countTenant counts c in t's connections (once), and says whether it is
// past t's max_connections.
func (c *countedConn) countTenant(t *tenant) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tenant == nil {
		c.tenant = &t.m.conns
		c.overTenant = c.tenant.Add(1) > t.cfg.Limits.MaxConnections
	}
	return c.overTenant
}

// limitListener counts the connections it accepts.
type limitListener struct {
	net.Listener
	g *Gateway
}

func (l limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.g.conns.Add(1)
	return &countedConn{Conn: c, g: l.g, overTotal: n > int64(l.g.cfg.MaxConnections)}, nil
}

type connKey struct{}

// connContext puts the counted connection under a request's context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// admitConn says whether the connection of r may be served for t: not past
// the gateway's connections nor t's. Past them, the answer is written
// (503 or 429, Retry-After, and the connection closed) and ok is false.
func (g *Gateway) admitConn(w http.ResponseWriter, r *http.Request, t *tenant) (ok bool, status int) {
	cc, _ := r.Context().Value(connKey{}).(*countedConn)
	if cc == nil {
		return true, 0
	}
	switch {
	case cc.overTotal:
		status = http.StatusServiceUnavailable
	case cc.countTenant(t):
		status = http.StatusTooManyRequests
	default:
		return true, 0
	}
	t.m.refused(reasonConnections)
	g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonConnections).Msg("refused")
	w.Header().Set("Connection", "close")
	retryAfter(w, time.Second)
	return false, g.empty(w, status)
}

// bodyBudget bounds the request bodies held at once, all tenants: a
// reservation past it fails.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

func (b *bodyBudget) reserve(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }
