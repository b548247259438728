package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/redisrepl/redisrepl/webdis/pki"
)

// RedisAddr says how to reach a Redis directly.
type RedisAddr struct {
	Addr     string // host:port
	DB       int
	User     string
	Password string
	TLS      bool
	// With TLS: the CA file (PEM) the server's certificate must chain to
	// ("" = the system's CAs), and the client certificate and key files
	// presented to it ("" = none).
	CAFile, CertFile, KeyFile string
	// Sentinel, when set, names the master to dial (sentinel.go); Addr is
	// then its canonical redis+sentinel:// form.
	Sentinel Sentinel

	tls *tls.Config // loaded once by LoadTLS: a running link keeps it when a file goes missing
}

// LoadTLS reads the TLS files once (with TLS): every connection then uses
// what was read, as the hub's client does, so that a certificate file
// replaced non-atomically does not break new connections of a running link.
func (a *RedisAddr) LoadTLS() error {
	if !a.TLS {
		return nil
	}
	tc, err := a.tlsConfig()
	if err != nil {
		return fmt.Errorf("local Redis %s: %w", a, err)
	}
	a.tls = tc
	return nil
}

// tlsConfig is the TLS configuration of a (pki.LocalRedisConfig).
func (a RedisAddr) tlsConfig() (*tls.Config, error) {
	return pki.LocalRedisConfig(a.CertFile, a.KeyFile, a.CAFile)
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
		tc := a.tls
		if tc == nil {
			var err error
			if tc, err = a.tlsConfig(); err != nil {
				return nil, fmt.Errorf("local Redis %s: %w", a, err)
			}
		}
		opts = append(opts, redis.DialUseTLS(true), redis.DialTLSConfig(tc))
	}
	addr, err := a.dialAddr(ctx)
	if err != nil {
		return nil, fmt.Errorf("local Redis %s: %w", a, err)
	}
	c, err := redis.DialContext(ctx, "tcp", addr, opts...)
	if err == nil && a.Sentinel.Set() {
		if err = a.checkMaster(ctx, c, addr); err != nil {
			c.Close()
		} else if fc, ok := c.(fullConn); ok {
			c = &masterConn{fullConn: fc, addr: addr}
		}
	}
	if err == nil && a.TLS {
		// With TLS 1.3 a server that wants a client certificate says so only
		// after the handshake, on the first read: ask now, so that the error
		// is a dial error that names the setting to fix. A refusal by the
		// server (an ACL without PING) is no TLS problem.
		if _, err = redis.DoContext(c, ctx, "PING"); errors.As(err, new(redis.Error)) {
			err = nil
		}
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("local Redis %s: %w%s", a, err, a.tlsHint(err))
	}
	return c, nil
}

// tlsHint explains a TLS failure of the local Redis in terms of the
// settings that fix it.
func (a RedisAddr) tlsHint(err error) string {
	if !a.TLS {
		return ""
	}
	msg := err.Error()
	var unknownCA x509.UnknownAuthorityError
	switch {
	case strings.Contains(msg, "certificate required") || a.CertFile == "" && isRemoteTLSAlert(err):
		return " (the local Redis asks for a client certificate: set local_cert and local_key)"
	case a.CertFile == "" && isDropped(err):
		// TLS 1.3: the server's alert may be lost to the reset of the
		// connection it closes.
		return " (the local Redis dropped the connection after the TLS handshake: if it asks for a client certificate (tls-auth-clients), set local_cert and local_key)"
	case errors.As(err, &unknownCA) || strings.Contains(msg, "certificate signed by unknown authority"):
		if a.CAFile == "" {
			return " (set local_ca to the CA that signed the local Redis's certificate)"
		}
		return " (the local Redis's certificate is not signed by local_ca " + a.CAFile + ")"
	case strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority"):
		return " (the local Redis refused the client certificate local_cert: is it signed by its tls-ca-cert-file?)"
	}
	return ""
}

// isDropped says whether err is the connection closed or reset under us.
func isDropped(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isRemoteTLSAlert says whether err is an alert the server sent during the
// handshake (TLS 1.3 reports a missing client certificate only on the first
// read, as an alert, or as a closed connection).
func isRemoteTLSAlert(err error) bool {
	var ae tls.AlertError
	return errors.As(err, &ae) || strings.Contains(err.Error(), "remote error: tls:")
}

// Pool is a redigo pool that implements Doer.
type Pool struct {
	*redis.Pool
	addr  RedisAddr
	watch *masterWatch // a Redis managed by Sentinel: sentinel.go
}

// NewPool returns a pool of at most size connections to a.
func NewPool(a RedisAddr, size int) *Pool {
	w := newMasterWatch(a)
	return &Pool{
		addr:  a,
		watch: w,
		Pool: &redis.Pool{
			DialContext: func(ctx context.Context) (redis.Conn, error) {
				c, err := a.Dial(ctx)
				if err == nil && w != nil {
					w.track(c) // sentinel.go
				}
				return c, err
			},
			MaxIdle:     size,
			MaxActive:   size,
			Wait:        true,
			IdleTimeout: 5 * time.Minute,
			TestOnBorrow: func(c redis.Conn, t time.Time) error {
				if w != nil && w.stale(c) {
					return errOldMaster
				}
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
