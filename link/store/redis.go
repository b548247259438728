package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RedisAddr says how to reach a Redis directly.
type RedisAddr struct {
	Addr     string // host:port
	DB       int
	User     string
	Password string
	TLS      bool
}

func (a RedisAddr) String() string { return fmt.Sprintf("%s/%d", a.Addr, a.DB) }

// Dial opens one connection.
func (a RedisAddr) Dial(ctx context.Context) (redis.Conn, error) {
	opts := []redis.DialOption{
		redis.DialDatabase(a.DB),
		redis.DialConnectTimeout(5 * time.Second),
	}
	if a.Password != "" {
		opts = append(opts, redis.DialPassword(a.Password))
	}
	if a.User != "" {
		opts = append(opts, redis.DialUsername(a.User))
	}
	if a.TLS {
		opts = append(opts, redis.DialUseTLS(true), redis.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	c, err := redis.DialContext(ctx, "tcp", a.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("local Redis %s: %w", a, err)
	}
	return c, nil
}

// Pool is a redigo pool that implements Doer.
type Pool struct {
	*redis.Pool
	addr RedisAddr
}

// NewPool returns a pool of at most size connections to a.
func NewPool(a RedisAddr, size int) *Pool {
	return &Pool{
		addr: a,
		Pool: &redis.Pool{
			DialContext: a.Dial,
			MaxIdle:     size,
			MaxActive:   size,
			Wait:        true,
			IdleTimeout: 5 * time.Minute,
			TestOnBorrow: func(c redis.Conn, t time.Time) error {
				if time.Since(t) < 30*time.Second {
					return nil
				}
				_, err := c.Do("PING")
				return err
			},
		},
	}
}

// Addr is the Redis the pool connects to.
func (p *Pool) Addr() RedisAddr { return p.addr }

// Do runs one command on a pooled connection.
func (p *Pool) Do(ctx context.Context, args ...[]byte) (any, error) {
	c, err := p.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rest := make([]any, len(args)-1)
	for i, a := range args[1:] {
		rest[i] = a
	}
	v, err := redis.DoContext(c, ctx, string(args[0]), rest...)
	if err != nil {
		if _, ok := err.(redis.Error); !ok {
			err = fmt.Errorf("local Redis %s: %w", p.addr, err)
		}
	}
	return v, err
}
