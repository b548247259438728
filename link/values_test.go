package link_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Behind the gateway, a hub change comes with the key's state on the
// stream (values on the stream, docs/ARCHITECTURE.md): the link copies it
// without reading it through the hub, every type, and a value changed
// twice in a row ends as the second.
func TestHubChangesCarryTheirValues(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Log: t.Logf})
	l := startLink(t, bothConfig(t, hub, "v:"))
	_, remote := conns(t, hub)
	const n = 100
	for i := range n {
		do(t, remote, "SET", fmt.Sprintf("v:s:%d", i), "first")
		do(t, remote, "SET", fmt.Sprintf("v:s:%d", i), fmt.Sprintf("second %d", i))
		do(t, remote, "HSET", fmt.Sprintf("v:h:%d", i), "f", i)
		do(t, remote, "RPUSH", fmt.Sprintf("v:l:%d", i), "a", "b")
		do(t, remote, "RPUSH", fmt.Sprintf("v:l:%d", i), "c")
		time.Sleep(2 * time.Millisecond) // apart: events one by one, as a lab writes
	}
	do(t, remote, "SADD", "v:set", "x", "y")
	do(t, remote, "ZADD", "v:zset", 1.5, "m")
	do(t, remote, "SET", "v:ttl", "x", "PX", 600000)
	got := waitEqual(t, hub, "v:", 20*time.Second)
	if len(got) != 3*n+3 {
		t.Fatalf("%d keys on both sides, want %d", len(got), 3*n+3)
	}
	for i := range n {
		if v := got[fmt.Sprintf("v:s:%d", i)].Items()[0]; v != fmt.Sprintf("second %d", i) {
			t.Fatalf("v:s:%d is %q on both sides, want its second value", i, v)
		}
	}
	// Most of them came with their value (a key whose events came while
	// the link still wrote it back, or before its read script was loaded
	// on the hub, is read instead).
	t.Logf("%d hub changes of %d keys copied with their carried state", l.Stats.ValuesUsed.Load(), 3*n+3)
	if used := l.Stats.ValuesUsed.Load(); used < n {
		t.Errorf("%d hub changes copied with the state their event carried, want at least %d of %d", used, n, 3*n+3)
	}
}

// Through nginx+Webdis, which ignores the request for values, the link
// reads each hub change as without them, and converges.
func TestHubWithoutValuesStillRead(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontNginx, Log: t.Logf})
	l := startLink(t, bothConfig(t, hub, "v:"))
	_, remote := conns(t, hub)
	for i := range 50 {
		do(t, remote, "SET", fmt.Sprintf("v:%d", i), i)
	}
	waitEqual(t, hub, "v:", 20*time.Second)
	if used := l.Stats.ValuesUsed.Load(); used != 0 {
		t.Errorf("%d hub changes copied with a carried state from Webdis, which sends none", used)
	}
}

// Cutting the stream that carries values while the hub changes loses
// nothing: the events in the gap never come, and the resync that follows
// the new stream finds their keys by digest.
func TestValuesStreamCutCaughtByResync(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Log: t.Logf})
	cfg, proxy := behindDelay(t, hub, "v:", 5*time.Millisecond)
	cfg.Direction, cfg.StateFile = "both", t.TempDir()+"/state"
	l := startLink(t, cfg)
	_, remote := conns(t, hub)
	waitFor(t, 10*time.Second, "the link live", func() bool { return l.Stats.ValuesUsed.Load() > 0 || writeOne(t, remote) })
	resyncs0, conns0 := l.Stats.Resyncs.Load(), proxy.Accepted()
	for i := range 2000 {
		do(t, remote, "SET", fmt.Sprintf("v:%d", i%500), i)
		if i == 1000 {
			proxy.CutAll()
		}
	}
	got := waitEqual(t, hub, "v:", 30*time.Second)
	if len(got) < 500 {
		t.Errorf("%d keys on both sides, want at least 500", len(got))
	}
	if proxy.Accepted() == conns0 {
		t.Error("the link opened no new connection after the cut")
	}
	waitFor(t, 10*time.Second, "a resync after the new stream", func() bool { return l.Stats.Resyncs.Load() > resyncs0 })
}

// writeOne writes a key of the namespace "v:" on the hub, and says false
// (so that waitFor keeps waiting until its value is used).
func writeOne(t *testing.T, remote interface {
	Do(string, ...any) (any, error)
}) bool {
	if _, err := remote.Do("SET", "v:warm", "1"); err != nil {
		t.Fatal(err)
	}
	return false
}
