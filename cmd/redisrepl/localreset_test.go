package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The whole local-reset story with the built binary: the local Redis of a
// push link restarts empty; the hub keeps its copy and /healthz and /status
// say so; 'redisrepl verify -repair=local' restores the local side from the
// hub; the link is healthy again and both sides are equal.
func TestLocalResetKeptThenRestoredByVerify(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", t.TempDir()) // where the kept reset is saved
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	addr := freeAddr(t)
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	configFile(t, path, hub, addr, false, "lr", "lr:")
	p := start(t, "-config", path)
	for i := range 300 {
		do(t, local, "SET", fmt.Sprintf("lr:%d", i), i)
	}
	hub.WaitEqual(t, "lr:", 20*time.Second, nil)
	hubKeys := func() int {
		n, _ := redis.Int(remote.Do("EVAL", "return #redis.call('KEYS', 'lr:[0-9]*')", 0))
		return n
	}

	if err := hub.RestartLocalRedis(); err != nil { // no persistence: it comes back empty
		t.Fatal(err)
	}
	restarted := time.Now()
	waitStatus(t, addr, "the local reset reported", func(s statusDocT) bool {
		l, ok := s.link("lr")
		return ok && l.LocalReset != nil && l.LocalReset.KeptKeys == 300 && l.State == "degraded"
	})
	noticed := time.Since(restarted)
	if body := waitHealthz(t, addr, 503); !strings.Contains(body, "local side lacks 300 keys the hub holds") {
		t.Errorf("/healthz does not say why: %s", body)
	}
	if n := hubKeys(); n != 300 {
		t.Fatalf("the hub holds %d keys after the local reset, want its 300 kept", n)
	}

	code, out := run(t, "verify", "-config", path, "-repair=local")
	if code != 0 {
		t.Fatalf("verify -repair=local: exit %d\n%s", code, out)
	}
	got := hub.WaitEqual(t, "lr:", 20*time.Second, nil)
	if len(got) != 300 {
		t.Fatalf("%d keys on both sides after the repair, want 300", len(got))
	}
	// The link looks again within 30 s (a resync finds no key only on the hub).
	webdistest.WaitFor(t, 45*time.Second, "the reset resolved", func() bool {
		l, ok := getStatus(t, addr).link("lr")
		return ok && l.LocalReset == nil && l.State == "live"
	})
	waitHealthz(t, addr, 200)
	t.Logf("local reset noticed %v after the restart; resolved after verify -repair=local", noticed.Round(time.Millisecond))
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}
