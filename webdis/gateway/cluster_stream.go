package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"
)

// A tenant's stream on a cluster hub (docs/ARCHITECTURE.md, "A cluster
// hub"): keyspace events are per node, so its keyspace patterns are
// subscribed on every master, each as the tenant's user, and merged into
// one stream. A PUBLISH reaches every node's subscribers through the
// cluster bus, so its other patterns and channels are subscribed on one
// master only (on every one, each message would come once per master).
// The stream is confirmed once every master confirmed, and it ends when
// a master's connection ends or the masters change: the link reads the
// end as events possibly lost, and resyncs.

// errTopologyChanged ends a stream whose masters are no longer the
// cluster's.
var errTopologyChanged = errors.New("the cluster's masters changed")

type clusterStream struct {
	ctx     context.Context
	cancel  context.CancelFunc
	msgs    chan any
	errs    chan error
	changed <-chan struct{}
	confirm []any // confirmations still to hand out
	once    sync.Once
	clients []*goredis.Client
	subs    []*goredis.PubSub
}

// streamConfirmWait bounds the wait for every master's confirmation.
const streamConfirmWait = 5 * time.Second

func (h *clusterHub) openStream(ctx context.Context, t *tenant, sub *subscription, verb []byte) (hubStream, error) {
	tp, err := h.topology(ctx)
	if err != nil {
		return nil, err
	}
	user, pass := t.user, t.pass
	if sub.readOnly {
		user, pass = h.g.cfg.RedisUser, h.g.cfg.RedisPassword // checked by policy: see grant.readOnly
	}
	// What each master subscribes to.
	per := make([][]string, len(tp.masters))
	for _, a := range sub.redisArgs() {
		s := string(argBytes(a))
		if sub.pattern && strings.HasPrefix(s, "__keyspace@") {
			for i := range per {
				per[i] = append(per[i], s)
			}
		} else {
			per[0] = append(per[0], s)
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	st := &clusterStream{ctx: sctx, cancel: cancel, msgs: make(chan any, 64), errs: make(chan error, len(per)), changed: tp.changed}
	for i, addr := range tp.masters {
		if len(per[i]) == 0 {
			continue
		}
		c := goredis.NewClient(h.nodeOptions(addr, user, pass))
		st.clients = append(st.clients, c)
		var ps *goredis.PubSub
		if sub.pattern {
			ps = c.PSubscribe(sctx, per[i]...)
		} else {
			ps = c.Subscribe(sctx, per[i]...)
		}
		st.subs = append(st.subs, ps)
		for range per[i] {
			v, err := ps.ReceiveTimeout(sctx, streamConfirmWait)
			if isUnknownUser(nil, err) && !sub.readOnly {
				// A node without the tenant's user (restarted without it):
				// set it again; the client's next stream finds it.
				st.close()
				h.g.log.Warn().Str("tenant", t.cfg.Name).Str("node", addr).
					Msg("a cluster node does not know this tenant's ACL user: setting it on every node again")
				if serr := t.setUser(ctx); serr != nil {
					return nil, serr
				}
				return nil, err
			}
			if err != nil {
				var re goredis.Error
				if errors.As(err, &re) {
					// A refusal (NOPERM) is the stream's one message, as on one Redis.
					st.confirm = []any{redis.Error(err.Error())}
					return st, nil
				}
				st.close()
				return nil, err
			}
			if _, ok := v.(*goredis.Subscription); !ok {
				st.close()
				return nil, errors.New("gateway: a cluster node answered a subscription with something else")
			}
		}
	}
	// Confirmations as one Redis sends them: translate (stream.go) maps
	// them onto the client's patterns.
	kind := "subscribe"
	if sub.pattern {
		kind = "psubscribe"
	}
	for i, a := range sub.redisArgs() {
		st.confirm = append(st.confirm, []any{[]byte(kind), argBytes(a), int64(i + 1)})
	}
	for _, ps := range st.subs {
		go st.read(ps)
	}
	return st, nil
}

// read passes one master's messages on, and its end.
func (st *clusterStream) read(ps *goredis.PubSub) {
	for {
		v, err := ps.Receive(st.ctx)
		if err != nil {
			st.errs <- err
			return
		}
		var m any
		switch v := v.(type) {
		case *goredis.Message:
			if v.Pattern != "" {
				m = []any{[]byte("pmessage"), []byte(v.Pattern), []byte(v.Channel), []byte(v.Payload)}
			} else {
				m = []any{[]byte("message"), []byte(v.Channel), []byte(v.Payload)}
			}
		default:
			continue
		}
		select {
		case st.msgs <- m:
		case <-st.ctx.Done():
			return
		}
	}
}

func (st *clusterStream) receive() (any, error) {
	if len(st.confirm) > 0 {
		v := st.confirm[0]
		st.confirm = st.confirm[1:]
		if re, ok := v.(redis.Error); ok {
			return nil, re
		}
		return v, nil
	}
	select {
	case m := <-st.msgs:
		return m, nil
	case err := <-st.errs:
		var re goredis.Error
		if errors.As(err, &re) {
			return nil, redis.Error(err.Error())
		}
		return nil, err
	case <-st.changed:
		return nil, errTopologyChanged
	case <-st.ctx.Done():
		return nil, st.ctx.Err()
	}
}

func (st *clusterStream) close() {
	st.once.Do(func() {
		st.cancel()
		for _, ps := range st.subs {
			ps.Close()
		}
		for _, c := range st.clients {
			c.Close()
		}
	})
}
