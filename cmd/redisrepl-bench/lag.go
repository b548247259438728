package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Lag: writes at a fixed rate (1,000/s and 5,000/s) of distinct keys
// "lag:<way>:r<rate>:<round>:<seq>:<unix ns of the write>" whose value is
// that timestamp too. An observer independent of the link subscribes
// directly to the keyspace events of the redis-server written TO
// (notify-keyspace-events enabled there by the bench) and takes, per key,
// the delay from the write (just before the SET was sent) to the arrival of
// its first "set" event: the moment the other side holds it. Both clocks
// are this process's. Three ways (lagWays): lag (push, local → hub),
// lagboth (direction both, local → hub) and lagrc (direction both,
// hub → local), all against the same targets.
//
// The writer sends what is due every ~0.5 ms, pipelined (each key stamped
// as it is queued), so "fixed rate" holds at millisecond granularity.
//
// Also printed: the link's own Stats.Lag quantiles over the same period
// (bucket upper bounds, from change to copy), for comparison, and the
// latency of its requests to the remote (Stats.RemoteLatency, bucket upper
// bounds).

var lagTargets = map[int]float64{1000: 5, 5000: 15} // p99 ms

// lagWay is one direction measured: the link's direction, and whether the
// writes happen on the hub (copied to the local Redis) instead.
type lagWay struct {
	name       string // figure prefix: lag1k, lagboth1k, lagrc1k
	dir        config.Direction
	fromRemote bool
}

var lagWays = []lagWay{
	{"lag", config.Push, false},
	{"lagboth", config.Both, false}, // local → hub through a link in direction both
	{"lagrc", config.Both, true},    // hub → local
}

func runLag(ctx context.Context, b *bench) error {
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()

	dur := 5 * time.Second
	if b.quick {
		dur = 2 * time.Second
	}
	rates := []int{1000, 5000}
	s := series{}
	for round := range b.rounds {
		for _, way := range lagWays {
			if err := lagRound(ctx, b, hub, local, remote, way, rates, round, dur, s); err != nil {
				return err
			}
		}
	}
	// The ceiling of the ways that listen to the hub: how late its own
	// keyspace events arrive through the front, with no link at all.
	for round := range b.rounds {
		for _, rate := range rates {
			r, err := hubEventLag(ctx, hub, remote, rate, round, dur)
			if err != nil {
				return fmt.Errorf("hub events at %d/s: %w", rate, err)
			}
			k := "hub_events" + kn(rate)
			s.add(k+"/p50", r.p50)
			s.add(k+"/p99", r.p99)
			s.add(k+"/max", r.max)
			s.add(k+"/missing", float64(r.missing))
		}
	}
	for _, rate := range rates {
		k := "hub_events" + kn(rate)
		b.emit("ceiling_"+k, append([]any{"p50_ms", s.med(k + "/p50")}, append(s.headline("p99_ms", k+"/p99"),
			"max_ms", s.med(k+"/max"), "missing", s.med(k+"/missing"), "front", frontName(hub.Front()),
			"secs", dur.Seconds(), "rounds", b.rounds)...)...)
	}
	for _, way := range lagWays {
		for _, rate := range rates {
			k := way.name + kn(rate)
			p99 := s.med(k + "/p99")
			b.emit(k, append([]any{"p50_ms", s.med(k + "/p50")}, append(s.headline("p99_ms", k+"/p99"),
				"max_ms", s.med(k+"/max"),
				"target_p99_ms", lagTargets[rate],
				"pass", yesNo(p99 <= lagTargets[rate] && s.med(k+"/missing") == 0),
				"missing", s.med(k+"/missing"),
				"writes_per_s", s.med(k+"/rate"),
				"link_hist_p50_ms_le", s.med(k+"/link_p50"),
				"link_hist_p99_ms_le", s.med(k+"/link_p99"),
				"remote_requests", s.med(k+"/reqs"),
				"request_p50_ms_le", s.med(k+"/req_p50"),
				"request_p99_ms_le", s.med(k+"/req_p99"),
				"secs", dur.Seconds(), "rounds", b.rounds)...)...)
		}
	}
	return nil
}

// lagRound measures one way at each rate with a fresh link.
func lagRound(ctx context.Context, b *bench, hub *webdistest.Hub, local, remote redis.Conn, way lagWay, rates []int, round int, dur time.Duration, s series) error {
	if err := flush(local, remote); err != nil {
		return err
	}
	// The link turns notifications on where it listens; the observer
	// needs them where it listens too.
	for _, c := range []redis.Conn{local, remote} {
		if _, err := c.Do("CONFIG", "SET", "notify-keyspace-events", "KA"); err != nil {
			return err
		}
	}
	cfg := linkConfig(hub, "lag:")
	cfg.Direction = way.dir
	if way.dir == config.Both {
		dir, err := os.MkdirTemp("", "redisrepl-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.StateFile = filepath.Join(dir, "lag.state")
	}
	l, err := b.startLink(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer l.stop()
	writer, observed := local, hub.Remote
	if way.fromRemote {
		writer, observed = remote, hub.Local
	}
	// Steady state is measured: half a second of writes first opens the
	// link's connections and loads its scripts (TLS handshakes would be
	// the slowest samples of a fresh link).
	if _, err := lagOnce(ctx, writer, observed, fmt.Sprintf("lag:%s:warm:%d:", way.name, round), 1000, 500*time.Millisecond); err != nil {
		return fmt.Errorf("%s warm-up: %w", way.name, err)
	}
	for _, rate := range rates {
		before, reqBefore := snap(l.Stats.Lag), snap(l.Stats.RemoteLatency)
		prefix := fmt.Sprintf("lag:%s:r%d:%d:", way.name, rate, round)
		r, err := lagOnce(ctx, writer, observed, prefix, rate, dur)
		if err != nil {
			return fmt.Errorf("%s at %d/s: %w", way.name, rate, err)
		}
		after, reqAfter := snap(l.Stats.Lag), snap(l.Stats.RemoteLatency)
		k := way.name + kn(rate)
		s.add(k+"/p50", r.p50)
		s.add(k+"/p99", r.p99)
		s.add(k+"/max", r.max)
		s.add(k+"/rate", r.rate)
		s.add(k+"/missing", float64(r.missing))
		s.add(k+"/link_p50", after.quantileSince(before, 0.5))
		s.add(k+"/link_p99", after.quantileSince(before, 0.99))
		s.add(k+"/req_p50", reqAfter.quantileSince(reqBefore, 0.5))
		s.add(k+"/req_p99", reqAfter.quantileSince(reqBefore, 0.99))
		s.add(k+"/reqs", float64(reqAfter.n-reqBefore.n))
		progress("round %d %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d missing (%.0f writes/s)",
			round+1, k, r.p50, r.p99, r.max, r.missing, r.rate)
	}
	return nil
}

func frontName(f webdistest.Front) string {
	if f == webdistest.FrontGateway {
		return "gateway"
	}
	return "nginx+webdis"
}

// hubEventLag writes on the hub's Redis at rate for dur and measures when
// each key's event arrives through the hub's front (Webdis's PSUBSCRIBE
// stream over HTTPS, as a link in direction both listens).
func hubEventLag(ctx context.Context, hub *webdistest.Hub, remote redis.Conn, rate, round int, dur time.Duration) (*lagResult, error) {
	c, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := remote.Do("CONFIG", "SET", "notify-keyspace-events", "KA"); err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("hubev:r%d:%d:", rate, round)
	var mu sync.Mutex
	seen := map[string]bool{}
	var delays []float64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subscribed := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		ended <- c.Subscribe(sctx, []byte(dedup.KeyspaceChannel(0)+prefix+"*"), func() { close(subscribed) }, func(ch, data []byte) {
			now := time.Now().UnixNano()
			if string(data) != "set" {
				return
			}
			key := string(ch)
			ts, err := strconv.ParseInt(key[strings.LastIndexByte(key, ':')+1:], 10, 64)
			if err != nil {
				return
			}
			mu.Lock()
			if !seen[key] {
				seen[key] = true
				delays = append(delays, float64(now-ts)/1e6)
			}
			mu.Unlock()
		})
	}()
	select {
	case <-subscribed:
	case err := <-ended:
		return nil, fmt.Errorf("subscribe: %v", err)
	case <-time.After(10 * time.Second):
		return nil, errors.New("subscribe: no confirmation within 10s")
	}
	sent, wrote, err := writeAtRate(ctx, remote, prefix, rate, dur)
	if err != nil {
		return nil, err
	}
	_ = waitUntil(ctx, 5*time.Second, 10*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delays) >= sent
	})
	cancel()
	mu.Lock()
	defer mu.Unlock()
	return lagFrom(delays, sent, wrote), nil
}

type lagResult struct {
	p50, p99, max, rate float64
	missing             int
}

// lagOnce writes on w at rate for dur, and observes on the Redis that
// dial reaches when each key arrives.
func lagOnce(ctx context.Context, w redis.Conn, dial func() (redis.Conn, error), prefix string, rate int, dur time.Duration) (*lagResult, error) {
	obs, err := observe(dial, prefix)
	if err != nil {
		return nil, err
	}
	defer obs.close()

	sent, wrote, err := writeAtRate(ctx, w, prefix, rate, dur)
	if err != nil {
		return nil, err
	}
	// Whatever has not arrived 5 s after the last write is missing.
	_ = waitUntil(ctx, 5*time.Second, 10*time.Millisecond, func() bool { return obs.count() >= sent })
	delays := obs.close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return lagFrom(delays, sent, wrote), nil
}

// lagFrom summarizes the delays (ms) of the keys that arrived out of sent
// written in wrote.
func lagFrom(delays []float64, sent int, wrote time.Duration) *lagResult {
	slices.Sort(delays)
	r := &lagResult{rate: float64(sent) / wrote.Seconds(), missing: sent - len(delays)}
	if len(delays) > 0 {
		r.p50, r.p99, r.max = percentile(delays, 0.5), percentile(delays, 0.99), delays[len(delays)-1]
	}
	return r
}

// writeAtRate SETs keys prefix<seq>:<unix ns> on c at rate for dur, and
// returns how many it wrote in how long.
func writeAtRate(ctx context.Context, c redis.Conn, prefix string, rate int, dur time.Duration) (int, time.Duration, error) {
	start := time.Now()
	sent := 0
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= dur {
			break
		}
		// What is due is sent in one pipeline: one round trip per tick
		// keeps the writer's pace even at 5,000/s on a busy machine.
		n := 0
		for due := int(el.Seconds() * float64(rate)); sent < due; sent++ {
			ts := time.Now().UnixNano()
			key := prefix + strconv.Itoa(sent) + ":" + strconv.FormatInt(ts, 10)
			if err := c.Send("SET", key, ts); err != nil {
				return 0, 0, err
			}
			n++
		}
		if n > 0 {
			if err := c.Flush(); err != nil {
				return 0, 0, err
			}
			for range n {
				if _, err := c.Receive(); err != nil {
					return 0, 0, err
				}
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return sent, time.Since(start), ctx.Err()
}

// observer records, per key of a prefix, when the observed redis-server
// announced its first "set".
type observer struct {
	conn   redis.Conn
	mu     sync.Mutex
	seen   map[string]bool
	delays []float64 // ms
	done   chan struct{}
	once   sync.Once
}

func observe(dial func() (redis.Conn, error), prefix string) (*observer, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	channel := dedup.KeyspaceChannel(0)
	psc := redis.PubSubConn{Conn: c}
	if err := psc.PSubscribe(channel + prefix + "*"); err != nil {
		c.Close()
		return nil, err
	}
	// Wait for the confirmation: events before it would be lost.
	switch v := psc.ReceiveWithTimeout(5 * time.Second).(type) {
	case redis.Subscription:
	case error:
		c.Close()
		return nil, v
	default:
		c.Close()
		return nil, fmt.Errorf("psubscribe: unexpected %T", v)
	}
	o := &observer{conn: c, seen: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		for {
			switch v := psc.Receive().(type) {
			case redis.Message:
				now := time.Now().UnixNano()
				if string(v.Data) != "set" {
					continue
				}
				key := strings.TrimPrefix(v.Channel, channel)
				i := strings.LastIndexByte(key, ':')
				ts, err := strconv.ParseInt(key[i+1:], 10, 64)
				if err != nil {
					continue
				}
				o.mu.Lock()
				if !o.seen[key] {
					o.seen[key] = true
					o.delays = append(o.delays, float64(now-ts)/1e6)
				}
				o.mu.Unlock()
			case error:
				return
			}
		}
	}()
	return o, nil
}

func (o *observer) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.delays)
}

// close stops the observer and returns the delays (ms) it saw.
func (o *observer) close() []float64 {
	o.once.Do(func() { o.conn.Close() })
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.delays
}
