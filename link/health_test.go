package link_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// remoteAnswering is what /status says of the remote side.
func remoteAnswering(l *link.Link) bool {
	for _, s := range l.Status().Sides {
		if s.Side == "remote" {
			return s.Answering
		}
	}
	return true
}

// A hub part stopped (SIGSTOP: sockets open, nothing answers) is noticed
// within 10 s, in both directions, and both sides converge once it resumes.
func TestHungHubNoticedAndConverged(t *testing.T) {
	// The parts of the hub's chain: nginx, Webdis and the hub Redis, or with
	// the gateway front (WEBDISTEST_FRONT=gateway) the hub Redis.
	parts := webdistest.PartsOf(webdistest.DefaultFront())
	for _, dir := range []config.Direction{config.Push, config.Both} {
		for _, part := range parts {
			t.Run(string(dir)+"/"+string(part), func(t *testing.T) {
				t.Parallel()
				hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
				local, remote := conns(t, hub)
				cfg := linkConfig(hub, "h:")
				cfg.Direction, cfg.StateFile = dir, t.TempDir()+"/h.state"
				l := startLink(t, cfg)
				for i := range 100 {
					do(t, local, "SET", fmt.Sprintf("h:before%d", i), i)
				}
				waitEqual(t, hub, "h:", 20*time.Second)

				resume, err := hub.Pause(part)
				if err != nil {
					t.Fatal(err)
				}
				stopped := time.Now()
				t.Cleanup(func() { _ = resume() })
				for i := range 200 {
					do(t, local, "SET", fmt.Sprintf("h:during%d", i), i)
				}
				waitFor(t, 10*time.Second, "the hung hub noticed", func() bool {
					return l.State() == link.Degraded && !remoteAnswering(l)
				})
				noticed := time.Since(stopped)
				time.Sleep(time.Until(stopped.Add(12 * time.Second)))
				if err := resume(); err != nil {
					t.Fatal(err)
				}
				resumed := time.Now()
				if dir == config.Both {
					do(t, remote, "SET", "h:from-hub", "after")
				}
				waitEqual(t, hub, "h:", 30*time.Second)
				waitFor(t, 20*time.Second, "live again", func() bool { return l.State() == link.Live })
				t.Logf("%s stopped 12 s: noticed after %v, both sides equal %v after it resumed (last error: %s)",
					part, noticed.Round(time.Millisecond), time.Since(resumed).Round(time.Millisecond), l.LastError())
			})
		}
	}
}

// notify-keyspace-events reset while the link runs, on the side the link
// listens to: the canary's event stops coming, the lapse is reported, the
// link enables notifications again, and new writes arrive.
func TestNotificationsResetNoticed(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			t.Parallel()
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			local, remote := conns(t, hub)
			cfg := linkConfig(hub, "n:")
			cfg.Direction, cfg.StateFile = dir, t.TempDir()+"/n.state"
			l := startLink(t, cfg)
			src, dst := local, remote
			if dir == config.Both {
				src, dst = remote, local // the hub's notifications reset
			}
			do(t, src, "CONFIG", "SET", "notify-keyspace-events", "")
			reset := time.Now()
			waitFor(t, 12*time.Second, "the lapse reported", func() bool {
				return l.Stats.EventLapses.Load() >= 1 && strings.Contains(l.LastError(), "no keyspace event")
			})
			noticed := time.Since(reset)
			lapsedSide := map[bool]string{true: "remote", false: "local"}[dir == config.Both]
			for _, sd := range l.Status().Sides {
				if got := sd.Lapses > 0; got != (sd.Side == lapsedSide) {
					t.Errorf("/status says side %s lapsed %d times; the %s side's notifications were reset", sd.Side, sd.Lapses, lapsedSide)
				}
			}
			for i := range 100 {
				do(t, src, "SET", fmt.Sprintf("n:%d", i), i)
			}
			waitFor(t, 20*time.Second, "the writes copied", func() bool {
				n := countKeys(dst, "n:[0-9]*")
				return n == 100
			})
			flags, _ := redis.Strings(src.Do("CONFIG", "GET", "notify-keyspace-events"))
			if len(flags) != 2 || !strings.Contains(flags[1], "K") {
				t.Errorf("notifications not enabled again: %q", flags)
			}
			waitEqual(t, hub, "n:", 10*time.Second)
			t.Logf("notifications reset on the %s side: lapse reported after %v", map[bool]string{true: "hub", false: "local"}[dir == config.Both], noticed.Round(time.Millisecond))
		})
	}
}

// The local redis-server restarts empty after a burst, so that the link's
// pool holds connections the restart broke: notifications are enabled on a
// fresh connection, and new writes keep flowing.
func TestLocalRestartAfterBurstEventsFlow(t *testing.T) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		t.Run(string(dir), func(t *testing.T) {
			hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
			local, remote := conns(t, hub)
			cfg := linkConfig(hub, "w:")
			cfg.Direction, cfg.StateFile = dir, t.TempDir()+"/w.state"
			l := startLink(t, cfg)
			for i := range 2000 {
				do(t, local, "SET", fmt.Sprintf("w:burst%d", i), i)
			}
			waitEqual(t, hub, "w:", 20*time.Second)
			errs := l.Stats.Errors.Load()
			if err := hub.RestartLocalRedis(); err != nil {
				t.Fatal(err)
			}
			restarted := time.Now()
			local, _ = conns(t, hub)
			waitFor(t, 15*time.Second, "the restart noticed", func() bool { return l.Stats.Errors.Load() > errs })
			noticed := time.Since(restarted)
			for i := range 500 {
				do(t, local, "SET", fmt.Sprintf("w:new%d", i), i)
			}
			waitFor(t, 20*time.Second, "the new writes on the hub", func() bool {
				n := countKeys(remote, "w:new*")
				return n == 500
			})
			if dir == config.Both {
				waitEqual(t, hub, "w:", 20*time.Second) // the hub's copy refills the local side
			}
			t.Logf("local restart noticed after %v; new writes on the hub %v after the restart", noticed.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
		})
	}
}

// A local ACL user without INFO (+@all -@dangerous): resyncs still run, so
// keys that existed before the link started reach the hub.
func TestLocalUserWithoutInfo(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	do(t, local, "ACL", "SETUSER", "repl", "on", ">secret", "~*", "&*", "+@all", "-@dangerous")
	do(t, local, "CONFIG", "SET", "notify-keyspace-events", "KA") // what the operator is told to do
	for i := range 50 {
		do(t, local, "SET", fmt.Sprintf("i:%d", i), i)
	}
	cfg := linkConfig(hub, "i:")
	cfg.LocalUser, cfg.LocalPassword = "repl", "secret"
	startLink(t, cfg)
	got := waitEqual(t, hub, "i:", 20*time.Second)
	if len(got) != 50 {
		t.Fatalf("%d keys on both sides, want the 50 written before the start", len(got))
	}
}

// A local Redis where the link may not use CONFIG and notifications are
// off: the refusal and the lapse are reported, and the link converges by
// resyncs while events do not flow.
func TestNotificationsOffConfigRefused(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	do(t, local, "ACL", "SETUSER", "repl", "on", ">secret", "~*", "&*", "+@all", "-config")
	cfg := linkConfig(hub, "c:")
	cfg.LocalUser, cfg.LocalPassword = "repl", "secret"
	l := startLink(t, cfg)
	for i := range 100 {
		do(t, local, "SET", fmt.Sprintf("c:%d", i), i)
	}
	written := time.Now()
	waitFor(t, 15*time.Second, "the lapse reported", func() bool { return l.Stats.EventLapses.Load() >= 1 })
	noticed := time.Since(written)
	got := waitEqual(t, hub, "c:", 45*time.Second)
	t.Logf("events off and CONFIG refused: lapse reported %v after the writes, both sides equal after %v (by resyncs)", noticed.Round(time.Millisecond), time.Since(written).Round(time.Millisecond))
	if len(got) != 100 {
		t.Fatalf("%d keys on both sides, want 100", len(got))
	}
	if l.State() == link.Live {
		t.Error("the link says live while its events do not flow")
	}
}

// A local ACL user granted its namespace and its keyspace channel but not
// the canary key (outside the namespace) nor its channel: the link
// replicates, says that its events cannot be proved and why, and counts no
// lapse for it.
func TestLocalUserWithoutCanaryKey(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	do(t, local, "ACL", "SETUSER", "repl", "on", ">secret", "~u:*", "&__keyspace@0__:u:*", "+@all", "-@dangerous", "+config", "+info")
	cfg := linkConfig(hub, "u:")
	cfg.LocalUser, cfg.LocalPassword = "repl", "secret"
	l := runLink(t, cfg)
	waitFor(t, 15*time.Second, "the link live", func() bool { return l.State() == link.Live })
	do(t, local, "SET", "u:k", "v")
	waitEqual(t, hub, "u:", 15*time.Second)
	waitFor(t, 10*time.Second, "unproven events reported", func() bool {
		sd := l.Status().Sides[0]
		return sd.EventsFlowing == nil && strings.Contains(sd.Unproven, "canary")
	})
	time.Sleep(6 * time.Second) // past a canary's timeout
	if sd := l.Status().Sides[0]; sd.Lapses != 0 || l.State() != link.Live {
		t.Errorf("a canary that cannot be proved counted as a lapse: %+v, state %s, last error %s", sd, l.State(), l.LastError())
	}
	t.Logf("local side: %s", l.Status().Sides[0].Unproven)
}
