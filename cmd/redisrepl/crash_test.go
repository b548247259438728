package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// A kill -9 of redisrepl 100 ms after keys were synced, in direction both,
// then those keys deleted on the hub while it is down: on restart the sync
// state still knows them (the journal), so the deletes win and nothing is
// resurrected. Before the journal, the state was saved every 10 s and all of
// them came back.
func TestKillNineKeepsSyncState(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	dir := t.TempDir()
	path := filepath.Join(dir, "redisrepl.toml")
	text := fmt.Sprintf(`[service]
log_level = "info"

[[link]]
name      = "crash"
local     = %q
remote    = %q
cert      = %q
key       = %q
ca        = %q
namespace = "k:"
direction = "both"
state_file = %q
`, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA, filepath.Join(dir, "crash.state"))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "-config", path)
	const n = 500
	for i := range n {
		do(t, local, "SET", fmt.Sprintf("k:%d", i), i)
	}
	webdistest.WaitFor(t, 20*time.Second, "the keys on the hub", func() bool {
		c, _ := redis.Int(remote.Do("EVAL", "return #redis.call('KEYS', 'k:*')", 0))
		return c == n
	})
	time.Sleep(100 * time.Millisecond)
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: nothing is saved on the way out
		t.Fatal(err)
	}
	<-p.exited
	for i := range n {
		do(t, remote, "DEL", fmt.Sprintf("k:%d", i))
	}

	p = start(t, "-config", path)
	// The restart noticed what the crash left: the state of the n keys.
	webdistest.WaitFor(t, 10*time.Second, "the sync state loaded", func() bool {
		return strings.Contains(p.out.String(), fmt.Sprintf(`"keys":%d`, n)) && strings.Contains(p.out.String(), "sync state loaded")
	})
	// The deletes made on the hub while redisrepl was down win.
	got := hub.WaitEqual(t, "k:", 30*time.Second, nil)
	if len(got) != 0 {
		t.Fatalf("%d keys resurrected on both sides, want 0 (the deletes on the hub win)", len(got))
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}
