package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// verifyConfig writes a configuration with one link "v" for namespace ns.
func verifyConfig(t *testing.T, hub *webdistest.Hub, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	configFile(t, path, hub, "", false, "v", ns)
	return path
}

// Every kind of difference is found and named, -repair removes them all,
// and the sides are then equal as an independent dump sees them.
func TestVerifyAndRepair(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	path := verifyConfig(t, hub, "v:")
	both := func(cmd string, args ...any) { do(t, local, cmd, args...); do(t, remote, cmd, args...) }

	// Equal on both sides: not reported.
	for i := range 50 {
		both("SET", fmt.Sprintf("v:same:%d", i), i)
	}
	both("HSET", "v:same:hash", "f", "1", "g", "2")
	both("SET", "v:ttl-close", "x", "PX", 3_600_000) // expiry times a few ms apart
	// The differences.
	binKey := "v:bin\x00\xff/ %+.\nkey"
	do(t, local, "SET", "v:only-local", "1")
	do(t, local, "ZADD", "v:only-local-zset", 1, "a", 2.5, "b")
	do(t, local, "XADD", "v:only-local-stream", "5-1", "f", "v")
	do(t, local, "SET", "v:big", strings.Repeat("0123456789", 300_000)) // 3 MB: copied in chunks
	do(t, remote, "HSET", "v:only-remote", "f", "v")
	do(t, local, "HSET", "v:type", "f", "v")
	do(t, remote, "SET", "v:type", "v")
	do(t, local, "RPUSH", "v:value", "a", "b")
	do(t, remote, "RPUSH", "v:value", "a", "c")
	do(t, local, "SET", "v:ttl", "same", "EX", 3600)
	do(t, remote, "SET", "v:ttl", "same", "EX", 3000)
	do(t, local, "SADD", binKey, "m\x00", "n")
	do(t, remote, "SADD", binKey, "m\x00")
	do(t, local, "SET", "w:outside", "1") // not in the namespace

	want := map[string]string{
		"v:only-local":        "missing remotely",
		"v:only-local-zset":   "missing remotely",
		"v:only-local-stream": "missing remotely",
		"v:big":               "missing remotely",
		"v:only-remote":       "missing locally",
		"v:type":              "type differs",
		"v:value":             "value differs",
		"v:ttl":               "ttl differs",
		binKey:                "value differs",
	}
	code, out := run(t, "verify", "-config", path)
	if code != 1 {
		t.Fatalf("verify: exit %d, want 1:\n%s", code, out)
	}
	checkDiffs(t, out, want)
	if strings.Contains(out, "0123456789") || strings.Contains(out, "same") {
		t.Fatalf("a value was printed:\n%s", out)
	}
	for _, s := range []string{"61 keys compared", "9 differences", "missing remotely: 4", "missing locally:  1",
		"type differs:     1", "value differs:    2", "ttl differs:      1"} {
		if !strings.Contains(out, s) {
			t.Errorf("the summary lacks %q:\n%s", s, out)
		}
	}

	// -max-diffs limits the lines, not the count.
	code, out = run(t, "verify", "-config", path, "-max-diffs", "2")
	if code != 1 || strings.Count(out, ": \"v:") != 2 || !strings.Contains(out, "-max-diffs 2") || !strings.Contains(out, "9 differences") {
		t.Fatalf("-max-diffs 2: exit %d:\n%s", code, out)
	}
	// A tolerance above the TTL difference hides it.
	code, out = run(t, "verify", "-config", path, "-ttl-tolerance", "2h")
	if code != 1 || strings.Contains(out, `"v:ttl"`) {
		t.Fatalf("-ttl-tolerance 2h: exit %d:\n%s", code, out)
	}

	code, out = run(t, "verify", "-config", path, "-repair")
	if code != 0 || !strings.Contains(out, "repaired 9 keys") {
		t.Fatalf("verify -repair: exit %d:\n%s", code, out)
	}
	checkDiffs(t, out, want)
	code, out = run(t, "verify", "-config", path)
	if code != 0 || !strings.Contains(out, "no differences") || !strings.Contains(out, "60 keys compared") {
		t.Fatalf("verify after repair: exit %d:\n%s", code, out)
	}
	checkEqual(t, local, remote, "v:")
	if n, _ := redis.Int(remote.Do("EXISTS", "w:outside")); n != 0 {
		t.Fatal("repair copied a key outside the namespace")
	}

	// -repair=local makes the local side equal to the remote.
	do(t, remote, "SET", "v:new-remote", "r")
	do(t, local, "SET", "v:new-local", "l")
	do(t, remote, "HSET", "v:same:hash", "f", "changed")
	code, out = run(t, "verify", "-config", path, "-repair=local")
	if code != 0 || !strings.Contains(out, "repaired 3 keys") {
		t.Fatalf("verify -repair=local: exit %d:\n%s", code, out)
	}
	checkEqual(t, local, remote, "v:")
	if v, _ := redis.String(local.Do("HGET", "v:same:hash", "f")); v != "changed" {
		t.Fatalf("local v:same:hash f = %q, want the remote's value", v)
	}
	if n, _ := redis.Int(local.Do("EXISTS", "v:new-local")); n != 0 {
		t.Fatal("-repair=local kept a key the remote lacks")
	}
	if code, out := run(t, "verify", "-config", path, "-repair", "local"); code != 2 {
		t.Fatalf("-repair local (a stray argument): exit %d:\n%s", code, out)
	}
}

// checkDiffs checks that out lists every key of want with its kind, and no
// other key.
func checkDiffs(t *testing.T, out string, want map[string]string) {
	t.Helper()
	for k, kind := range want {
		if !strings.Contains(out, fmt.Sprintf("%s: %q (", kind, k)) {
			t.Errorf("%s %q not listed:\n%s", kind, k, out)
		}
	}
	listed := regexp.MustCompile(`(?m)^[a-z][a-z ]* (differs|locally|remotely): "`).FindAllString(out, -1)
	if len(listed) != len(want) {
		t.Errorf("%d differences listed, want %d:\n%s", len(listed), len(want), out)
	}
}

func checkEqual(t *testing.T, local, remote redis.Conn, prefix string) {
	t.Helper()
	l, err := webdistest.Dump(local, prefix)
	if err != nil {
		t.Fatal(err)
	}
	r, err := webdistest.Dump(remote, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if d := webdistest.Diff(l, r, 1500); len(d) > 0 {
		t.Fatalf("sides differ:\n%s", strings.Join(d, "\n"))
	}
}

// Exit status 2 when the comparison cannot be made: the proxy down, a
// refused certificate, no such link. The one-link flags work too.
func TestVerifyCannotCompare(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	do(t, local, "SET", "v:1", "x")
	path := verifyConfig(t, hub, "v:")
	flags := func(cert, key string) []string {
		return []string{"verify", "-raddr", hub.LocalAddr, "-haddr", hub.URL, "-cert", cert, "-key", key, "-CA", hub.CA, "-nam", "v:"}
	}

	code, out := run(t, flags(hub.Cert, hub.Key)...)
	if code != 1 || !strings.Contains(out, `missing remotely: "v:1"`) {
		t.Fatalf("one-link flags: exit %d:\n%s", code, out)
	}
	code, out = run(t, flags(hub.ForeignCert, hub.ForeignKey)...)
	if code != 2 || !strings.Contains(out, "cert-refused") {
		t.Fatalf("foreign certificate: exit %d, want 2 and cert-refused:\n%s", code, out)
	}
	code, out = run(t, "verify", "-config", path, "-link", "nope")
	if code != 2 || !strings.Contains(out, `no link "nope"`) {
		t.Fatalf("-link nope: exit %d:\n%s", code, out)
	}
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	code, out = run(t, "verify", "-config", path, "-repair")
	if code != 2 || !strings.Contains(out, "unreachable") || !strings.Contains(out, "INCOMPLETE") {
		t.Fatalf("proxy down: exit %d, want 2 and unreachable:\n%s", code, out)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
