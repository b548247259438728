package link_test

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// atRestWindow is how long the at-rest tests watch an idle link: fifteen
// canary intervals of the local side, five keepalive intervals and three
// stall checks of the hub's stream.
const atRestWindow = 30 * time.Second

// An idle link leaves the namespace alone on both sides (docs/ARCHITECTURE.md,
// "Health"): over atRestWindow, SCAN of the namespace returns exactly the
// user's keys, a subscriber to the namespace's keyspace pattern receives
// nothing (but, on a hub of nginx+Webdis in direction both, the keepalive
// of the idle stream: a message naming no key), and no write command
// touches a key of the namespace (MONITOR, scripts' commands included).
// Behind the gateway (WEBDISTEST_FRONT=gateway), the hub's stream is proved
// by the tenant's canary key, outside the namespace.
func TestIdleLinkLeavesNamespaceAlone(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			t.Parallel()
			const ns = "rest:"
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf, Namespaces: []string{ns}})
			gateway := hub.Front() == webdistest.FrontGateway
			local, remote := conns(t, hub)
			want := []string{}
			for i := range 20 {
				k := fmt.Sprintf("%sk%d", ns, i)
				do(t, local, "SET", k, i)
				want = append(want, k)
			}
			if dir == config.Both {
				do(t, remote, "HSET", ns+"from-hub", "f", "v")
				want = append(want, ns+"from-hub")
			}
			slices.Sort(want)
			cfg := linkConfig(hub, ns)
			cfg.Direction = dir
			l := startLink(t, cfg)
			waitEqual(t, hub, ns, 20*time.Second)
			settle(t, l)

			pattern := "__keyspace@0__:" + ns + "*"
			subs := []*messages{subscribe(t, hub.LocalAddr, pattern), subscribe(t, hub.RemoteAddr, pattern)}
			mons := []*writes{monitor(t, hub.LocalAddr, ns), monitor(t, hub.RemoteAddr, ns)}
			time.Sleep(atRestWindow)

			for i, side := range []string{"local", "hub"} {
				c := []redis.Conn{local, remote}[i]
				if got := scanNames(t, c, ns); !slices.Equal(got, want) {
					t.Errorf("%s: SCAN of the namespace: %q, want the user's keys %q", side, got, want)
				}
				keepalive := "__keyspace@0__:" + ns + "\x00redisrepl-keepalive"
				for _, m := range subs[i].all() {
					if side == "hub" && dir == config.Both && !gateway && m == keepalive {
						continue // documented: only while the stream is idle, never a key
					}
					t.Errorf("%s: a subscriber of %s received %q while no user wrote", side, pattern, m)
				}
				if n, _ := redis.Int(c.Do("EXISTS", ns+"\x00redisrepl-keepalive")); n != 0 {
					t.Errorf("%s: the keepalive is a key", side)
				}
				for _, w := range mons[i].all() {
					t.Errorf("%s: the idle link wrote into the namespace: %s", side, w)
				}
			}
			if e := l.LastError(); e != "" {
				t.Errorf("an idle link met an error: %s", e)
			}
			if l.Stats.CanaryWrites[link.LocalSide].Load() == 0 {
				t.Error("no canary was written: the window proves nothing")
			}
			if dir == config.Both && gateway && l.Stats.CanaryWrites[link.RemoteSide].Load() == 0 {
				t.Error("no canary was written on the hub behind the gateway")
			}
			for _, sd := range l.Status().Sides[:1+btoi(dir == config.Both)] {
				if sd.EventsFlowing == nil || !*sd.EventsFlowing {
					t.Errorf("%s events not proved to flow: %+v", sd.Side, sd)
				}
			}
			t.Logf("%s, front %s, %v idle: canaries local %d, hub %d; messages to a subscriber of the hub's namespace %d", dir, map[bool]string{true: "gateway", false: "nginx+Webdis"}[gateway], atRestWindow,
				l.Stats.CanaryWrites[link.LocalSide].Load(), l.Stats.CanaryWrites[link.RemoteSide].Load(), len(subs[1].all()))
		})
	}
}

// A link starting on a namespace that holds the canary keys older links
// wrote into it deletes them, on each side it listens to, and never copies
// them.
func TestLegacyCanaryKeysDeleted(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			t.Parallel()
			const ns = "old:"
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			local, remote := conns(t, hub)
			legacy := string(store.LegacyCanaryKey([]byte(ns)))
			do(t, local, "SET", legacy, "left by an older link") // no TTL: only the link removes it
			if dir == config.Both {
				do(t, remote, "SET", legacy, "left by an older link")
			}
			do(t, local, "SET", ns+"user", "1")
			cfg := linkConfig(hub, ns)
			cfg.Direction = dir
			startLink(t, cfg)
			sides := map[string]redis.Conn{"local": local}
			if dir == config.Both {
				sides["hub"] = remote
			}
			for side, c := range sides {
				waitFor(t, 10*time.Second, side+": the old canary key deleted", func() bool {
					n, _ := redis.Int(c.Do("EXISTS", legacy))
					return n == 0
				})
			}
			got := waitEqual(t, hub, ns, 10*time.Second)
			if len(got) != 1 {
				t.Errorf("both sides hold %d keys, want the user's one", len(got))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scanNames is every key name of c starting with prefix, sorted.
func scanNames(t testing.TB, c redis.Conn, prefix string) []string {
	t.Helper()
	names := []string{}
	cursor := "0"
	for {
		vs, err := redis.Values(c.Do("SCAN", cursor, "MATCH", string(store.MatchPattern([]byte(prefix))), "COUNT", 1000))
		if err != nil {
			t.Fatal(err)
		}
		cursor, _ = redis.String(vs[0], nil)
		keys, _ := redis.Strings(vs[1], nil)
		names = append(names, keys...)
		if cursor == "0" {
			slices.Sort(names)
			return names
		}
	}
}

// messages are the channels of the messages a subscriber received.
type messages struct {
	mu  sync.Mutex
	chs []string
}

func (m *messages) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.chs)
}

// subscribe subscribes to pattern on the Redis at addr until the test ends.
func subscribe(t testing.TB, addr, pattern string) *messages {
	t.Helper()
	c, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	psc := redis.PubSubConn{Conn: c}
	if err := psc.PSubscribe(pattern); err != nil {
		t.Fatal(err)
	}
	if _, ok := psc.Receive().(redis.Subscription); !ok {
		t.Fatalf("psubscribe %s: not confirmed", pattern)
	}
	m := &messages{}
	go func() {
		for {
			switch v := psc.Receive().(type) {
			case redis.Message:
				m.mu.Lock()
				m.chs = append(m.chs, v.Channel)
				m.mu.Unlock()
			case error:
				return
			}
		}
	}()
	return m
}

// writes are the write commands a MONITOR saw touch a key of a namespace.
type writes struct {
	mu    sync.Mutex
	lines []string
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}

var monitorArg = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// monitor watches every command the Redis at addr runs (those of scripts
// included) until the test ends, and keeps the write commands (by Redis's
// own COMMAND INFO flags) with an argument in namespace ns.
func monitor(t testing.TB, addr, ns string) *writes {
	t.Helper()
	info, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer info.Close()
	isWrite := map[string]bool{}
	cmds, err := redis.Values(info.Do("COMMAND"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		f, _ := redis.Values(c, nil)
		name, _ := redis.String(f[0], nil)
		flags, _ := redis.Strings(f[2], nil)
		isWrite[strings.ToLower(name)] = slices.Contains(flags, "write")
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	w := &writes{}
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var args []string
			for _, q := range monitorArg.FindAllString(line, -1) {
				a, err := strconv.Unquote(q)
				if err != nil {
					a = q
				}
				args = append(args, a)
			}
			if len(args) == 0 || !isWrite[strings.ToLower(args[0])] {
				continue
			}
			for _, a := range args[1:] {
				if strings.HasPrefix(a, ns) {
					w.mu.Lock()
					w.lines = append(w.lines, strings.TrimSpace(line))
					w.mu.Unlock()
					break
				}
			}
		}
	}()
	return w
}
