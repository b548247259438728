package link_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// awkward holds the bytes that break naive encodings: NUL, '/', '.', '+',
// '%', space, newline, CR, non-UTF-8, and an empty piece.
var awkward = []string{"", "a/b", "a.b", "a+b", "100%", "a b", "line\nnext", "cr\r\n", "nul\x00byte", "\xff\xfe\x80", ".raw", "/", "%2F", "+"}

func TestPushEveryType(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "lab1:"))
	local, remote := conns(t, hub)

	do(t, local, "SET", "lab1:string", "hello")
	do(t, local, "SET", "lab1:empty", "")
	do(t, local, "HSET", "lab1:hash", "f1", "v1", "f2", "", "", "empty field")
	do(t, local, "RPUSH", "lab1:list", "a", "b", "a", "")
	do(t, local, "SADD", "lab1:set", "x", "y", "")
	do(t, local, "ZADD", "lab1:zset", 1.5, "m1", -2, "m2", "inf", "m3", 0.1, "")
	do(t, local, "XADD", "lab1:stream", "1-1", "f", "v", "g", "")
	do(t, local, "XADD", "lab1:stream", "5-0", "f", "w")
	do(t, local, "XADD", "lab1:stream", "7-3", "f", "gone")
	do(t, local, "XDEL", "lab1:stream", "7-3") // last-generated-id stays 7-3
	for i, a := range awkward {
		do(t, local, "SET", "lab1:k"+a, "v"+a)
		do(t, local, "HSET", fmt.Sprintf("lab1:h%d", i), a, a)
		do(t, local, "SADD", "lab1:s", a)
	}
	got := waitEqual(t, hub, "lab1:", 10*time.Second)
	if len(got) < 8+len(awkward)*2 {
		t.Fatalf("only %d keys replicated", len(got))
	}
	// The remote's values are the exact bytes, read independently.
	v, err := redis.Bytes(remote.Do("GET", "lab1:knul\x00byte"))
	if err != nil || !bytes.Equal(v, []byte("vnul\x00byte")) {
		t.Fatalf("NUL value: got %q, %v", v, err)
	}
	last := do(t, remote, "XINFO", "STREAM", "lab1:stream")
	if fmt.Sprint(last) == "" {
		t.Fatal("no stream on the remote")
	}

	// Changes of every type replace the whole key.
	do(t, local, "HDEL", "lab1:hash", "f1")
	do(t, local, "LPOP", "lab1:list")
	do(t, local, "SREM", "lab1:set", "x")
	do(t, local, "ZINCRBY", "lab1:zset", 10, "m2")
	do(t, local, "APPEND", "lab1:string", " world")
	do(t, local, "XTRIM", "lab1:stream", "MAXLEN", 1)
	waitEqual(t, hub, "lab1:", 10*time.Second)
}

func TestPushEmptyStream(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "e:"))
	local, _ := conns(t, hub)
	do(t, local, "XADD", "e:s1", "3-1", "f", "v")
	do(t, local, "XDEL", "e:s1", "3-1")                            // empty, last id 3-1
	do(t, local, "XGROUP", "CREATE", "e:s0", "g", "$", "MKSTREAM") // empty, last id 0-0
	waitEqual(t, hub, "e:", 10*time.Second)
}

func TestPushDeletes(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "d:"))
	local, remote := conns(t, hub)
	for _, k := range []string{"del", "unlink", "getdel", "renamed", "expires", "expired-by-time"} {
		do(t, local, "SET", "d:"+k, k)
	}
	waitEqual(t, hub, "d:", 10*time.Second)
	if n, _ := redis.Int(remote.Do("EXISTS", "d:del")); n != 1 {
		t.Fatal("d:del not replicated before the delete")
	}
	do(t, local, "DEL", "d:del")
	do(t, local, "UNLINK", "d:unlink")
	do(t, local, "GETDEL", "d:getdel")
	do(t, local, "RENAME", "d:renamed", "d:rename-target")
	do(t, local, "PEXPIRE", "d:expires", 300)
	do(t, local, "PEXPIREAT", "d:expired-by-time", time.Now().Add(400*time.Millisecond).UnixMilli())
	got := waitEqual(t, hub, "d:", 10*time.Second)
	if _, ok := got["d:rename-target"]; !ok {
		t.Fatal("rename target missing")
	}
	waitFor(t, 5*time.Second, "expired keys gone on the remote", func() bool {
		n, _ := redis.Int(remote.Do("EXISTS", "d:expires", "d:expired-by-time"))
		return n == 0
	})
	got = waitEqual(t, hub, "d:", 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("want only d:rename-target left, have %v", got)
	}
}

func TestPushTTL(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "t:"))
	local, remote := conns(t, hub)
	do(t, local, "SET", "t:a", "1", "EX", 1000)
	do(t, local, "SET", "t:b", "1")
	do(t, local, "EXPIRE", "t:b", 500)
	do(t, local, "HSET", "t:h", "f", "v")
	do(t, local, "PEXPIRE", "t:h", 700000)
	waitEqual(t, hub, "t:", 10*time.Second)
	pttl, _ := redis.Int64(remote.Do("PTTL", "t:a"))
	if pttl < 990_000 || pttl > 1_000_000 {
		t.Fatalf("remote PTTL of t:a = %d, want about 1000 s", pttl)
	}
	do(t, local, "PERSIST", "t:a")
	waitFor(t, 5*time.Second, "PERSIST replicated", func() bool {
		p, _ := redis.Int64(remote.Do("PTTL", "t:a"))
		return p == -1
	})
	waitEqual(t, hub, "t:", 10*time.Second)
}

func TestPushNamespaceIsolation(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	// A prefix with every glob character: it must match itself only.
	ns := `l[a]b*?\:`
	startLink(t, linkConfig(hub, ns))
	local, remote := conns(t, hub)
	do(t, remote, "SET", "other:remote-only", "keep")
	do(t, remote, "SET", "lab:x", "keep")
	do(t, local, "SET", ns+"in", "1")
	do(t, local, "SET", "lab*:out", "1") // would match an unescaped pattern
	do(t, local, "SET", "lXb:out", "1")
	do(t, local, "SET", "other:out", "1")
	waitFor(t, 5*time.Second, "namespace key replicated", func() bool {
		n, _ := redis.Int(remote.Do("EXISTS", ns+"in"))
		return n == 1
	})
	for _, k := range []string{"lab*:out", "lXb:out", "other:out"} {
		if n, _ := redis.Int(remote.Do("EXISTS", k)); n != 0 {
			t.Errorf("%q outside the namespace was replicated", k)
		}
	}
	for _, k := range []string{"other:remote-only", "lab:x"} {
		if v, _ := redis.String(remote.Do("GET", k)); v != "keep" {
			t.Errorf("remote key %q outside the namespace was touched", k)
		}
	}
	waitEqual(t, hub, ns, 5*time.Second)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Values far over nginx's default 1 MiB body limit still replicate exactly:
// they are staged in chunks and renamed into place.
func TestPushLargeValues(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf}) // nginx default client_max_body_size
	startLink(t, linkConfig(hub, "big:"))
	local, _ := conns(t, hub)
	do(t, local, "SET", "big:str", randomBytes(t, 20<<20))
	do(t, local, "SET", "big:medium", randomBytes(t, 600<<10)) // read whole, too big to send whole
	do(t, local, "EXPIRE", "big:medium", 3600)
	args := []any{"big:hash"}
	for i := range 150_000 {
		args = append(args, fmt.Sprintf("field-%d", i), randomBytes(t, 8))
	}
	do(t, local, "HSET", args...)
	zargs := []any{"big:zset"}
	for i := range 120_000 {
		zargs = append(zargs, i, fmt.Sprintf("m%d", i))
	}
	do(t, local, "ZADD", zargs...)
	for i := range 110_000 {
		local.Send("XADD", "big:stream", fmt.Sprintf("%d-1", i+1), "f", i)
	}
	if _, err := local.Do(""); err != nil {
		t.Fatal(err)
	}
	do(t, local, "RPUSH", append([]any{"big:list"}, zargs[1:]...)...)
	do(t, local, "SADD", append([]any{"big:set"}, zargs[1:]...)...)
	waitEqual(t, hub, "big:", 60*time.Second)
}

// A value over max_value_bytes is not replicated, and the error names the
// key; the other keys replicate.
func TestPushValueOverLimit(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := linkConfig(hub, "m:")
	cfg.MaxValueBytes = 2 << 20
	l := startLink(t, cfg)
	local, remote := conns(t, hub)
	do(t, local, "SET", "m:huge", randomBytes(t, 3<<20))
	do(t, local, "SET", "m:small", "fine")
	waitFor(t, 10*time.Second, "small key replicated", func() bool {
		v, _ := redis.String(remote.Do("GET", "m:small"))
		return v == "fine"
	})
	waitFor(t, 10*time.Second, "error naming the key", func() bool {
		e := l.LastError()
		return strings.Contains(e, `"m:huge"`) && strings.Contains(e, "max_value_bytes")
	})
	if n, _ := redis.Int(remote.Do("EXISTS", "m:huge")); n != 0 {
		t.Fatal("a value over max_value_bytes was replicated")
	}
}

// Many values near the per-read limit in one burst: the batch read defers
// what is past its byte budget, and everything arrives.
func TestPushBatchByteBudget(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf, MaxBodySize: "64m"})
	cfg := linkConfig(hub, "q:")
	cfg.Workers = 1
	startLink(t, cfg)
	local, _ := conns(t, hub)
	for i := range 24 {
		local.Send("SET", fmt.Sprintf("q:%d", i), randomBytes(t, 500<<10))
	}
	if _, err := local.Do(""); err != nil {
		t.Fatal(err)
	}
	got := waitEqual(t, hub, "q:", 30*time.Second)
	if len(got) != 24 {
		t.Fatalf("%d keys, want 24", len(got))
	}
}

// A TTL refreshed more often than the echo tolerance reaches the remote
// each time: the remote must not expire while the local key lives.
func TestPushTTLRefresh(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "tr:"))
	local, remote := conns(t, hub)
	do(t, local, "SET", "tr:session", "x", "PX", 1500)
	for range 12 { // 3.6 s: past the first expiry
		time.Sleep(300 * time.Millisecond)
		do(t, local, "PEXPIRE", "tr:session", 1500)
	}
	waitEqual(t, hub, "tr:", 5*time.Second)
	if n, _ := redis.Int(remote.Do("EXISTS", "tr:session")); n != 1 {
		t.Fatal("the remote copy expired while the local key was refreshed")
	}
}

// Copying a stream keeps the consumer groups of the far side at their place.
func TestPushStreamKeepsRemoteGroups(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	startLink(t, linkConfig(hub, "g:"))
	local, remote := conns(t, hub)
	do(t, local, "XADD", "g:s", "1-1", "f", "a")
	waitEqual(t, hub, "g:", 10*time.Second)
	do(t, remote, "XGROUP", "CREATE", "g:s", "readers", "1-1")
	do(t, local, "XADD", "g:s", "2-1", "f", "b")
	waitEqual(t, hub, "g:", 10*time.Second)
	groups, err := redis.Values(remote.Do("XINFO", "GROUPS", "g:s"))
	if err != nil || len(groups) != 1 {
		t.Fatalf("remote groups after the copy: %v %v", groups, err)
	}
	fields, _ := redis.Values(groups[0], nil)
	g := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := redis.String(fields[i], nil)
		if b, ok := fields[i+1].([]byte); ok {
			g[name] = string(b)
		}
	}
	if g["name"] != "readers" || g["last-delivered-id"] != "1-1" {
		t.Fatalf("group after the copy: %v", g)
	}
	// The group reads on from where it was: the new entry only.
	v, err := redis.Values(remote.Do("XREADGROUP", "GROUP", "readers", "c1", "STREAMS", "g:s", ">"))
	if err != nil || len(v) != 1 {
		t.Fatalf("XREADGROUP: %v %v", v, err)
	}
}
