package gateway_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The link's own integration tests run against the gateway with
// webdistest.Options{Front: webdistest.FrontGateway}; these check here
// that the client and a replicating link work through a gateway whose
// tenant is confined to its namespace.

func TestClientThroughGateway(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"lab1:"}, Log: t.Logf})
	c, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	key := []byte("lab1:\x00/+%.raw\n\xff")
	val := []byte("v\x00/+%.raw\r\n\xff")
	if _, err := c.Do(ctx, []byte("SET"), key, val); err != nil {
		t.Fatal(err)
	}
	got, err := redis.Bytes(c.Do(ctx, []byte("GET"), key))
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("GET: %q, %v", got, err)
	}
	if _, err := c.Do(ctx, []byte("GET"), []byte("lab2:x")); err == nil {
		t.Error("a key outside the namespace was read")
	}
	var e *webdis.Error
	if _, err := c.Do(ctx, []byte("FLUSHALL")); !errorsAs(err, &e) || e.Kind != webdis.KindForbidden {
		t.Errorf("FLUSHALL: %v, want a refusal the client reports as forbidden", err)
	}

	// Refused certificates are reported as such (a TLS alert here, an HTTP
	// 400 from nginx).
	for _, cert := range [][2]string{{hub.ForeignCert, hub.ForeignKey}} {
		fc, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: cert[0], KeyFile: cert[1], CAFile: hub.CA})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fc.Do(ctx, []byte("PING")); webdis.KindOf(err) != webdis.KindCertRefused {
			t.Errorf("a foreign certificate: %v (kind %v), want cert-refused", err, webdis.KindOf(err))
		}
		fc.Close()
	}
	// Keyspace events are on (the gateway turned them on), and a link can
	// see it: CONFIG GET notify-keyspace-events is answered.
	flags, err := redis.Strings(c.Do(ctx, []byte("CONFIG"), []byte("GET"), []byte("notify-keyspace-events")))
	if err != nil || len(flags) != 2 || !strings.Contains(flags[1], "K") || !strings.Contains(flags[1], "A") {
		t.Errorf("CONFIG GET notify-keyspace-events: %q %v", flags, err)
	}
	_, remote := hub.Conns(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subscribed := make(chan struct{})
	msgs := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- c.Subscribe(sctx, store.MatchPattern([]byte("__keyspace@0__:lab1:")),
			func() { close(subscribed) },
			func(ch, data []byte) { msgs <- string(ch) + " " + string(data) })
	}()
	select {
	case <-subscribed:
	case err := <-done:
		t.Fatalf("Subscribe: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription confirmation")
	}
	remote.Do("SET", "lab1:ev", "1")
	select {
	case m := <-msgs:
		if m != "__keyspace@0__:lab1:ev set" {
			t.Errorf("event %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Subscribe ended with %v", err)
	}
}

func errorsAs(err error, e **webdis.Error) bool {
	we, ok := err.(*webdis.Error)
	if ok {
		*e = we
	}
	return ok
}

func linkConfig(hub *webdistest.Hub, ns, direction string) config.Link {
	return config.Link{Name: "gw-" + direction, Local: hub.LocalAddr, LocalAddr: hub.LocalAddr, Namespace: ns,
		Remote: hub.URL, Cert: hub.Cert, Key: hub.Key, CA: hub.CA, Direction: config.Direction(direction),
		StateFile: hub.Dir + "/link.state"}.WithDefaults()
}

func runLink(t *testing.T, cfg config.Link) *link.Link {
	t.Helper()
	l, err := link.New(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	webdistest.WaitFor(t, 15*time.Second, "link live", func() bool { return l.State() == link.Live })
	return l
}

// TestLinkThroughGateway replicates every type, binary keys and a big
// value through a gateway whose tenant has only the link's namespace, in
// direction push, then both, and with scripts disabled (plain mode).
func TestLinkThroughGateway(t *testing.T) {
	for _, tc := range []struct {
		name, direction string
		disabled        []string
	}{{"push", "push", nil}, {"both", "both", nil}, {"plain", "push", []string{"EVAL", "EVALSHA"}}} {
		t.Run(tc.name, func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"lab1:"},
				Disabled: tc.disabled, Log: t.Logf})
			local, remote := hub.Conns(t)
			remote.Do("SET", "lab2:other", "not mine") // another tenant's key: never touched
			local.Do("SET", "lab1:before", "start")
			runLink(t, linkConfig(hub, "lab1:", tc.direction))
			for _, cmd := range [][]any{
				{"SET", "lab1:s", "v"}, {"HSET", "lab1:h", "f", "v", "", "e"}, {"RPUSH", "lab1:l", "a", "b"},
				{"SADD", "lab1:set", "x"}, {"ZADD", "lab1:z", 1.5, "m"}, {"XADD", "lab1:x", "1-1", "f", "v"},
				{"SET", "lab1:bin\x00/+%.raw\n\xff", "v\x00\xff"}, {"SET", "lab1:ttl", "t", "PX", 60000},
				{"SET", "lab1:big", bytes.Repeat([]byte("0123456789"), 150_000)},
			} {
				if _, err := local.Do(cmd[0].(string), cmd[1:]...); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "plain" { // streams cannot be read without scripts
				local.Do("DEL", "lab1:x")
			}
			hub.WaitEqual(t, "lab1:", 20*time.Second, nil)
			if tc.direction == "both" {
				remote.Do("SET", "lab1:from-hub", "back")
				webdistest.WaitFor(t, 10*time.Second, "the hub's change locally", func() bool {
					v, _ := redis.String(local.Do("GET", "lab1:from-hub"))
					return v == "back"
				})
			}
			if v, _ := redis.String(remote.Do("GET", "lab2:other")); v != "not mine" {
				t.Errorf("another namespace was touched: %q", v)
			}
			if n, _ := redis.Int(local.Do("EXISTS", "lab2:other")); n != 0 {
				t.Error("another namespace was copied locally")
			}
			local.Do("DEL", "lab1:s")
			hub.WaitEqual(t, "lab1:", 10*time.Second, nil)
		})
	}
}
