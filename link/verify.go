package link

import (
	"context"
	"fmt"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
)

// newStores builds both sides of cfg's link on a pool of conns connections
// to the local Redis and a Webdis client of as many. It contacts nothing.
// maxElems bounds the elements of a key read (and digested) in one script:
// a bigger key is read and digested in chunks, so no script holds a busy
// Redis for long.
const maxElems = 16384

func newStores(cfg config.Link, conns int) (local, remote *Store, pool *Pool, client *webdis.Client, err error) {
	client, err = webdis.New(webdis.Options{
		URL:      cfg.Remote,
		CertFile: cfg.Cert,
		KeyFile:  cfg.Key,
		CAFile:   cfg.CA,
		MaxConns: conns,
	})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("link %q: %w", cfg.Name, err)
	}
	maxBytes := cfg.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = 900 << 10
	}
	addr := RedisAddr{Addr: cfg.LocalAddr, DB: cfg.LocalDB, User: cfg.LocalUser, Password: cfg.LocalPassword, TLS: cfg.LocalTLS}
	pool = NewPool(addr, conns)
	prefix := []byte(cfg.Namespace)
	// A key read whole must also fit in one write: both limits follow the
	// remote's request budget.
	local = &Store{Name: "local " + addr.String(), Do: pool, Prefix: prefix, MaxElems: maxElems, MaxBytes: maxBytes, MaxBatchBytes: maxBatchBytes}
	remote = &Store{Name: "remote " + client.URL(), Do: client, Prefix: prefix, MaxRequest: maxBytes, MaxElems: maxElems, MaxBytes: maxBytes, MaxBatchBytes: maxBatchBytes}
	return local, remote, pool, client, nil
}

// NewStores returns both sides of cfg's link, set up as link.New sets them
// up, for tools that compare or repair a namespace without running the link
// ("redisrepl verify"). close releases their connections. It contacts
// nothing.
func NewStores(cfg config.Link) (local, remote *Store, close func(), err error) {
	local, remote, pool, client, err := newStores(cfg, max(cfg.Workers, 1)+2)
	if err != nil {
		return nil, nil, nil, err
	}
	return local, remote, func() { client.Close(); pool.Close() }, nil
}

// CopyKeys makes each of keys on dst hold its current state on src: whole
// keys, each written atomically, a key that src lacks deleted, a key too big
// for one request copied in chunks and renamed into place. Unlike a running
// link it applies no max_value_bytes limit: the caller asked for these keys.
func CopyKeys(ctx context.Context, src, dst *Store, keys [][]byte) error {
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
			case st.Big || dst.MaxRequest > 0 && st.applyLen() > dst.MaxRequest-1024:
				if _, err := copyBig(ctx, src, dst, st.Key, st.Type, st.ExpireAt); err != nil {
					return err
				}
			default:
				whole = append(whole, *st)
			}
		}
		if _, err := dst.Apply(ctx, whole); err != nil {
			return err
		}
		keys = deferred
	}
	return nil
}
