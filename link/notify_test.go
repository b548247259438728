package link_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// A local Redis that refuses CONFIG to the link's user: the link says what
// to set, and replicates when notifications are on.
func TestLocalConfigRefused(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	do(t, local, "ACL", "SETUSER", "repl", "on", ">secret", "~*", "&*", "+@all", "-config")
	do(t, local, "CONFIG", "SET", "notify-keyspace-events", "KA") // what the operator is told to do
	cfg := linkConfig(hub, "n:")
	cfg.LocalUser, cfg.LocalPassword = "repl", "secret"
	l := runLink(t, cfg)
	waitFor(t, 10*time.Second, "the refusal reported", func() bool {
		e := l.LastError()
		return strings.Contains(e, "cannot enable keyspace notifications") && strings.Contains(e, "notify-keyspace-events KA")
	})
	do(t, local, "SET", "n:a", "1")
	waitFor(t, 10*time.Second, "replicated anyway", func() bool {
		v, _ := redis.String(remote.Do("GET", "n:a"))
		return v == "1"
	})
}

// A hub whose Webdis refuses CONFIG: in direction both the link says so,
// and remote changes still arrive when the hub has notifications on.
func TestRemoteConfigRefused(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"CONFIG"}})
	local, remote := conns(t, hub)
	do(t, remote, "CONFIG", "SET", "notify-keyspace-events", "KA") // set in the hub's redis.conf
	l := runLink(t, bothConfig(t, hub, "n:"))
	waitFor(t, 10*time.Second, "the refusal reported", func() bool {
		e := l.LastError()
		return strings.Contains(e, "cannot enable keyspace notifications") && strings.Contains(e, "remote")
	})
	do(t, remote, "SET", "n:r", "from the hub")
	waitFor(t, 10*time.Second, "remote change arrived", func() bool {
		v, _ := redis.String(local.Do("GET", "n:r"))
		return v == "from the hub"
	})
}
