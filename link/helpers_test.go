package link_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// linkConfig is a link between hub's local Redis and its remote, for
// namespace ns, with the defaults config applies.
func linkConfig(hub *webdistest.Hub, ns string) config.Link {
	return config.Link{
		Name:      "test",
		Local:     hub.LocalAddr,
		LocalAddr: hub.LocalAddr,
		Namespace: ns,
		Remote:    hub.URL,
		Cert:      hub.Cert,
		Key:       hub.Key,
		CA:        hub.CA,
	}.WithDefaults()
}

func testLogger(t testing.TB) zerolog.Logger {
	if os.Getenv("REDISREPL_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	return zerolog.New(io.Discard)
}

// startLink runs a link until the test ends, and waits for it to be live.
func startLink(t testing.TB, cfg config.Link) *link.Link {
	t.Helper()
	l := runLink(t, cfg)
	waitFor(t, 10*time.Second, "link live", func() bool { return l.State() == link.Live })
	return l
}

// runLink runs a link until the test ends.
func runLink(t testing.TB, cfg config.Link) *link.Link {
	t.Helper()
	l, stop := runStoppable(t, cfg)
	t.Cleanup(stop)
	return l
}

// startStoppable is startLink with a function that stops the link (and
// waits for it); the test's end stops it too.
func startStoppable(t testing.TB, cfg config.Link) (*link.Link, func()) {
	t.Helper()
	l, stop := runStoppable(t, cfg)
	t.Cleanup(stop)
	waitFor(t, 10*time.Second, "link live", func() bool { return l.State() == link.Live })
	return l, stop
}

func runStoppable(t testing.TB, cfg config.Link) (*link.Link, func()) {
	t.Helper()
	l, err := link.New(ownState(t, cfg), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return l, runBuilt(t, l)
}

// runBuilt runs l and returns what stops it and waits for it (once; the
// caller arranges for it to run at the test's end).
func runBuilt(t testing.TB, l *link.Link) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("link.Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("link %s did not stop within 15s", l.Name())
			}
		})
	}
}

// ownState gives cfg a state file of the test's own, unless it has one:
// a sync state is locked by the link holding it (dedup.LockState), and
// tests run side by side, in this process and in others.
func ownState(t testing.TB, cfg config.Link) config.Link {
	if cfg.StateFile == "" {
		cfg.StateFile = filepath.Join(t.TempDir(), cfg.Name+".state")
	}
	return cfg
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	webdistest.WaitFor(t, d, what, cond)
}

func conns(t testing.TB, hub *webdistest.Hub) (local, remote redis.Conn) {
	t.Helper()
	return hub.Conns(t)
}

func do(t testing.TB, c redis.Conn, cmd string, args ...any) any {
	t.Helper()
	v, err := c.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return v
}

// countKeys is the number of keys of c matching the glob pattern.
func countKeys(c redis.Conn, pattern string) int {
	n, _ := redis.Int(c.Do("EVAL", "return #redis.call('KEYS', ARGV[1])", 0, pattern))
	return n
}

// waitEqual waits until both sides hold the same namespace, key by key,
// byte by byte, TTLs within a second, and fails with the differences if
// they do not within d.
func waitEqual(t testing.TB, hub *webdistest.Hub, prefix string, d time.Duration) map[string]webdistest.Key {
	t.Helper()
	return hub.WaitEqual(t, prefix, d, nil)
}

// settle waits until the link is idle (nothing waiting or in flight) and
// has read no event for 300 ms: the echoes of its own writes are in.
func settle(t testing.TB, l *link.Link) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last, since := int64(-1), time.Now()
	for {
		st := l.Status()
		n := st.EventsLocal + st.EventsRemote
		if n != last || !l.Idle() {
			last, since = n, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("link did not settle within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
