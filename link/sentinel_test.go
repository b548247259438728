package link_test

import (
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestLocalSentinelFailover: the local Redis is managed by Sentinel
// (local = "redis+sentinel://…") and fails over while an application
// writes to it and the link copies. The link dials the new master, sees
// its new run_id, resyncs, and both sides end equal: with every write the
// new master holds. Writes the old master acknowledged and never passed on
// are lost by Redis (asynchronous replication), not by the link: the
// application writes every key again on the new master, and those last
// values must all arrive.
//
// In the last case the old master hangs (SIGSTOP) right after the failover,
// as a partitioned one does: nothing breaks the link's connections to it,
// commands in flight on them included, so the link must close them itself.
func TestLocalSentinelFailover(t *testing.T) {
	for _, tc := range []struct {
		name      string
		direction config.Direction
		hung      bool
	}{{"push", config.Push, false}, {"both", config.Both, false}, {"both old master hung", config.Both, true}} {
		direction := tc.direction
		t.Run(tc.name, func(t *testing.T) {
			set := webdistest.NewSentinelSet(t, "lab")
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			cfg := linkConfig(hub, "lab1:")
			cfg.Direction = direction
			cfg.Local = set.SentinelURL(0)
			cfg.LocalSentinel = config.NewSentinel(set.Addrs(), set.Name)
			cfg.LocalAddr = cfg.LocalSentinel.String()
			cfg = ownState(t, cfg)
			l := startLink(t, cfg)
			_, remote := conns(t, hub)

			master := func() string {
				m, _ := set.Master()
				return m
			}
			first := master()
			if direction == config.Both {
				do(t, remote, "SET", "lab1:from-hub", "before")
			}
			w := webdistest.StartWriter(t, master, "lab1:", 500, 200*time.Microsecond)
			time.Sleep(500 * time.Millisecond)
			resyncs := l.Status().Resyncs
			began := time.Now()
			next, err := set.Failover()
			if err != nil {
				t.Fatal(err)
			}
			failover := time.Since(began)
			if tc.hung {
				resume, err := set.Server(first).Pause()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resume() })
			}
			// Writes made once the new master is in force must all arrive.
			after := w.Writes()
			waitFor(t, 10*time.Second, "writes on the new master", func() bool { return w.Writes() > after+1000 })
			acked := w.End()
			if direction == config.Both {
				do(t, remote, "SET", "lab1:from-hub-after", "after")
			}
			dump, took := webdistest.WaitEqualAt(t, next, hub.RemoteAddr, "lab1:", 60*time.Second)
			// Every key was written again on the new master (1,000 writes
			// over 500 keys): its last value must be on both sides.
			if m := webdistest.Missing(acked, dump); len(m) != 0 {
				t.Errorf("%d of %d keys lack their last write: %q", len(m), len(acked), m)
			}
			t.Logf("failover %s -> %s took %v; %d writes acknowledged (%d keys), 0 lost; converged %v after the last write",
				first, next, failover.Round(time.Millisecond), w.Writes(), len(acked), took.Round(time.Millisecond))
			if direction == config.Both {
				for k, v := range map[string]string{"lab1:from-hub": "before", "lab1:from-hub-after": "after"} {
					if got, ok := dump[k]; !ok || got.Items()[0] != v {
						t.Errorf("%s: %+v, want %q", k, got, v)
					}
				}
			}
			if r := l.Status().Resyncs; r <= resyncs {
				t.Errorf("the link did not resync after the local failover (%d resyncs before, %d after)", resyncs, r)
			}
			// The link goes on with the new master.
			c, err := redis.Dial("tcp", next)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			do(t, c, "SET", "lab1:last", "x")
			webdistest.WaitEqualAt(t, next, hub.RemoteAddr, "lab1:", 20*time.Second)
		})
	}
}
