package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// sentinelHub is a gateway in front of a hub managed by Sentinel, and a
// local Redis.
type sentinelHub struct {
	set   *webdistest.SentinelSet
	gw    *gateway.Gateway
	certs *webdistest.Certs
	local string // the local Redis
	url   string // the gateway's URL
	dir   string
}

func startSentinelHub(t *testing.T) *sentinelHub {
	t.Helper()
	set := webdistest.NewSentinelSet(t, "hub")
	dir := t.TempDir()
	certs, err := webdistest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	local, err := webdistest.StartRedis(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Stop() })
	gport, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", gport)
	cfg, err := webdistest.GatewayConfig(certs, listen, "", webdistest.Options{Namespaces: []string{"lab1:"},
		Tenants: []config.Tenant{{Name: "other", Client: "other", Namespaces: []string{"lab2:"}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Redis, cfg.RedisAddr = "", "" // nothing but the Sentinels names the hub
	cfg.Sentinel = config.NewSentinel(set.Addrs(), set.Name)
	gw, err := gateway.New(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return &sentinelHub{set: set, gw: gw, certs: certs, local: local.Addr, url: "https://" + listen + "/redis", dir: dir}
}

func (h *sentinelHub) linkConfig(direction string) config.Link {
	return config.Link{Name: "sentinel-" + direction, Local: h.local, LocalAddr: h.local, Namespace: "lab1:",
		Remote: h.url, Cert: h.certs.ClientCert, Key: h.certs.ClientKey, CA: h.certs.CA, Direction: config.Direction(direction),
		StateFile: filepath.Join(h.dir, "link.state")}.WithDefaults()
}

func dialT(t *testing.T, addr string) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(2*time.Second), redis.DialReadTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLinksFollowHubFailover: a SENTINEL FAILOVER of the hub while a link
// copies a stream of writes, in push and in both. The gateway follows the
// new master, sets the tenants' ACL users on it, ends the link's stream,
// and the link resyncs: both sides end equal, with every write. In the
// last case the old master hangs (SIGSTOP) right after the failover, as a
// partitioned one does: nothing breaks its connections, so the gateway must
// close them itself.
func TestLinksFollowHubFailover(t *testing.T) {
	for _, tc := range []struct {
		name, direction string
		hung            bool
	}{{"push", "push", false}, {"both", "both", false}, {"both old master hung", "both", true}} {
		direction := tc.direction
		t.Run(tc.name, func(t *testing.T) {
			h := startSentinelHub(t)
			first, err := h.set.Master()
			if err != nil {
				t.Fatal(err)
			}
			l, err := link.New(h.linkConfig(direction), zerolog.New(io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); l.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			webdistest.WaitFor(t, 15*time.Second, "link live", func() bool { return l.State() == link.Live })
			if direction == "both" { // the hub's writes come back before the failover
				dialT(t, first).Do("SET", "lab1:from-hub", "before")
			}

			w := webdistest.StartWriter(t, func() string { return h.local }, "lab1:", 500, 200*time.Microsecond)
			time.Sleep(500 * time.Millisecond)
			resyncs := l.Status().Resyncs
			began := time.Now()
			next, err := h.set.Failover()
			if err != nil {
				t.Fatal(err)
			}
			failover := time.Since(began)
			if tc.hung {
				resume, err := h.set.Server(first).Pause()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resume() })
			}
			time.Sleep(2 * time.Second) // writes go on after it
			acked := w.End()
			if direction == "both" {
				dialT(t, next).Do("SET", "lab1:from-hub-after", "after")
				acked["lab1:from-hub-after"] = "after"
			}
			dump, took := webdistest.WaitEqualAt(t, h.local, next, "lab1:", 60*time.Second)
			if m := webdistest.Missing(acked, dump); len(m) != 0 {
				t.Errorf("%d of %d acknowledged writes are missing after the failover: %q", len(m), len(acked), m)
			}
			if direction == "both" {
				if k, ok := dump["lab1:from-hub"]; !ok || k.Items()[0] != "before" {
					t.Errorf("the hub's write before the failover: %+v", k)
				}
			}
			t.Logf("failover %s -> %s took %v; %d writes (%d keys), 0 lost; converged %v after the last write",
				first, next, failover.Round(time.Millisecond), w.Writes(), len(acked), took.Round(time.Millisecond))

			rec := httptest.NewRecorder()
			h.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if !strings.Contains(rec.Body.String(), "\nredisrepl_gateway_hub_failovers_total 1\n") {
				t.Errorf("the gateway's /metrics does not count 1 failover:\n%s", grepLines(rec.Body.String(), "failover"))
			}
			// In push the new run_id is what the link notices (read every 5 s).
			webdistest.WaitFor(t, 20*time.Second, "the link's resync after the failover", func() bool {
				return l.Status().Resyncs > resyncs
			})
			// The tenants' users are on the new master, and (by the
			// gateway's replica pass) on the old one, now a replica.
			servers := []string{next, first}
			if tc.hung {
				servers = servers[:1]
			} else if err := h.set.Settle(next); err != nil {
				t.Fatal(err)
			}
			for _, addr := range servers {
				webdistest.WaitFor(t, 20*time.Second, "the ACL users on "+addr, func() bool {
					users, err := redis.Strings(dialT(t, addr).Do("ACL", "USERS"))
					return err == nil && strings.Contains(strings.Join(users, " "), config.DefaultGatewayUserPrefix+"test") &&
						strings.Contains(strings.Join(users, " "), config.DefaultGatewayUserPrefix+"other")
				})
			}
			// And the link goes on: a write after it all arrives.
			dialT(t, h.local).Do("SET", "lab1:last", "x")
			webdistest.WaitEqualAt(t, h.local, next, "lab1:", 20*time.Second)
		})
	}
}
