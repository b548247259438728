package link_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// An experiment reset while redisrepl is stopped empties both namespaces.
// A key then written with the value it had when last synced must still
// travel: the synced state of a key gone from both sides is forgotten at
// the first resync, and an equal state counts as an echo only if the link
// wrote it recently.
func TestResetWhileStoppedFreshWriteArrives(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			local, remote := conns(t, hub)
			cfg := linkConfig(hub, "e:")
			cfg.Direction, cfg.StateFile = dir, t.TempDir()+"/e.state"
			l, stop := startStoppable(t, cfg)
			do(t, local, "SET", "e:k", "same")
			do(t, local, "SET", "e:other", "x")
			waitEqual(t, hub, "e:", 10*time.Second)
			settle(t, l)
			stop()

			for _, c := range []redis.Conn{local, remote} {
				do(t, c, "DEL", "e:k", "e:other")
			}
			l = startLink(t, cfg)
			if n := l.Status().SyncedKeys; n != 0 {
				t.Fatalf("%d synced states kept for keys gone from both sides", n)
			}
			do(t, local, "SET", "e:k", "same")
			waitFor(t, 10*time.Second, "the fresh write on the hub", func() bool {
				v, _ := redis.String(remote.Do("GET", "e:k"))
				return v == "same"
			})
			waitEqual(t, hub, "e:", 10*time.Second)
		})
	}
}

// lockedBuffer collects a logger's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// One key that cannot be replicated (its 1 MB name is over the hub's 1 MiB
// request limit) among 100 good ones, written on the side the link copies
// from: the good ones arrive, the bad one is reported by name, truncated,
// counted, and not retried in a loop: the log stays small.
func TestOneBadKeyDoesNotHoldBackOthers(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf}) // nginx's default 1 MiB body limit
			local, remote := conns(t, hub)
			cfg := linkConfig(hub, "b:")
			cfg.Direction, cfg.StateFile = dir, t.TempDir()+"/b.state"
			logs := &lockedBuffer{}
			l, err := link.New(cfg, zerolog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			waitFor(t, 10*time.Second, "link live", func() bool { return l.State() == link.Live })

			src := local
			if dir == config.Both {
				src = remote // copied hub → local
			}
			bad := "b:" + strings.Repeat("k", 1<<20)
			do(t, src, "SET", bad, "v")
			for i := range 100 {
				do(t, src, "SET", fmt.Sprintf("b:%d", i), i)
			}
			skip := func(k string) bool { return k == bad }
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("link log:\n%.6000s", logs.String())
				}
			})
			hub.WaitEqual(t, "b:", 20*time.Second, skip)
			waitFor(t, 10*time.Second, "the bad key counted", func() bool { return l.Stats.KeyErrors.Load() >= 1 })
			time.Sleep(3 * time.Second) // a retry loop would show now
			out := logs.String()
			if n := strings.Count(out, "key not replicated"); n < 1 || n > 3 {
				t.Errorf("the bad key was reported %d times in 3 s, want 1 to 3", n)
			}
			if len(out) > 64<<10 {
				t.Errorf("%d bytes of log for one bad key: names are not truncated", len(out))
			}
			if !strings.Contains(out, "kkkk…(") {
				t.Errorf("the report does not name the key, truncated:\n%.2000s", out)
			}
			dst := remote
			if dir == config.Both {
				dst = local
			}
			if n, _ := redis.Int(dst.Do("EXISTS", bad)); n != 0 {
				t.Error("the bad key arrived after all")
			}
		})
	}
}
