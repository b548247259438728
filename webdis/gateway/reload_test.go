package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// events holds a tenant's open PSUBSCRIBE stream and the channels of the
// messages it has received.
type events struct {
	mu       sync.Mutex
	channels []string
	err      error
	done     chan struct{}
	cancel   context.CancelFunc
}

func subscribe(t *testing.T, c *http.Client, url, pattern string) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ev := &events{done: make(chan struct{}), cancel: cancel}
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/", strings.NewReader(enc("PSUBSCRIBE", pattern)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("PSUBSCRIBE %s: HTTP %d", pattern, resp.StatusCode)
	}
	go func() {
		defer close(ev.done)
		defer resp.Body.Close()
		r := webdis.NewReplyReader(resp.Body, 1<<20)
		for {
			v, err := r.Read()
			if err != nil {
				ev.mu.Lock()
				ev.err = err
				ev.mu.Unlock()
				return
			}
			m, _ := redis.Strings(v, nil)
			if len(m) == 4 && m[0] == "pmessage" {
				ev.mu.Lock()
				ev.channels = append(ev.channels, m[2])
				ev.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-ev.done })
	return ev
}

func (ev *events) has(ch string) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, c := range ev.channels {
		if c == ch {
			return true
		}
	}
	return false
}

func (ev *events) ended() bool {
	select {
	case <-ev.done:
		return true
	default:
		return false
	}
}

// TestHotReload: a tenant added, removed and changed while another
// tenant's event stream keeps streaming.
func TestHotReload(t *testing.T) {
	e := newEnv(t, tenantsAB)
	direct := e.direct(t)
	direct.Do("CONFIG", "SET", "notify-keyspace-events", "KA")
	a, b := e.client(t, "labA"), e.client(t, "labB")
	evA := subscribe(t, a, e.url, "__keyspace@0__:labA:*")
	evB := subscribe(t, b, e.url, "__keyspace@0__:labB:*")
	n := 0
	alive := func(what string) {
		t.Helper()
		n++
		key := "labA:tick" + string(rune('a'+n))
		direct.Do("SET", key, "1")
		webdistest.WaitFor(t, 3*time.Second, "A's event after "+what, func() bool { return evA.has("__keyspace@0__:" + key) })
	}
	alive("start")

	// Added: labC is refused, then served.
	c := e.client(t, "labC")
	if status, _ := post(t, c, e.url, enc("SET", "labC:k", "v")); status != 403 {
		t.Fatalf("labC before it is added: %d", status)
	}
	e.reload(t, tenantsAB+`
[[tenant]]
name = "labC"
client = "labC"
namespaces = ["labC:"]
`)
	if status, body := post(t, c, e.url, enc("SET", "labC:k", "v")); status != 200 || body != "+OK\r\n" {
		t.Fatalf("labC added: %d %q", status, body)
	}
	alive("labC added")

	// Changed: B's namespace moves from labB: to labB2:; its old stream is
	// cut by Redis (its channels are gone), its old keys refused.
	changed := strings.Replace(tenantsAB, `namespaces = ["labB:", "b*[x]:"]`, `namespaces = ["labB2:"]`, 1) + `
[[tenant]]
name = "labC"
client = "labC"
namespaces = ["labC:"]
`
	e.reload(t, changed)
	if status, body := post(t, b, e.url, enc("SET", "labB:k", "v")); !refused(status, body) {
		t.Errorf("B's old namespace after the change: %d %q", status, body)
	}
	if status, body := post(t, b, e.url, enc("SET", "labB2:k", "v")); status != 200 || body != "+OK\r\n" {
		t.Errorf("B's new namespace: %d %q", status, body)
	}
	webdistest.WaitFor(t, 3*time.Second, "B's old stream to end", evB.ended)
	alive("labB changed")

	// Removed: labC refused, and its ACL user gone.
	e.reload(t, changed[:strings.Index(changed, "[[tenant]]\nname = \"labC\"")])
	if status, body := post(t, c, e.url, enc("GET", "labC:k")); status != 403 || body != "" {
		t.Errorf("labC after removal: %d %q", status, body)
	}
	if users, _ := redis.Strings(direct.Do("ACL", "USERS")); strings.Contains(strings.Join(users, " "), "redisrepl-gw-labC") {
		t.Errorf("labC's ACL user is still there: %v", users)
	}
	alive("labC removed")
	if evA.ended() {
		t.Errorf("A's stream ended: %v", evA.err)
	}
	if got := e.g.Tenants(); strings.Join(got, ",") != "labA,labB" {
		t.Errorf("tenants in force: %v", got)
	}
	st := e.g.Status()
	if st.Generation != 4 || st.LastReloadError != "" {
		t.Errorf("status: %+v", st)
	}
	e.g.ReloadFailed(errors.New("gateway.toml:3: gateway.listen: bad"))
	if st := e.g.Status(); st.LastReloadError == "" || len(st.Tenants) != 2 {
		t.Errorf("a failed reload: %+v", st)
	}
	alive("a failed reload")
}

// TestHubRestart: the hub Redis restarts empty (no ACL users); tenants are
// served again, still isolated, and the streams reconnect.
func TestHubRestart(t *testing.T) {
	e := newEnv(t, tenantsAB)
	a, b := e.client(t, "labA"), e.client(t, "labB")
	if status, _ := post(t, a, e.url, enc("SET", "labA:k", "v")); status != 200 {
		t.Fatal(status)
	}
	addr := e.redis.Addr
	if err := e.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	if status, _ := post(t, a, e.url, enc("GET", "labA:k")); status != http.StatusServiceUnavailable {
		t.Errorf("hub down: %d, want 503", status)
	}
	port := 0
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			for _, c := range addr[i+1:] {
				port = port*10 + int(c-'0')
			}
			break
		}
	}
	var err error
	if e.redis, err = webdistest.StartRedis(e.dir, port); err != nil {
		t.Fatal(err)
	}
	webdistest.WaitFor(t, 10*time.Second, "A served again", func() bool {
		status, body := post(t, a, e.url, enc("SET", "labA:k", "again"))
		return status == 200 && body == "+OK\r\n"
	})
	if status, body := post(t, b, e.url, enc("GET", "labA:k")); !refused(status, body) {
		t.Errorf("B reads A's key after the restart: %d %q", status, body)
	}
	if status, body := post(t, b, e.url, enc("FLUSHALL")); !refused(status, body) {
		t.Errorf("B flushes after the restart: %d %q", status, body)
	}
	if status, body := post(t, b, e.url, enc("SET", "labB:k", "v")); status != 200 || body != "+OK\r\n" {
		t.Errorf("B after the restart: %d %q", status, body)
	}
	webdistest.WaitFor(t, 10*time.Second, "every tenant ready in /status", func() bool {
		for _, ts := range e.g.Status().Tenants {
			if !ts.Ready {
				return false
			}
		}
		return e.g.Status().RedisUp
	})
}

// TestHubDownAtStart: the gateway starts while the hub Redis is down,
// answers 503 meanwhile, and sets the users up once the hub answers.
func TestHubDownAtStart(t *testing.T) {
	e := newEnv(t, tenantsAB)
	addr := e.redis.Addr
	if err := e.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	e.g.Close()
	g, err := gateway.New(e.cfg, zerolog.New(e.logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("start with the hub down: %v", err)
	}
	e.g = g
	a := e.client(t, "labA")
	if status, _ := post(t, a, e.url, enc("PING")); status != http.StatusServiceUnavailable {
		t.Errorf("hub down: %d, want 503", status)
	}
	if st := g.Status(); st.RedisUp || len(st.Tenants) != 2 || st.Tenants[0].Ready {
		t.Errorf("status with the hub down: %+v", st)
	}
	port, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if e.redis, err = webdistest.StartRedis(e.dir, port); err != nil {
		t.Fatal(err)
	}
	webdistest.WaitFor(t, 10*time.Second, "A served", func() bool {
		status, body := post(t, a, e.url, enc("SET", "labA:k", "v"))
		return status == 200 && body == "+OK\r\n"
	})
	if status, body := post(t, e.client(t, "labB"), e.url, enc("GET", "labA:k")); !refused(status, body) {
		t.Errorf("B reads A's key: %d %q", status, body)
	}
}
