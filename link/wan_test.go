package link_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// behindDelay puts a delaying proxy (oneWay each direction) between a
// link of ns and hub's front, and returns the link's config through it.
func behindDelay(t *testing.T, hub *webdistest.Hub, ns string, oneWay time.Duration) (config.Link, *webdistest.FaultProxy) {
	t.Helper()
	u, err := url.Parse(hub.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := webdistest.NewFaultProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetDelay(oneWay, oneWay)
	u.Host = proxy.Addr
	cfg := linkConfig(hub, ns)
	cfg.Remote = u.String()
	return cfg, proxy
}

// arrivals records when the keys of a prefix are first set on a Redis,
// from its own keyspace events.
type arrivals struct {
	mu   sync.Mutex
	at   map[string]time.Time
	conn redis.Conn
	done chan struct{}
}

func watchArrivals(t *testing.T, c redis.Conn, dial func() (redis.Conn, error), prefix string) *arrivals {
	t.Helper()
	do(t, c, "CONFIG", "SET", "notify-keyspace-events", "KA")
	sub, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	psc := redis.PubSubConn{Conn: sub}
	if err := psc.PSubscribe("__keyspace@0__:" + prefix + "*"); err != nil {
		t.Fatal(err)
	}
	if _, ok := psc.Receive().(redis.Subscription); !ok {
		t.Fatal("no psubscribe confirmation")
	}
	a := &arrivals{at: map[string]time.Time{}, conn: sub, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			switch m := psc.Receive().(type) {
			case redis.Message:
				now := time.Now()
				key := strings.TrimPrefix(m.Channel, "__keyspace@0__:")
				a.mu.Lock()
				if _, seen := a.at[key]; !seen {
					a.at[key] = now
				}
				a.mu.Unlock()
			case error:
				return
			}
		}
	}()
	t.Cleanup(func() { sub.Close(); <-a.done })
	return a
}

func (a *arrivals) when(key string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.at[key]
	return at, ok
}

// A key written while a large batch is in flight across a WAN goes out at
// once in a request of its own, and does not wait for that batch's reply:
// it arrives within the one-way delay plus 20 ms. One worker, so that no
// idle worker could hide a wait. nginx speaks HTTP/2 here (the gateway
// always does): through nginx over HTTP/1.1 through this proxy even a key
// written alone arrives 20 to 40 ms after the one-way delay, whatever the
// link does (measured: its request leaves on an idle connection within
// 50 µs).
func TestWANKeyDoesNotWaitForBatchInFlight(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	hub := webdistest.New(t, webdistest.Options{MaxBodySize: "64m", HTTP2: true, Log: t.Logf})
	cfg, _ := behindDelay(t, hub, "wan:", oneWay)
	cfg.Workers = 1
	startLink(t, cfg)
	local, remote := conns(t, hub)
	arrived := watchArrivals(t, remote, hub.Remote, "wan:")

	var lags []time.Duration
	for round := range 5 {
		// A large batch: 256 keys (batch_keys) of 1 KiB, written at once.
		for i := range 256 {
			if err := local.Send("SET", fmt.Sprintf("wan:big:%d:%d", round, i), strings.Repeat("b", 1024)); err != nil {
				t.Fatal(err)
			}
		}
		if err := local.Flush(); err != nil {
			t.Fatal(err)
		}
		for range 256 {
			if _, err := local.Receive(); err != nil {
				t.Fatal(err)
			}
		}
		// The batch leaves within a millisecond or so and its reply takes
		// a round trip (100 ms): 10 ms later, it is in flight.
		time.Sleep(10 * time.Millisecond)
		key := fmt.Sprintf("wan:late:%d", round)
		wrote := time.Now()
		do(t, local, "SET", key, "v")
		waitFor(t, 10*time.Second, key+" on the hub", func() bool { _, ok := arrived.when(key); return ok })
		at, _ := arrived.when(key)
		lags = append(lags, at.Sub(wrote))
		waitFor(t, 10*time.Second, "the big batch on the hub", func() bool {
			_, ok := arrived.when(fmt.Sprintf("wan:big:%d:255", round))
			return ok
		})
	}
	t.Logf("lag of a key written behind a batch in flight, one way %v: %v", oneWay, lags)
	slices.Sort(lags)
	// The median of five: the machine is shared, one slow sample is no
	// verdict; waiting for the batch's reply costs a whole round trip.
	if med := lags[len(lags)/2]; med > oneWay+20*time.Millisecond {
		t.Errorf("median lag %v, over one way (%v) + 20 ms: the key waited for the reply of the batch before it", med, oneWay)
	}
	waitEqual(t, hub, "wan:", 20*time.Second)
}

// Cutting every connection of a link under load loses nothing: the writes
// in flight fail, are noticed and retried on new connections, and both
// sides end equal.
func TestWANReconnectUnderLoadLosesNothing(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{MaxBodySize: "64m", Log: t.Logf})
			cfg, proxy := behindDelay(t, hub, "cut:", 10*time.Millisecond)
			cfg.Direction = dir
			if dir == config.Both {
				cfg.StateFile = t.TempDir() + "/state"
			}
			l := startLink(t, cfg)
			local, _ := conns(t, hub)
			errs0, conns0 := l.Stats.Errors.Load(), proxy.Accepted()
			stop := time.Now().Add(3 * time.Second)
			cuts := 0
			for i := 0; time.Now().Before(stop); i++ {
				// New keys and overwrites of older ones, pipelined by 50.
				for j := range 50 {
					if err := local.Send("SET", fmt.Sprintf("cut:%d", (i*50+j)%3000), fmt.Sprintf("v%d", i)); err != nil {
						t.Fatal(err)
					}
				}
				if err := local.Flush(); err != nil {
					t.Fatal(err)
				}
				for range 50 {
					if _, err := local.Receive(); err != nil {
						t.Fatal(err)
					}
				}
				if i%100 == 50 {
					proxy.CutAll()
					cuts++
				}
				time.Sleep(5 * time.Millisecond)
			}
			if cuts == 0 {
				t.Fatal("no cut happened: the writer was too slow")
			}
			got := waitEqual(t, hub, "cut:", 30*time.Second)
			if len(got) != 3000 {
				t.Errorf("%d keys on both sides, want 3000", len(got))
			}
			// Noticed: the link dialled again (a request cut in flight is
			// resent by net/http when it is safe, so it may count no error).
			if d := proxy.Accepted() - conns0; d == 0 {
				t.Error("the link opened no new connection after the cuts")
			}
			t.Logf("%d cuts: %d new connections, %d errors counted", cuts, proxy.Accepted()-conns0, l.Stats.Errors.Load()-errs0)
		})
	}
}

// Across a line of capped bandwidth, values that compress travel gzipped
// to a hub that takes it (the gateway says so on its responses): the
// bytes on the wire are a fraction of the values'. nginx+Webdis, which
// does not say so, gets them plain, and both hubs end equal to the local
// side.
func TestWANCompressesForAHubThatTakesGzip(t *testing.T) {
	for name, front := range map[string]webdistest.Front{"gateway": webdistest.FrontGateway, "nginx": webdistest.FrontNginx} {
		t.Run(name, func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{MaxBodySize: "64m", Front: front, Log: t.Logf})
			cfg, proxy := behindDelay(t, hub, "gz:", 5*time.Millisecond)
			proxy.SetBandwidth(8 << 20)
			startLink(t, cfg)
			local, _ := conns(t, hub)
			up0, _ := proxy.Bytes()
			const n, size = 64, 64 << 10
			for i := range n {
				// Text-like values, each different: what lab state looks like.
				v := strings.Repeat(fmt.Sprintf("reading %d=%.3f;", i, float64(i)/7), size/8)[:size]
				do(t, local, "SET", fmt.Sprintf("gz:%d", i), v)
			}
			waitEqual(t, hub, "gz:", 30*time.Second)
			up, _ := proxy.Bytes()
			sent := up - up0
			t.Logf("%s: %d KiB of values, %d KiB up the wire", name, n*size>>10, sent>>10)
			switch compressed := sent < n*size/2; {
			case front == webdistest.FrontGateway && !compressed:
				t.Errorf("%d bytes up the wire for %d of values: not compressed", sent, n*size)
			case front == webdistest.FrontNginx && compressed:
				t.Errorf("%d bytes up the wire for %d of values: compressed for a hub that did not say it takes gzip", sent, n*size)
			}
		})
	}
}
