package main

import (
	"context"
	"fmt"
	"math/rand/v2"
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
// Each lag is printed beside its floor: the one-way delay local → hub;
// hub → local one-way plus a round trip where the link reads the value
// after the event (nginx+Webdis), one way where the event carries it (the
// gateway: values on the stream, docs/ARCHITECTURE.md). Lags are measured as in lag.go (observers on
// the redis-servers themselves, not through the proxy). conns= is how many
// connections the link opened through the proxy during the measure: each
// costs round trips on the critical path.

// wanRTTs are the round trips simulated (half each way).
var wanRTTs = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// Goals at 50 ms RTT: lag p50 and p99 ceilings for local → hub,
// and the burst's share of the loopback burst, per front.
const (
	wanGoalLagP50     = 30.0 // ms, at 25 ms one way
	wanGoalLagP99     = 45.0 // also hub → local through the gateway (values on the stream)
	wanGoalLagRCRead  = 95.0 // hub → local where the link reads the value: one way + a round trip
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
				if way == "lagrc" && f.opts.Front != webdistest.FrontGateway {
					floor = ms + 2*ms // the event one way, then a read: a round trip
				} // the gateway sends the key's state with its event: one way

				p50, p99 := s.med(k+"/p50"), s.med(k+"/p99")
				kv := append([]any{"p50_ms", p50}, append(s.headline("p99_ms", k+"/p99"),
					"max_ms", s.med(k+"/max"), "floor_ms", floor,
					"p50_over_floor_ms", p50-floor, "p99_over_floor_ms", p99-floor,
					"missing", s.med(k+"/missing"), "writes_per_s", s.med(k+"/rate"),
					"conns", s.med(k+"/conns"), "remote_requests", s.med(k+"/reqs"),
					"request_p50_ms_le", s.med(k+"/req_p50"))...)
				switch {
				case rtt != 50*time.Millisecond:
				case way != "lagrc":
					kv = append(kv, "goal", fmt.Sprintf("p50<=%g,p99<=%g", wanGoalLagP50, wanGoalLagP99),
						"pass", yesNo(p50 <= wanGoalLagP50 && p99 <= wanGoalLagP99 && s.med(k+"/missing") == 0))
				default:
					goal := wanGoalLagRCRead
					if f.opts.Front == webdistest.FrontGateway {
						goal = wanGoalLagP99
					}
					kv = append(kv, "goal", fmt.Sprintf("p99<=%g", goal), "pass", yesNo(p99 <= goal && s.med(k+"/missing") == 0))
				}
				b.emit("wan_"+k, append(kv, "secs", dur.Seconds(), "rounds", b.rounds)...)
			}
		}
		if err := wanBandwidth(ctx, b, hub, far, proxy, f.name); err != nil {
			proxy.Close()
			b.closeHub(hub)
			return err
		}
		proxy.Close()
		b.closeHub(hub)
	}
	return nil
}

// The line of wanBandwidth: capped each way, 25 ms one way; values of
// lab-like text (readings with varying digits), which compress about 3x.
const (
	wanLineBytesPerS = 2 << 20 // 16 Mbit/s
	wanBWKeys        = 200
	wanBWValue       = 64 << 10
)

// wanBandwidth measures, per front, a push burst of wanBWKeys values of
// wanBWValue bytes across a line capped at wanLineBytesPerS:
//
//	wan_bwburst<n>_<front>   keys/s beside the line's ceiling for these
//	                         values sent plain (rate / value size); over
//	                         1x, they went compressed (the gateway takes
//	                         gzip; nginx+Webdis does not, and its values
//	                         also grow by percent-encoding)
func wanBandwidth(ctx context.Context, b *bench, hub *webdistest.Hub, far string, proxy *webdistest.FaultProxy, front string) error {
	proxy.SetDelay(25*time.Millisecond, 25*time.Millisecond)
	proxy.SetBandwidth(wanLineBytesPerS)
	defer proxy.SetBandwidth(0)
	local, remote, err := dialBoth(hub)
	if err != nil {
		return err
	}
	defer local.Close()
	defer remote.Close()
	n := wanBWKeys
	if b.quick {
		n /= 4
	}
	vals := make([][]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range vals {
		var v []byte
		for len(v) < wanBWValue {
			v = fmt.Appendf(v, "t=%d,ch%02d=%.4f;", 1700000000+i*60+len(v), rng.IntN(64), rng.Float64()*100)
		}
		vals[i] = v[:wanBWValue]
	}
	k := fmt.Sprintf("bwburst%d_%s", n, front)
	s := series{}
	for round := range b.rounds {
		cfg := linkConfig(hub, "burst:")
		cfg.Remote = far
		up0, _ := proxy.Bytes()
		r, err := burstOf(ctx, b, hub, cfg, local, remote, n, func(i int) []byte { return vals[i] })
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		up, _ := proxy.Bytes()
		s.add(k, r.keysPerS)
		s.add(k+"/wire", float64(up-up0)/float64(n*wanBWValue))
		s.add(k+"/complete", boolf(r.complete))
		progress("round %d wan_%s: %.1f keys/s, %.2f bytes up per value byte", round+1, k, r.keysPerS, s.med(k+"/wire"))
	}
	ceiling := float64(wanLineBytesPerS) / float64(wanBWValue)
	b.emit("wan_"+k, append(s.headline("keys_per_s", k), "line_ceiling_keys_per_s", ceiling,
		"ratio", ratio(s.med(k)/ceiling), "wire_bytes_per_value_byte", s.med(k+"/wire"),
		"complete_rounds", s.med(k+"/complete"), "rounds", b.rounds)...)
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
