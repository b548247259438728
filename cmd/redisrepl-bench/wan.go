package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// WAN: the link across a simulated WAN. A delaying proxy
// (webdistest.FaultProxy: a delay line per direction, so the delay is
// paid once per way whatever is in flight) sits between the link and the
// hub's front, nginx+Webdis (over HTTP/1.1, and over HTTP/2: "nginxh2",
// with http2 on nginx's listen) and the gateway (the redisrepl binary, as
// a hub runs it; HTTP/2), at each round trip of wanRTTs. Per front and round trip:
//
//	wan_burst20k_<front>_rtt<ms>       push, 20,000 keys, beside the
//	                                   loopback burst of the same round
//	                                   (same front, no proxy)
//	wan_burstboth20k_<front>_rtt<ms>   the same in direction both
//	wan_lag1k_<front>_rtt<ms>          push, 1,000 writes/s, local → hub
//	wan_lagboth1k_<front>_rtt<ms>      direction both, local → hub
//	wan_lagrc1k_<front>_rtt<ms>        direction both, hub → local
//
// Each lag is printed beside its floor (DESIGN.md §9): the one-way delay
// local → hub; one-way plus a round trip hub → local, where the link reads
// the value after the event. Lags are measured as in lag.go (observers on
// the redis-servers themselves, not through the proxy). conns= is how many
// connections the link opened through the proxy during the measure: each
// costs round trips on the critical path.

// wanRTTs are the round trips simulated (half each way).
var wanRTTs = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// Goals at 50 ms RTT: lag p50 and p99 ceilings for local → hub,
// and the burst's share of the loopback burst, per front.
const (
	wanGoalLagP50     = 30.0 // ms, at 25 ms one way
	wanGoalLagP99     = 45.0
	wanGoalBurstGW    = 0.9
	wanGoalBurstNginx = 0.7
)

func runWAN(ctx context.Context, b *bench) error {
	bin, cleanup, err := gatewayBinary(b.gatewayBin)
	if err != nil {
		return err
	}
	defer cleanup()
	fronts := []struct {
		name string
		opts webdistest.Options
	}{
		{"nginx", defaultHub},
		{"nginxh2", webdistest.Options{MaxBodySize: defaultHub.MaxBodySize, HTTP2: true}},
		{"gateway", webdistest.Options{MaxBodySize: defaultHub.MaxBodySize, Front: webdistest.FrontGateway,
			GatewayBinary: bin, Namespaces: []string{"burst:", "lag:"}}},
	}
	rtts := wanRTTs
	dur := 5 * time.Second
	if b.quick {
		rtts, dur = rtts[:1], 2*time.Second
	}
	const n, rate = 20_000, 1000
	for _, f := range fronts {
		hub, err := b.startHub(ctx, f.opts)
		if err != nil {
			return err
		}
		u, err := url.Parse(hub.URL)
		if err != nil {
			return err
		}
		proxy, err := webdistest.NewFaultProxy(u.Host)
		if err != nil {
			return err
		}
		u.Host = proxy.Addr
		far := u.String()
		s := series{}
		for _, rtt := range rtts {
			one := rtt / 2
			proxy.SetDelay(one, one)
			tag := fmt.Sprintf("%s_rtt%d", f.name, rtt.Milliseconds())
			for round := range b.rounds {
				if err := wanRound(ctx, b, hub, far, proxy, tag, round, n, rate, dur, s); err != nil {
					proxy.Close()
					b.closeHub(hub)
					return fmt.Errorf("%s: %w", tag, err)
				}
			}
			ms := float64(one) / float64(time.Millisecond)
			burstGoal := wanGoalBurstNginx
			if f.opts.Front == webdistest.FrontGateway {
				burstGoal = wanGoalBurstGW
			}
			for _, way := range []string{"burst", "burstboth"} {
				k := way + kn(n) + "_" + tag
				wan, loop := s.med(k), s.med(k+"/loopback")
				kv := append(s.headline("keys_per_s", k), "loopback_keys_per_s", loop, "ratio", ratio(wan/loop),
					"conns", s.med(k+"/conns"), "remote_requests", s.med(k+"/reqs"), "complete_rounds", s.med(k+"/complete"))
				if way == "burst" && rtt == 50*time.Millisecond {
					kv = append(kv, "goal", fmt.Sprintf(">=%gx", burstGoal), "pass", yesNo(wan/loop >= burstGoal))
				}
				b.emit("wan_"+k, append(kv, "rounds", b.rounds)...)
			}
			for _, way := range []string{"lag", "lagboth", "lagrc"} {
				k := way + kn(rate) + "_" + tag
				floor := ms
				if way == "lagrc" {
					floor = ms + 2*ms // the event one way, then a read: a round trip
				}
				p50, p99 := s.med(k+"/p50"), s.med(k+"/p99")
				kv := append([]any{"p50_ms", p50}, append(s.headline("p99_ms", k+"/p99"),
					"max_ms", s.med(k+"/max"), "floor_ms", floor,
					"p50_over_floor_ms", p50-floor, "p99_over_floor_ms", p99-floor,
					"missing", s.med(k+"/missing"), "writes_per_s", s.med(k+"/rate"),
					"conns", s.med(k+"/conns"), "remote_requests", s.med(k+"/reqs"),
					"request_p50_ms_le", s.med(k+"/req_p50"))...)
				if way != "lagrc" && rtt == 50*time.Millisecond {
					kv = append(kv, "goal", fmt.Sprintf("p50<=%g,p99<=%g", wanGoalLagP50, wanGoalLagP99),
						"pass", yesNo(p50 <= wanGoalLagP50 && p99 <= wanGoalLagP99 && s.med(k+"/missing") == 0))
				}
				b.emit("wan_"+k, append(kv, "secs", dur.Seconds(), "rounds", b.rounds)...)
			}
		}
		proxy.Close()
		b.closeHub(hub)
	}
	return nil
}

// wanRound measures, once, each figure of one front at the proxy's delay.
func wanRound(ctx context.Context, b *bench, hub *webdistest.Hub, far string, proxy *webdistest.FaultProxy, tag string, round, n, rate int, dur time.Duration, s series) error {
	local, remote, err := dialBoth(hub)
	if err != nil {
		return err
	}
	defer local.Close()
	defer remote.Close()
	dir, err := os.MkdirTemp("", "redisrepl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgOf := func(ns string, d config.Direction, via string) config.Link {
		cfg := linkConfig(hub, ns)
		cfg.Remote, cfg.Direction = via, d
		if d == config.Both {
			cfg.StateFile = filepath.Join(dir, fmt.Sprintf("%s-%d.state", ns[:len(ns)-1], time.Now().UnixNano()))
		}
		return cfg
	}
	for _, way := range []struct {
		name string
		dir  config.Direction
	}{{"burst", config.Push}, {"burstboth", config.Both}} {
		k := way.name + kn(n) + "_" + tag
		loop, err := burstWith(ctx, b, hub, cfgOf("burst:", way.dir, hub.URL), local, remote, n)
		if err != nil {
			return fmt.Errorf("loopback %s: %w", way.name, err)
		}
		c0 := proxy.Accepted()
		r, err := burstWith(ctx, b, hub, cfgOf("burst:", way.dir, far), local, remote, n)
		if err != nil {
			return fmt.Errorf("%s: %w", way.name, err)
		}
		s.add(k, r.keysPerS)
		s.add(k+"/loopback", loop.keysPerS)
		// The link's start (its first connections) is in there too: the
		// figure is the most a burst opened.
		s.add(k+"/conns", float64(proxy.Accepted()-c0))
		s.add(k+"/reqs", float64(r.requests))
		s.add(k+"/complete", boolf(r.complete))
		progress("round %d wan_%s: %.0f keys/s, loopback %.0f keys/s (%.2fx)", round+1, k, r.keysPerS, loop.keysPerS, r.keysPerS/loop.keysPerS)
	}
	for _, way := range lagWays {
		if err := flush(local, remote); err != nil {
			return err
		}
		for _, c := range []redis.Conn{local, remote} {
			if _, err := c.Do("CONFIG", "SET", "notify-keyspace-events", "KA"); err != nil {
				return err
			}
		}
		l, err := b.startLink(ctx, cfgOf("lag:", way.dir, far), true)
		if err != nil {
			return err
		}
		writer, observed := local, hub.Remote
		if way.fromRemote {
			writer, observed = remote, hub.Local
		}
		k := way.name + kn(rate) + "_" + tag
		if _, err := lagOnce(ctx, writer, observed, fmt.Sprintf("lag:wan:%s:warm:%d:", k, round), rate, 500*time.Millisecond); err != nil {
			l.stop()
			return fmt.Errorf("%s warm-up: %w", k, err)
		}
		reqBefore, c0 := snap(l.Stats.RemoteLatency), proxy.Accepted()
		r, err := lagOnce(ctx, writer, observed, fmt.Sprintf("lag:wan:%s:%d:", k, round), rate, dur)
		reqAfter := snap(l.Stats.RemoteLatency)
		l.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		s.add(k+"/p50", r.p50)
		s.add(k+"/p99", r.p99)
		s.add(k+"/max", r.max)
		s.add(k+"/rate", r.rate)
		s.add(k+"/missing", float64(r.missing))
		s.add(k+"/conns", float64(proxy.Accepted()-c0))
		s.add(k+"/reqs", float64(reqAfter.n-reqBefore.n))
		s.add(k+"/req_p50", reqAfter.quantileSince(reqBefore, 0.5))
		progress("round %d wan_%s: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d missing", round+1, k, r.p50, r.p99, r.max, r.missing)
	}
	return nil
}
