package link_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/link/store"
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
			wrote := time.Now()
			defer func() { t.Logf("the fresh write reached the hub after %v", time.Since(wrote).Round(time.Millisecond)) }()
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
			start := time.Now()
			hub.WaitEqual(t, "b:", 20*time.Second, skip)
			t.Logf("the 100 good keys equal on both sides %v after the writes", time.Since(start).Round(time.Millisecond))
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

// In direction push, the local Redis restarts empty while the hub holds
// the namespace: by default the hub keeps its copy (and says so, across a
// restart of the link), new local writes are copied, and restoring the
// local side from the hub ends it; mirror empties the hub; restore refills
// the local side.
func TestLocalResetPush(t *testing.T) {
	for _, policy := range []config.OnLocalReset{config.KeepRemote, config.MirrorReset, config.RestoreLocal} {
		t.Run(string(policy), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			local, remote := conns(t, hub)
			cfg := linkConfig(hub, "z:")
			cfg.OnLocalReset, cfg.StateFile = policy, t.TempDir()+"/z.state"
			l, stop := startStoppable(t, cfg)
			for i := range 500 {
				do(t, local, "SET", fmt.Sprintf("z:%d", i), i)
			}
			waitEqual(t, hub, "z:", 20*time.Second)
			if err := hub.RestartLocalRedis(); err != nil { // without persistence: empty
				t.Fatal(err)
			}
			local, _ = conns(t, hub)
			// The application writes at once, before the link's resync: the
			// local namespace is not empty, but its Redis restarted.
			do(t, local, "SET", "z:new", "after the reset")
			hubKeys := func() int {
				n := countKeys(remote, "z:*")
				return n
			}
			switch policy {
			case config.MirrorReset:
				waitEqual(t, hub, "z:", 20*time.Second)
				if n := hubKeys(); n != 1 {
					t.Fatalf("mirror: the hub holds %d keys, want the new one only", n)
				}
				return
			case config.RestoreLocal:
				got := waitEqual(t, hub, "z:", 20*time.Second)
				if len(got) != 501 {
					t.Fatalf("restore: %d keys on both sides, want the 500 restored and the new one", len(got))
				}
				return
			}
			waitFor(t, 15*time.Second, "the reset reported", func() bool {
				r := l.Status().LocalReset
				return r != nil && r.KeptKeys == 500 && l.State() == link.Degraded
			})
			waitFor(t, 10*time.Second, "a new write copied", func() bool {
				v, _ := redis.String(remote.Do("GET", "z:new"))
				return v == "after the reset"
			})
			if n := hubKeys(); n != 501 {
				t.Fatalf("the hub holds %d keys, want its 500 kept and the new one", n)
			}
			// A restart of the link keeps the hub's copy too.
			stop()
			l = runLink(t, cfg) // not live: the kept reset is a problem to solve
			waitFor(t, 15*time.Second, "the kept reset reported again", func() bool {
				r := l.Status().LocalReset
				return r != nil && r.KeptKeys == 500
			})
			if n := hubKeys(); n != 501 {
				t.Fatalf("after a restart of the link the hub holds %d keys, want 501", n)
			}
			// The operator restores the local side (what verify -repair=local does).
			sides, err := store.Open(link.StoreOptions(cfg, 4))
			if err != nil {
				t.Fatal(err)
			}
			defer sides.Close()
			if err := store.Compare(context.Background(), sides.Local, sides.Remote, nil, func(keys [][]byte, ls, rs []store.Summary) error {
				var missing [][]byte
				for i, k := range keys {
					if ls[i].Type == "none" {
						missing = append(missing, k)
					}
				}
				return store.CopyKeys(context.Background(), sides.Remote, sides.Local, missing)
			}); err != nil {
				t.Fatal(err)
			}
			l.Resync()
			waitFor(t, 15*time.Second, "the reset resolved", func() bool { return l.Status().LocalReset == nil && l.State() == link.Live })
			if got := waitEqual(t, hub, "z:", 10*time.Second); len(got) != 501 {
				t.Fatalf("%d keys on both sides, want 501", len(got))
			}
		})
	}
}

// A sync state that cannot be read (here its journal is a symlink loop) is
// moved aside, never overwritten: the link says so and runs on without it.
func TestUnreadableSyncStateMovedAside(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := linkConfig(hub, "u:")
	cfg.Direction, cfg.StateFile = config.Both, t.TempDir()+"/u.state"
	saved := dedup.New(0)
	saved.Record([]byte("u:kept"), "0123456789abcdef0123", 0)
	if err := saved.Save(cfg.StateFile); err != nil {
		t.Fatal(err)
	}
	journal := cfg.StateFile + ".journal"
	if err := os.Symlink(journal, journal); err != nil {
		t.Fatal(err)
	}
	l, stop := startStoppable(t, cfg)
	if !strings.Contains(l.LastError(), "load sync state") && l.Stats.Errors.Load() == 0 {
		t.Error("the unreadable sync state was not reported")
	}
	stop()
	aside, _ := filepath.Glob(cfg.StateFile + ".unreadable-*")
	var found bool
	for _, p := range aside {
		back := dedup.New(0)
		if err := back.Load(p, ""); err == nil {
			_, found = back.Lookup([]byte("u:kept"))
		}
	}
	if !found {
		t.Fatalf("the saved sync state is gone (moved aside: %q)", aside)
	}
}
