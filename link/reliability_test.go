package link_test

import (
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
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
