package gateway

import (
	"context"

	"github.com/gomodule/redigo/redis"
)

// hubBackend is a hub past one Redis (docs/ARCHITECTURE.md, "A cluster
// hub"): it runs the tenants' commands and streams in place of the one
// Redis's pools. Gateway.backend is nil for one Redis, whose path
// (tenant.go, acl.go, exec.go, stream.go) is the gateway's own.
type hubBackend interface {
	// conn is a connection that runs commands as t's ACL user; its replies
	// have redigo's shapes, so the guards and the reply code serve both.
	conn(ctx context.Context, t *tenant) (redis.Conn, error)
	// adminDo runs a command of the gateway's own user: INFO, CONFIG GET,
	// SCAN (a cursor that covers the whole hub).
	adminDo(ctx context.Context, cmd string, args ...any) (any, error)
	// openStream subscribes to sub's channels or patterns as t's user.
	openStream(ctx context.Context, t *tenant, sub *subscription, verb []byte) (hubStream, error)
	// setUser, delUser and users manage ACL users on every node.
	setUser(ctx context.Context, rule []any) error
	delUser(ctx context.Context, user string) error
	users(ctx context.Context) ([]string, error)
	// check is the watchHub tick: topology, settings, users.
	check(ctx context.Context)
	// ensureEvents turns keyspace events on where they are off.
	ensureEvents(ctx context.Context)
	close()
}

// hubStream is an open subscription: receive returns the next message in
// redigo's shapes (a redis.Error ends it), close ends it.
type hubStream interface {
	receive() (any, error)
	close()
}

// connStream is a subscription on one Redis connection.
type connStream struct{ c redis.Conn }

func (s connStream) receive() (any, error) { return s.c.Receive() }
func (s connStream) close()                { s.c.Close() }

// tenantConn is a connection that runs commands as t's user.
func (g *Gateway) tenantConn(ctx context.Context, t *tenant) (redis.Conn, error) {
	if g.backend != nil {
		return g.backend.conn(ctx, t)
	}
	return t.pool.GetContext(ctx)
}
