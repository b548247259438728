package link

import (
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// subscribeLocal reads the local keyspace events of the namespace into the
// dirty set, reconnecting with backoff until ctx is done. It does nothing
// slow per event: Redis drops a subscriber that falls behind.
//
// Every (re)subscription asks for a resync: whatever changed while no one
// listened (including before the link started) is found by comparison.
func (l *Link) subscribeLocal(ctx context.Context) {
	bo := newBackoff()
	for ctx.Err() == nil {
		err := l.readLocalEvents(ctx, bo)
		if ctx.Err() != nil {
			return
		}
		l.fail(err, "local events")
		l.setState("degraded")
		if !sleepCtx(ctx, bo.next()) {
			return
		}
	}
}

// pingEvery is how often an idle subscription is checked.
const pingEvery = 5 * time.Second

func (l *Link) readLocalEvents(ctx context.Context, bo *backoff) error {
	if err := EnableNotifications(ctx, l.pool, l.local.Name); err != nil {
		// Not fatal: notifications may be configured already, and resyncs
		// still converge. Say what to do.
		l.fail(err, "enable notifications")
	}
	conn, err := l.pool.addr.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	channel := fmt.Sprintf("__keyspace@%d__:", l.cfg.LocalDB)
	psc := redis.PubSubConn{Conn: conn}
	if err := psc.PSubscribe(append([]byte(channel), MatchPattern(l.local.Prefix)...)); err != nil {
		return fmt.Errorf("%s: psubscribe: %w", l.local.Name, err)
	}
	// A dead connection is found by pings answered (as Pong) on the same
	// stream; redigo allows one writer beside the reader.
	pinger := time.NewTicker(pingEvery)
	defer pinger.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-pinger.C:
				if psc.Ping("") != nil {
					return
				}
			}
		}
	}()
	subscribed := false
	for {
		switch v := psc.ReceiveWithTimeout(3 * pingEvery).(type) {
		case redis.Message:
			key := []byte(v.Channel[len(channel):])
			if IsStaging(l.local.Prefix, key) {
				continue
			}
			l.Stats.EventsLocal.Add(1)
			l.dirty.Add(key, changedLocal)
		case redis.Subscription:
			if !subscribed {
				subscribed = true
				bo.reset()
				l.log.Info().Str("pattern", channel+string(MatchPattern(l.local.Prefix))).Msg("subscribed to local events")
				l.requestResync()
			}
		case redis.Pong:
		case error:
			return fmt.Errorf("%s: events: %w", l.local.Name, v)
		}
	}
}
