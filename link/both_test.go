package link_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

func bothConfig(t testing.TB, hub *webdistest.Hub, ns string) config.Link {
	cfg := linkConfig(hub, ns)
	cfg.Direction = "both"
	cfg.StateFile = t.TempDir() + "/link.state"
	return cfg
}

// Remote changes of every type, deletes and TTLs reach the local side.
func TestBothRemoteChangesReachLocal(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, bothConfig(t, hub, "lab1:"))
	local, remote := conns(t, hub)
	do(t, remote, "SET", "lab1:string", "hello")
	do(t, remote, "SET", "lab1:empty", "")
	do(t, remote, "HSET", "lab1:hash", "f1", "v1", "f2", "")
	do(t, remote, "RPUSH", "lab1:list", "a", "b", "a")
	do(t, remote, "SADD", "lab1:set", "x", "y")
	do(t, remote, "ZADD", "lab1:zset", 1.5, "m1", -2, "m2")
	do(t, remote, "XADD", "lab1:stream", "1-1", "f", "v")
	do(t, remote, "SET", "lab1:ttl", "x", "EX", 500)
	do(t, remote, "SET", "lab1:gone", "x")
	do(t, remote, "SET", "other:not-mine", "x")
	for _, a := range awkward {
		do(t, remote, "SET", "lab1:k"+a, "v"+a)
	}
	got := waitEqual(t, hub, "lab1:", 10*time.Second)
	if _, ok := got["lab1:gone"]; !ok {
		t.Fatal("lab1:gone never reached the local side")
	}
	do(t, remote, "DEL", "lab1:gone")
	do(t, remote, "RENAME", "lab1:string", "lab1:renamed")
	do(t, remote, "PEXPIRE", "lab1:hash", 300)
	waitFor(t, 5*time.Second, "remote deletes and expiry replicated", func() bool {
		n, _ := redis.Int(local.Do("EXISTS", "lab1:gone", "lab1:string", "lab1:hash"))
		return n == 0
	})
	waitEqual(t, hub, "lab1:", 10*time.Second)
	if n, _ := redis.Int(local.Do("EXISTS", "other:not-mine")); n != 0 {
		t.Fatal("a remote key outside the namespace reached the local side")
	}
}

// writeCommands is how many changes a Redis has made to its data
// (rdb_changes_since_last_save: INFO commandstats would count the link's
// reads too, which run as EVALSHA like its writes).
func writeCommands(t testing.TB, c redis.Conn) int64 { return changes(t, c) }

// No echo loops: after 1,000 local and 1,000 remote writes to distinct
// keys, both sides settle and the write counts stop growing.
func TestBothNoLoop(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	l := startLink(t, bothConfig(t, hub, "n:"))
	local, remote := conns(t, hub)
	// The link's canary writes (health.go) are writes too, and no echoes:
	// they are taken out of the counts.
	canaries := func(s link.Side) int64 { return l.Stats.CanaryWrites[s].Load() }
	writes := func(c redis.Conn, s link.Side) int64 { return writeCommands(t, c) - canaries(s) }
	lBefore, rBefore := writes(local, link.LocalSide), writes(remote, link.RemoteSide)
	for i := range 1000 {
		local.Send("SET", fmt.Sprintf("n:local:%d", i), i)
		remote.Send("HSET", fmt.Sprintf("n:remote:%d", i), "f", i)
	}
	local.Do("")
	remote.Do("")
	got := waitEqual(t, hub, "n:", 20*time.Second)
	if len(got) != 2000 {
		t.Fatalf("%d keys, want 2000", len(got))
	}
	settle(t, l)
	lw, rw := writes(local, link.LocalSide), writes(remote, link.RemoteSide)
	time.Sleep(2 * time.Second) // a loop would keep writing meanwhile
	lw2, rw2 := writes(local, link.LocalSide), writes(remote, link.RemoteSide)
	if lw2 > lw || rw2 > rw {
		t.Fatalf("still writing after settling: local %d→%d, remote %d→%d", lw, lw2, rw, rw2)
	}
	st := l.Status()
	// Each side's count holds the test's own 1,000 writes and the link's.
	byLink := func(n int64) int64 { return n - 1000 }
	t.Logf("link writes per change: %.2f on the local side (%d for 1000 remote changes), %.2f on the remote (%d for 1000 local changes); keys copied: %d to remote, %d to local, %d echoes skipped",
		float64(byLink(lw-lBefore))/1000, byLink(lw-lBefore), float64(byLink(rw-rBefore))/1000, byLink(rw-rBefore), st.KeysToRemote, st.KeysToLocal, st.KeysSkipped)
	if byLink(lw-lBefore) > 1000 || byLink(rw-rBefore) > 1000 {
		t.Fatalf("more than one write per change")
	}
	if st.KeysToRemote != 1000 || st.KeysToLocal != 1000 {
		t.Fatalf("keys copied: %d to remote, %d to local; want 1000 each", st.KeysToRemote, st.KeysToLocal)
	}
}

// Writers on both sides hammer the same 50 keys: both sides end identical.
func TestBothConcurrentWriters(t *testing.T) {
	for _, policy := range []config.Conflict{config.LocalWins, config.RemoteWins} {
		t.Run(string(policy), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			cfg := bothConfig(t, hub, "c:")
			cfg.Conflict = policy
			l := startLink(t, cfg)
			local, remote := conns(t, hub)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for side, c := range map[string]redis.Conn{"L": local, "R": remote} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						k := fmt.Sprintf("c:%d", i%50)
						switch i % 7 {
						case 0:
							c.Do("DEL", k)
						case 1:
							c.Do("HSET", k+"h", side, i)
						default:
							c.Do("SET", k, side+strconv.Itoa(i))
						}
					}
				}()
			}
			wg.Wait()
			waitEqual(t, hub, "c:", 20*time.Second)
			// And they stay so: no ping-pong.
			settle(t, l)
			before := l.Status()
			time.Sleep(time.Second)
			after := l.Status()
			if after.KeysToLocal != before.KeysToLocal || after.KeysToRemote != before.KeysToRemote {
				t.Fatalf("still copying after the writers stopped: %+v → %+v", before, after)
			}
			waitEqual(t, hub, "c:", time.Second)
		})
	}
}

// The remote event stream breaks (nginx stopped) while the remote changes:
// once it is back, both sides converge.
func TestBothStreamOutage(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, bothConfig(t, hub, "s:"))
	local, remote := conns(t, hub)
	churn(t, remote, "s:", 100, 300)
	waitEqual(t, hub, "s:", 10*time.Second)
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	churn(t, remote, "s:", 100, 1000)
	churn(t, local, "s:l", 50, 200)
	time.Sleep(300 * time.Millisecond)
	if err := hub.StartNginx(); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, hub, "s:", 20*time.Second)
}

// redisrepl restarted while both sides change and delete keys: they
// converge, and no key deleted on one side comes back from the other.
func TestBothRestartNoResurrection(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	cfg := bothConfig(t, hub, "r:")
	l, stop := startStoppable(t, cfg)
	for i := range 100 {
		do(t, local, "SET", fmt.Sprintf("r:l%d", i), i)
		do(t, remote, "SET", fmt.Sprintf("r:r%d", i), i)
	}
	waitEqual(t, hub, "r:", 10*time.Second)
	settle(t, l)
	stop()

	// While the link is down: deletes and changes on both sides.
	for i := range 20 {
		do(t, local, "DEL", fmt.Sprintf("r:l%d", i))    // deleted locally
		do(t, remote, "DEL", fmt.Sprintf("r:r%d", i))   // deleted remotely
		do(t, local, "DEL", fmt.Sprintf("r:r%d", 50+i)) // remote-born, deleted locally
		do(t, remote, "SET", fmt.Sprintf("r:l%d", 50+i), "changed remotely")
		do(t, local, "SET", fmt.Sprintf("r:new-local%d", i), "new")
		do(t, remote, "SET", fmt.Sprintf("r:new-remote%d", i), "new")
	}
	startLink(t, cfg)
	got := waitEqual(t, hub, "r:", 20*time.Second)
	for i := range 20 {
		for _, k := range []string{fmt.Sprintf("r:l%d", i), fmt.Sprintf("r:r%d", i), fmt.Sprintf("r:r%d", 50+i)} {
			if _, ok := got[k]; ok {
				t.Errorf("%s was deleted while the link was down, and came back", k)
			}
		}
		if v := got[fmt.Sprintf("r:l%d", 50+i)].Contents; !strings.Contains(v, "changed remotely") {
			t.Errorf("remote change of r:l%d lost: %s", 50+i, v)
		}
		for _, k := range []string{fmt.Sprintf("r:new-local%d", i), fmt.Sprintf("r:new-remote%d", i)} {
			if _, ok := got[k]; !ok {
				t.Errorf("%s, created while the link was down, is missing", k)
			}
		}
	}
}

// A side that restarts empty is refilled from the other, not emptied out:
// to a link in direction both, its missing keys are not deletes.
func TestBothSideRestartsEmpty(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	cfg := bothConfig(t, hub, "e:")
	l := startLink(t, cfg)
	for i := range 50 {
		do(t, local, "SET", fmt.Sprintf("e:l%d", i), i)
		do(t, remote, "SET", fmt.Sprintf("e:r%d", i), i)
	}
	waitEqual(t, hub, "e:", 10*time.Second)
	settle(t, l)

	if err := hub.RestartRemoteRedis(); err != nil {
		t.Fatal(err)
	}
	got := waitEqual(t, hub, "e:", 20*time.Second)
	if len(got) != 100 {
		t.Fatalf("after the remote restarted empty: %d keys, want 100", len(got))
	}
	settle(t, l)

	local.Close()
	if err := hub.RestartLocalRedis(); err != nil {
		t.Fatal(err)
	}
	got = waitEqual(t, hub, "e:", 20*time.Second)
	if len(got) != 100 {
		t.Fatalf("after the local side restarted empty: %d keys, want 100", len(got))
	}
}

// FLUSHALL on the hub emits no event: the link notices and refills it
// rather than deleting everything locally.
func TestBothFlushedHubRefilled(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	l := startLink(t, bothConfig(t, hub, "f:"))
	for i := range 50 {
		do(t, local, "SET", fmt.Sprintf("f:%d", i), i)
	}
	waitEqual(t, hub, "f:", 10*time.Second)
	settle(t, l) // a flush racing the echoes of the link's writes would delete those keys locally
	do(t, remote, "FLUSHALL")
	waitFor(t, 20*time.Second, "hub refilled", func() bool {
		n := countKeys(remote, "f:[0-9]*")
		return n == 50
	})
	got := waitEqual(t, hub, "f:", 10*time.Second)
	if len(got) != 50 {
		t.Fatalf("%d keys left, want 50", len(got))
	}
}

// Every key of the namespace deleted on one side while the link was down:
// the deletes reach the other side, nothing is resurrected.
func TestBothMassDeleteWhileDown(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	cfg := bothConfig(t, hub, "w:")
	l, stop := startStoppable(t, cfg)
	for i := range 100 {
		do(t, remote, "SET", fmt.Sprintf("w:%d", i), i)
	}
	waitEqual(t, hub, "w:", 10*time.Second)
	settle(t, l)
	stop()
	for i := range 100 {
		do(t, local, "DEL", fmt.Sprintf("w:%d", i))
	}
	startLink(t, cfg)
	waitFor(t, 10*time.Second, "deletes copied to the remote", func() bool {
		n := countKeys(remote, "w:[0-9]*")
		return n == 0
	})
	got := waitEqual(t, hub, "w:", 5*time.Second)
	if len(got) != 0 {
		t.Fatalf("%d keys resurrected", len(got))
	}
}

// Every key deleted locally while the hub is unreachable: once it is back
// the deletes reach it (a mass delete with events is not a flush).
func TestBothMassDeleteDuringOutage(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	l := startLink(t, bothConfig(t, hub, "o:"))
	for i := range 100 {
		do(t, local, "SET", fmt.Sprintf("o:%d", i), i)
	}
	waitEqual(t, hub, "o:", 10*time.Second)
	settle(t, l)
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		do(t, local, "DEL", fmt.Sprintf("o:%d", i))
	}
	time.Sleep(6 * time.Second) // past a probe of the sides
	if err := hub.StartNginx(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "deletes copied to the remote", func() bool {
		n := countKeys(remote, "o:[0-9]*")
		return n == 0
	})
	if got := waitEqual(t, hub, "o:", 5*time.Second); len(got) != 0 {
		t.Fatalf("%d keys resurrected", len(got))
	}
}
