package link_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// churn applies n random changes (every type, deletes, TTLs, renames) to
// keys prefix0..prefix(keys-1) of c.
func churn(t testing.TB, c redis.Conn, prefix string, keys, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(n), uint64(keys)))
	for range n {
		k := fmt.Sprintf("%s%d", prefix, r.IntN(keys))
		v := fmt.Sprintf("v%d\x00/%d", r.IntN(1000), r.IntN(10))
		var err error
		switch r.IntN(10) {
		case 0, 1:
			err = c.Send("SET", k, v)
		case 2:
			err = c.Send("DEL", k)
		case 3:
			c.Send("DEL", k+"h")
			err = c.Send("HSET", k+"h", "f"+v, v, "g", v)
		case 4:
			err = c.Send("RPUSH", k+"l", v)
		case 5:
			err = c.Send("SADD", k+"s", v)
		case 6:
			err = c.Send("ZADD", k+"z", r.IntN(100), v)
		case 7:
			err = c.Send("PEXPIRE", k, 60_000+r.IntN(60_000))
		case 8:
			c.Send("SET", k, v)
			err = c.Send("RENAME", k, fmt.Sprintf("%s%dr", prefix, r.IntN(keys)))
		case 9:
			err = c.Send("SET", k, v, "PX", 100+r.IntN(300)) // expires during the test
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Do(""); err != nil {
		t.Fatal(err)
	}
}

// Keys written, changed and deleted while nginx is down reach the remote
// when it is back.
func TestConvergeAfterProxyOutage(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	l := startLink(t, linkConfig(hub, "o:"))
	local, _ := conns(t, hub)
	churn(t, local, "o:", 200, 500)
	waitEqual(t, hub, "o:", 10*time.Second)
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	churn(t, local, "o:", 200, 2000)
	waitFor(t, 5*time.Second, "the outage noticed", func() bool { return l.State() == link.Degraded })
	if err := hub.StartNginx(); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, hub, "o:", 20*time.Second)
}

// Webdis killed and restarted.
func TestConvergeAfterWebdisRestart(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "w:"))
	local, _ := conns(t, hub)
	churn(t, local, "w:", 100, 300)
	waitEqual(t, hub, "w:", 10*time.Second)
	if err := hub.StopWebdis(); err != nil {
		t.Fatal(err)
	}
	churn(t, local, "w:", 100, 1000)
	time.Sleep(300 * time.Millisecond)
	if err := hub.StartWebdis(); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, hub, "w:", 20*time.Second)
}

// The remote Redis restarted empty, while nothing changes locally: the link
// notices (nothing tells it but the hub itself) and refills it.
func TestRefillRestartedRemote(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "r:"))
	local, _ := conns(t, hub)
	for i := range 100 { // no TTLs: nothing happens locally after this
		do(t, local, "HSET", fmt.Sprintf("r:%d", i), "f", i)
	}
	want := waitEqual(t, hub, "r:", 10*time.Second)
	if err := hub.RestartRemoteRedis(); err != nil {
		t.Fatal(err)
	}
	remote, err := hub.Remote()
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 0 {
		t.Fatalf("restarted remote holds %d keys", n)
	}
	got := waitEqual(t, hub, "r:", 20*time.Second)
	if len(got) == 0 && len(want) != 0 {
		t.Fatal("nothing to compare")
	}
}

// The remote flushed (FLUSHALL emits no event) is refilled too.
func TestRefillFlushedRemote(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "f:"))
	local, remote := conns(t, hub)
	for i := range 50 {
		do(t, local, "SET", fmt.Sprintf("f:%d", i), i)
	}
	waitEqual(t, hub, "f:", 10*time.Second)
	do(t, remote, "FLUSHALL")
	waitFor(t, 20*time.Second, "remote refilled", func() bool {
		n, _ := redis.Int(remote.Do("DBSIZE"))
		return n == 50
	})
	waitEqual(t, hub, "f:", 10*time.Second)
}

// The local Redis restarted (with other data, as after a restore): with
// on_local_reset = "mirror" the link resubscribes and mirrors the new state
// (the default, keep, keeps the hub's keys the local side lacks:
// TestLocalResetPush).
func TestConvergeAfterLocalRestart(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := linkConfig(hub, "l:")
	cfg.OnLocalReset = config.MirrorReset
	startLink(t, cfg)
	local, _ := conns(t, hub)
	churn(t, local, "l:", 100, 300)
	waitEqual(t, hub, "l:", 10*time.Second)
	local.Close()
	if err := hub.RestartLocalRedis(); err != nil {
		t.Fatal(err)
	}
	local2, err := hub.Local()
	if err != nil {
		t.Fatal(err)
	}
	defer local2.Close()
	churn(t, local2, "l:", 50, 100)
	waitEqual(t, hub, "l:", 20*time.Second)
}

// redisrepl stopped while the local side changes: the next start syncs.
func TestInitialSyncAfterRestart(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	cfg := linkConfig(hub, "i:")
	churn(t, local, "i:", 100, 300)
	do(t, remote, "SET", "i:stale-remote-only", "x") // the remote mirrors the local: this goes
	l := runLink(t, cfg)
	waitEqual(t, hub, "i:", 10*time.Second)
	if l.State() != link.Live {
		t.Fatalf("state %s", l.State())
	}
}

// The dirty set overflows while the remote is down: the link drops the
// backlog, then a resync brings everything over.
func TestDirtySetOverflow(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := linkConfig(hub, "x:")
	cfg.MaxDirtyKeys = 100
	l := startLink(t, cfg)
	local, _ := conns(t, hub)
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		local.Send("SET", fmt.Sprintf("x:%d", i), i)
	}
	local.Do("")
	waitFor(t, 5*time.Second, "events read", func() bool { return l.Stats.EventsLocal.Load() >= 1000 })
	if n := l.Pending(); n > 100 {
		t.Fatalf("%d dirty keys pending, cap is 100", n)
	}
	waitFor(t, 5*time.Second, "the overflow noticed", func() bool { return l.Stats.Overflows.Load() > 0 })
	if err := hub.StartNginx(); err != nil {
		t.Fatal(err)
	}
	got := waitEqual(t, hub, "x:", 20*time.Second)
	if len(got) != 1000 {
		t.Fatalf("%d keys, want 1000", len(got))
	}
}

// A slow, lossy path (latency on every chunk, connections cut at random)
// while a writer keeps changing keys: once the path heals, both sides are
// equal.
func TestConvergeOverLossyPath(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	proxy, err := webdistest.NewFaultProxy(strings.TrimPrefix(strings.TrimSuffix(hub.URL, "/redis"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := linkConfig(hub, "p:")
	cfg.Remote = "https://" + proxy.Addr + "/redis"
	startLink(t, cfg)
	local, _ := conns(t, hub)
	proxy.SetFaults(2*time.Millisecond, 0.02)
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		churn(t, local, "p:", 300, 50)
		if i%10 == 0 {
			proxy.CutAll()
		}
		time.Sleep(10 * time.Millisecond)
	}
	proxy.SetFaults(0, 0)
	waitEqual(t, hub, "p:", 30*time.Second)
}

// A resync of 100,000 keys of which 1% differ copies those keys only.
func TestResyncCopiesOnlyDifferences(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	const n, differ = 100_000, 1000
	for _, c := range []redis.Conn{local, remote} {
		for i := range n {
			c.Send("SET", fmt.Sprintf("s:%d", i), fmt.Sprintf("value-%d", i))
		}
		if _, err := c.Do(""); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < differ; i++ {
		switch i % 4 {
		case 0:
			local.Send("SET", fmt.Sprintf("s:%d", i*97), "changed locally")
		case 1:
			remote.Send("SET", fmt.Sprintf("s:%d", i*97), "changed remotely")
		case 2:
			remote.Send("DEL", fmt.Sprintf("s:%d", i*97)) // missing remotely
		case 3:
			remote.Send("SET", fmt.Sprintf("s:extra-%d", i), "only remotely")
		}
	}
	local.Do("")
	remote.Do("")
	before := changes(t, remote)
	start := time.Now()
	l := startLink(t, linkConfig(hub, "s:"))
	waitFor(t, 60*time.Second, "repairs written", func() bool { return l.Stats.KeysToRemote.Load() >= differ && l.Pending() == 0 })
	took := time.Since(start)
	waitEqual(t, hub, "s:", 30*time.Second)
	written := l.Stats.KeysToRemote.Load()
	delta := changes(t, remote) - before
	t.Logf("resync of %d keys, %d differing: %v, %d keys written, %d remote requests in all (comparing and writing), %d changes on the remote",
		n, differ, took.Round(time.Millisecond), written, l.Stats.RemoteRequests.Load(), delta)
	if written != differ {
		t.Fatalf("%d keys written, want %d", written, differ)
	}
	// Rewriting a string is a DEL and a SET: 2 changes; deleting is 1.
	if delta > 2*differ {
		t.Fatalf("the remote saw %d changes for %d differing keys", delta, differ)
	}
}

// changes is the remote's count of writes since its last save.
func changes(t testing.TB, c redis.Conn) int64 {
	info, err := redis.String(c.Do("INFO", "persistence"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "rdb_changes_since_last_save:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no rdb_changes_since_last_save")
	return 0
}

// resync_interval: a difference no event reports (a write made directly on
// the remote, which the remote then mirrors away) is repaired by the next
// periodic resync.
func TestPeriodicResync(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := linkConfig(hub, "pr:")
	cfg.ResyncInterval = config.Duration{Duration: time.Second}
	l := startLink(t, cfg)
	local, remote := conns(t, hub)
	do(t, local, "SET", "pr:a", "1")
	waitEqual(t, hub, "pr:", 10*time.Second)
	before := l.Status().Resyncs
	do(t, remote, "SET", "pr:a", "tampered")
	do(t, remote, "SET", "pr:stray", "x")
	waitEqual(t, hub, "pr:", 5*time.Second)
	if l.Status().Resyncs <= before {
		t.Fatal("repaired without a resync?")
	}
}
