package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gomodule/redigo/redis"
)

// stream serves SUBSCRIBE or PSUBSCRIBE: a chunked response holding one
// reply per message (the confirmation first), in the request's format,
// for as long as the client stays. Each stream has its own connection to
// Redis, as the tenant's user, closed when the client leaves; Redis ends
// it too when the tenant is removed or its channels change.
func (g *Gateway) stream(w http.ResponseWriter, r *http.Request, t *tenant, c *command) (status, out int) {
	if n := t.m.streams.Add(1); int(n) > g.cfg.MaxStreams {
		t.m.streams.Add(-1)
		t.m.refused(reasonStreams)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", c.name()).Str("reason", reasonStreams).Msg("refused")
		return g.empty(w, http.StatusTooManyRequests), 0
	}
	t.m.streamsG.Inc()
	defer func() {
		t.m.streams.Add(-1)
		t.m.streamsG.Dec()
	}()
	sub := newSubscription(t, c)
	moved := g.masterMoved() // done at the hub's next failover (sentinel.go)
	verb := append([]byte(nil), c.args[0]...)
	conn, err := g.openStream(r.Context(), t, sub, verb)
	if err != nil {
		g.log.Warn().Err(err).Str("tenant", t.cfg.Name).Msg("hub Redis unavailable for a stream")
		return g.empty(w, http.StatusServiceUnavailable), 0
	}
	defer conn.close()
	// The client leaving, or the tenant's removal, closes the connection,
	// which ends Receive.
	stop := context.AfterFunc(r.Context(), conn.close)
	defer stop()
	stopT := context.AfterFunc(t.retired, conn.close)
	defer stopT()
	stopM := context.AfterFunc(moved, conn.close)
	defer stopM()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", c.mime)
	h.Set(severalPatternsHeader, "several") // canary.go
	cr := g.newCarry(r, t, c, sub)          // carry.go
	defer cr.Close()
	if cr != nil {
		h.Set(valuesHeader, "on")
	}
	receive := receiver(r.Context().Done(), conn, cr != nil)
	started := false
	var buf []byte
	var msgs []any
	var vs []any
	for {
		vs, err = receive(vs[:0])
		if err != nil && len(vs) == 0 {
			if !started {
				return g.empty(w, http.StatusServiceUnavailable), out
			}
			return http.StatusOK, out
		}
		msgs = msgs[:0]
		for _, v := range vs {
			msgs = sub.translate(msgs, v)
		}
		if len(msgs) == 0 {
			continue
		}
		if cr != nil && !cr.attach(msgs) {
			cr.Close()
			return http.StatusOK, out // the link resubscribes, and reads as without values
		}
		buf = buf[:0]
		for _, m := range msgs {
			switch c.format {
			case fmtRaw:
				buf = appendRaw(buf, m, false)
			default:
				buf = appendJSON(buf, verb, m)
			}
		}
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
		// A client that stops reading is cut after a while (Redis would
		// drop the subscription anyway once its output buffer is full).
		rc.SetWriteDeadline(time.Now().Add(bodyTimeout))
		if _, err := w.Write(buf); err != nil {
			return http.StatusOK, out
		}
		out += len(buf)
		if err := rc.Flush(); err != nil {
			return http.StatusOK, out
		}
		if re, isErr := vs[len(vs)-1].(redis.Error); isErr {
			if isACLRefusal(re) {
				t.m.refused(reasonACL)
				g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", c.name()).Str("reason", reasonACL).Msg("refused")
			}
			return http.StatusOK, out // a refused subscription ends the stream
		}
	}
}

// openStream subscribes to sub on a connection of its own: as t's user,
// or the gateway's for a read prefix's channel (see grant.readOnly).
func (g *Gateway) openStream(ctx context.Context, t *tenant, sub *subscription, verb []byte) (hubStream, error) {
	if g.backend != nil {
		return g.backend.openStream(ctx, t, sub, verb)
	}
	var conn redis.Conn
	var err error
	if sub.readOnly {
		conn, err = g.dialAdminTimeout(0) // checked by policy: see grant.readOnly
	} else {
		conn, err = t.dial(0)
	}
	if err != nil {
		return nil, err
	}
	if err := conn.Send(string(verb), sub.redisArgs()...); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return connStream{conn}, nil
}

// subscription maps what a client subscribes to onto what the tenant's
// ACL user is granted. SUBSCRIBE's channels pass as they are (Redis matches
// them against the grants). A PSUBSCRIBE pattern is checked by Redis
// literally against the granted patterns, so a pattern narrower than a
// grant (a part of a namespace) would be refused: the gateway subscribes
// to the grant instead and passes on only the messages whose channel
// matches the client's pattern, under the client's pattern. A pattern equal
// to its grant (the link's) travels unchanged.
type subscription struct {
	pattern  bool
	readOnly bool                // a channel of a read prefix: served on the gateway's connection
	channels []any               // SUBSCRIBE's channels
	order    [][]byte            // the client's patterns, without repeats
	byGrant  map[string][][]byte // grant -> client patterns under it
	grants   []string            // subscribed in Redis, in order
	awaiting int                 // confirmations from Redis still to come
}

func newSubscription(t *tenant, c *command) *subscription {
	s := &subscription{pattern: c.name() == "PSUBSCRIBE", byGrant: map[string][][]byte{}}
	if !s.pattern {
		for _, ch := range c.args[1:] {
			s.channels = append(s.channels, append([]byte(nil), ch...))
			if gr, _ := t.grantFor(ch); gr.readOnly {
				s.readOnly = true
			}
		}
		return s
	}
	seen := map[string]bool{}
	for _, p := range c.args[1:] {
		if seen[string(p)] {
			continue
		}
		seen[string(p)] = true
		p = append([]byte(nil), p...)
		gr, _ := t.grantFor(literalPrefix(p)) // checked by policy
		s.readOnly = s.readOnly || gr.readOnly
		if s.byGrant[gr.pattern] == nil {
			s.grants = append(s.grants, gr.pattern)
		}
		s.byGrant[gr.pattern] = append(s.byGrant[gr.pattern], p)
		s.order = append(s.order, p)
	}
	s.awaiting = len(s.grants)
	return s
}

func (s *subscription) redisArgs() []any {
	if !s.pattern {
		return s.channels
	}
	args := make([]any, len(s.grants))
	for i, g := range s.grants {
		args[i] = g
	}
	return args
}

// translate appends to out the messages the client gets for v.
func (s *subscription) translate(out []any, v any) []any {
	if !s.pattern {
		return append(out, v)
	}
	m, ok := v.([]any)
	if !ok || len(m) == 0 {
		return append(out, v)
	}
	kind, _ := m[0].([]byte)
	switch string(kind) {
	case "psubscribe":
		if s.awaiting == 0 {
			return out
		}
		if s.awaiting--; s.awaiting > 0 {
			return out
		}
		for i, p := range s.order {
			out = append(out, []any{[]byte("psubscribe"), p, int64(i + 1)})
		}
		return out
	case "pmessage":
		if len(m) != 4 {
			return append(out, v)
		}
		g, _ := m[1].([]byte)
		ch, _ := m[2].([]byte)
		for _, p := range s.byGrant[string(g)] {
			if string(p) == string(g) || globMatch(p, ch) {
				out = append(out, []any{m[0], p, m[2], m[3]})
			}
		}
		return out
	}
	return append(out, v)
}

// receiver returns what reads a stream's next messages from Redis into
// vs. One message at a time, unless batched: then what has come in the
// meantime too (up to carryBatch), read by a goroutine of its own so that
// the states of a burst of events are read in one round trip (carry.go).
// A reply that is an error (a refused subscription) ends the batch: it is
// its last message. An error of the connection comes with the messages
// received before it, if any, then alone.
func receiver(done <-chan struct{}, conn hubStream, batched bool) func(vs []any) ([]any, error) {
	one := func() (any, error) {
		v, err := conn.receive()
		if re, ok := err.(redis.Error); ok {
			return re, nil
		}
		return v, err
	}
	if !batched {
		return func(vs []any) ([]any, error) {
			v, err := one()
			if err != nil {
				return vs, err
			}
			return append(vs, v), nil
		}
	}
	type item struct {
		v   any
		err error
	}
	ch := make(chan item, carryBatch)
	go func() {
		defer close(ch)
		for {
			v, err := one()
			select {
			case ch <- item{v, err}:
			case <-done: // the handler returned, and closed conn
				return
			}
			if err != nil {
				return // the connection is closed: the stream ends
			}
		}
	}()
	var pending error
	return func(vs []any) ([]any, error) {
		if pending != nil {
			return vs, pending
		}
		it, ok := <-ch
		for {
			if !ok {
				return vs, errStreamClosed
			}
			if it.err != nil {
				pending = it.err
				return vs, it.err
			}
			vs = append(vs, it.v)
			if _, isErr := it.v.(redis.Error); isErr || len(vs) == carryBatch {
				return vs, nil
			}
			select {
			case it, ok = <-ch:
			default:
				return vs, nil
			}
		}
	}
}

var errStreamClosed = errors.New("stream closed")
