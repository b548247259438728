package store

import (
	"fmt"

	"github.com/redisrepl/redisrepl/webdis"
)

// Sides are the two stores of one link, and the connections under them.
type Sides struct {
	Local, Remote *Store
	Pool          *Pool          // to the local Redis
	Client        *webdis.Client // to the remote, through Webdis
	ownClient     bool           // Close closes Client: Open made it
}

// Options say what Open opens: a link's two sides, as plain values (the
// caller converts its configuration: link.StoreOptions).
type Options struct {
	Name      string // the link's, for messages
	Namespace []byte
	Local     RedisAddr // the local Redis
	// Hub is how to reach the remote through Webdis; Client, if set, is a
	// client several links share (Hub is then not used, and Close leaves
	// it open).
	Hub    webdis.Options
	Client *webdis.Client
	// Conns bounds the connections to the local Redis, and those of a
	// client Open makes when Hub.MaxConns is 0.
	Conns int
	// MaxRequestBytes is the remote's request budget (max_request_bytes).
	MaxRequestBytes int
	// Wrap, if set, sends the remote store's commands through Wrap(client)
	// (the link measures them).
	Wrap func(Doer) Doer
}

// Open builds both sides of a link. It contacts nothing.
func Open(o Options) (*Sides, error) {
	client, own := o.Client, o.Client == nil
	if own {
		hub := o.Hub
		if hub.MaxConns == 0 {
			hub.MaxConns = o.Conns
		}
		var err error
		if client, err = webdis.New(hub); err != nil {
			return nil, fmt.Errorf("link %q: %w", o.Name, err)
		}
	}
	addr := o.Local
	if err := addr.LoadTLS(); err != nil {
		if own {
			client.Close()
		}
		return nil, fmt.Errorf("link %q: %w", o.Name, err)
	}
	pool := NewPool(addr, o.Conns)
	// A key read whole must also fit in one write: both sides' read limits
	// follow the remote's request budget.
	lim := Limits{MaxElems: DefaultMaxElems, MaxBytes: o.MaxRequestBytes, MaxBatchBytes: DefaultMaxBatchBytes}
	local := New("local "+addr.String(), pool, o.Namespace, lim)
	lim.MaxRequest = o.MaxRequestBytes
	var do Doer = client
	if o.Wrap != nil {
		do = o.Wrap(client)
	}
	remote := New("remote "+client.URL(), do, o.Namespace, lim)
	Pair(local, remote)
	return &Sides{Local: local, Remote: remote, Pool: pool, Client: client, ownClient: own}, nil
}

// Close releases the connections of both sides (a shared client stays
// open).
func (s *Sides) Close() {
	if s.ownClient {
		s.Client.Close()
	}
	s.Pool.Close()
}
