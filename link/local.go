package link

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
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

// notifyFlags are the keyspace notification classes a link needs: K
// (keyspace channel) and A (every type's commands, generic ones, expiry and
// eviction).
const notifyFlags = "KA"

// EnableNotifications makes sure the Redis behind do publishes keyspace
// events: it adds the classes a link needs to notify-keyspace-events,
// keeping the ones already set.
func EnableNotifications(ctx context.Context, do Doer, side string) error {
	v, err := do.Do(ctx, []byte("CONFIG"), []byte("GET"), []byte("notify-keyspace-events"))
	if err != nil {
		return &notifyError{side: side, err: err}
	}
	vs, err := redis.Strings(v, nil)
	if err != nil || len(vs) != 2 {
		return &notifyError{side: side, err: fmt.Errorf("unexpected CONFIG GET reply")}
	}
	current := vs[1]
	want := mergeFlags(current, notifyFlags)
	if want == current {
		return nil
	}
	if _, err := do.Do(ctx, []byte("CONFIG"), []byte("SET"), []byte("notify-keyspace-events"), []byte(want)); err != nil {
		return &notifyError{side: side, err: err}
	}
	return nil
}

// mergeFlags adds to flags the classes of add that it lacks. 'A' stands for
// "g$lshzxet", so a set that has all of those counts as having 'A'.
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
		return false
	}
	out := flags
	for _, c := range add {
		if !has(c) {
			out += string(c)
		}
	}
	return out
}

type notifyError struct {
	side string
	err  error
}

func (e *notifyError) Error() string {
	return fmt.Sprintf("%s: cannot enable keyspace notifications (CONFIG GET/SET notify-keyspace-events: %v); "+
		"set them yourself, e.g. 'notify-keyspace-events KA' in redis.conf (any value holding K and A, or K and g$lshzxet), "+
		"or allow CONFIG for redisrepl", e.side, e.err)
}

func (e *notifyError) Unwrap() error { return e.err }
