package store

import (
	"context"
	"fmt"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
)

// Sides are the two stores of one link, and the connections under them.
type Sides struct {
	Local, Remote *Store
	Pool          *Pool          // to the local Redis
	Client        *webdis.Client // to the remote, through Webdis
}

// Open builds both sides of cfg's link on a pool of conns connections to
// the local Redis and a Webdis client of as many. The remote store sends
// its commands through wrap(client) when wrap is set (the link measures
// them). It contacts nothing.
func Open(cfg config.Link, conns int, wrap func(Doer) Doer) (*Sides, error) {
	client, err := webdis.New(webdis.Options{
		URL:      cfg.Remote,
		CertFile: cfg.Cert,
		KeyFile:  cfg.Key,
		CAFile:   cfg.CA,
		MaxConns: conns,
	})
	if err != nil {
		return nil, fmt.Errorf("link %q: %w", cfg.Name, err)
	}
	s, err := OpenOn(cfg, client, conns, wrap)
	if err != nil {
		client.Close()
	}
	return s, err
}

// OpenOn is Open on a Webdis client given (one several links share): only
// the pool to the local Redis is the link's own.
func OpenOn(cfg config.Link, client *webdis.Client, conns int, wrap func(Doer) Doer) (*Sides, error) {
	addr := RedisAddr{Addr: cfg.LocalAddr, DB: cfg.LocalDB, User: cfg.LocalUser, Password: cfg.LocalPassword, TLS: cfg.LocalTLS,
		CAFile: cfg.LocalCA, CertFile: cfg.LocalCert, KeyFile: cfg.LocalKey, Sentinel: cfg.LocalSentinel}
	if err := addr.LoadTLS(); err != nil {
		return nil, fmt.Errorf("link %q: %w", cfg.Name, err)
	}
	pool := NewPool(addr, conns)
	prefix := []byte(cfg.Namespace)
	// A key read whole must also fit in one write: both sides' read limits
	// follow the remote's request budget.
	lim := Limits{MaxElems: DefaultMaxElems, MaxBytes: cfg.MaxRequestBytes, MaxBatchBytes: DefaultMaxBatchBytes}
	local := New("local "+addr.String(), pool, prefix, lim)
	lim.MaxRequest = cfg.MaxRequestBytes
	var do Doer = client
	if wrap != nil {
		do = wrap(client)
	}
	remote := New("remote "+client.URL(), do, prefix, lim)
	Pair(local, remote)
	return &Sides{Local: local, Remote: remote, Pool: pool, Client: client}, nil
}

// Close releases the connections of both sides.
func (s *Sides) Close() {
	s.Client.Close()
	s.Pool.Close()
}

// CopyKeys makes each of keys on dst hold its current state on src: whole
// keys, each written atomically, a key that src lacks deleted, a key too big
// for one request copied in chunks and renamed into place. Unlike a running
// link it applies no max_value_bytes limit: the caller asked for these keys.
func CopyKeys(ctx context.Context, src, dst *Store, keys [][]byte) error {
	return copyKeys(ctx, src, dst, keys, "")
}

// RestoreMissing is CopyKeys for keys that dst lacks: a key written on dst
// meanwhile is left as it is (the write checks, atomically, that the key is
// still absent). A key too big for one request is copied in chunks and
// renamed into place unconditionally: a write of it on dst during its copy
// is overwritten.
func RestoreMissing(ctx context.Context, src, dst *Store, keys [][]byte) error {
	return copyKeys(ctx, src, dst, keys, DigestPrefix(NoneDigest))
}

func copyKeys(ctx context.Context, src, dst *Store, keys [][]byte, expect string) error {
	for len(keys) > 0 {
		states, err := src.Read(ctx, keys)
		if err != nil {
			return err
		}
		var whole []State
		var deferred [][]byte
		for i := range states {
			st := &states[i]
			switch {
			case st.Deferred: // past the read's byte budget: read again
				deferred = append(deferred, st.Key)
			case !dst.Fits(st):
				if err := CopyBig(ctx, src, dst, st.Key, st.Type, st.ExpireAt); err != nil {
					return err
				}
			default:
				st.Expect = expect
				whole = append(whole, *st)
			}
		}
		if err := dst.Apply(ctx, whole); err != nil {
			return err
		}
		keys = deferred
	}
	return nil
}
