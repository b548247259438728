package link

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Plain mode is tested with the real stack, through a Webdis whose ACL
// disables EVAL and EVALSHA, as a hub may.

var noEval = []string{"EVAL", "EVALSHA"}

// odd holds the bytes that break naive encodings.
var odd = []string{"", "a/b", "a.b", "a+b", "100%", "a b", "l\nn", "nul\x00byte", "\xff\xfe\x80", ".raw", "/", "+", "a,b", "1:x"}

// plainHub is a hub whose Webdis refuses EVAL (or opts.Disabled, if set):
// nginx+Webdis whatever WEBDISTEST_FRONT says, since these tests carry
// streams by RESTORE, which the gateway refuses to tenants (its own tests
// run a plain-mode link through it).
func plainHub(t *testing.T, opts webdistest.Options) *webdistest.Hub {
	t.Helper()
	if opts.Disabled == nil {
		opts.Disabled = noEval
	}
	opts.Log, opts.Front = t.Logf, webdistest.FrontNginx
	return webdistest.New(t, opts)
}

func plainConfig(t *testing.T, hub *webdistest.Hub, ns string) config.Link {
	return config.Link{
		Name: "plain", Local: hub.LocalAddr, LocalAddr: hub.LocalAddr, Namespace: ns,
		Remote: hub.URL, Cert: hub.Cert, Key: hub.Key, CA: hub.CA,
		StateFile: t.TempDir() + "/plain.state",
	}.WithDefaults()
}

// logLines collects a logger's output, one JSON object per line.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if os.Getenv("REDISREPL_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return w.b.Write(p)
}

// count is the number of lines that contain s.
func (w *logLines) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range strings.Split(w.b.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// runPlainLink runs a link until stop (or the test's end) and waits for it
// to be live.
func runPlainLink(t *testing.T, cfg config.Link, logs *logLines) (*Link, func()) {
	t.Helper()
	if logs == nil {
		logs = &logLines{}
	}
	if cfg.StateFile == "" {
		cfg.StateFile = t.TempDir() + "/" + cfg.Name + ".state" // locked by the link: one per test
	}
	l, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("link did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)
	pWait(t, 20*time.Second, "link live", func() bool { return l.State() == Live })
	return l, stop
}

func pWait(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	webdistest.WaitFor(t, d, what, cond)
}

func pConns(t *testing.T, hub *webdistest.Hub) (local, remote redis.Conn) {
	t.Helper()
	return hub.Conns(t)
}

func pDo(t *testing.T, c redis.Conn, cmd string, args ...any) any {
	t.Helper()
	v, err := c.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %.100q: %v", cmd, fmt.Sprint(args...), err)
	}
	return v
}

// pWaitEqual waits until both sides hold the same keys under prefix (but
// those skip says to leave out), byte for byte, TTLs within 1.5 s.
func pWaitEqual(t *testing.T, hub *webdistest.Hub, prefix string, d time.Duration, skip func(string) bool) map[string]webdistest.Key {
	t.Helper()
	return hub.WaitEqual(t, prefix, d, skip)
}

// A link whose hub refuses EVAL replicates every type but streams with
// plain commands, and shows it in its status.
func TestPlainLinkReplicates(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	logs := &logLines{}
	l, _ := runPlainLink(t, plainConfig(t, hub, "p:"), logs)
	local, remote := pConns(t, hub)

	pDo(t, local, "SET", "p:string", "hello")
	pDo(t, local, "SET", "p:empty", "")
	pDo(t, local, "SET", "p:ttl", "x", "EX", 1000)
	pDo(t, local, "SET", "p:longttl", "x", "EX", 40*86400)
	pDo(t, local, "HSET", "p:hash", "f1", "v1", "f2", "", "", "empty field")
	pDo(t, local, "PEXPIRE", "p:hash", 700_000)
	pDo(t, local, "RPUSH", "p:list", "a", "b", "a", "")
	pDo(t, local, "SADD", "p:set", "x", "y", "")
	pDo(t, local, "ZADD", "p:zset", 1.5, "m1", -2, "m2", "inf", "m3", 0.1, "")
	pDo(t, local, "SET", "p:del", "x")
	for i, a := range odd {
		pDo(t, local, "SET", "p:k"+a, "v"+a)
		pDo(t, local, "HSET", fmt.Sprintf("p:h%d", i), a, a)
		pDo(t, local, "SADD", "p:s", a)
		pDo(t, local, "RPUSH", "p:l", a)
		pDo(t, local, "ZADD", "p:z", i, a)
	}
	got := pWaitEqual(t, hub, "p:", 10*time.Second, nil)
	if len(got) < 10+len(odd)*2 {
		t.Fatalf("only %d keys replicated", len(got))
	}
	if v, err := redis.Bytes(remote.Do("GET", "p:knul\x00byte")); err != nil || string(v) != "vnul\x00byte" {
		t.Fatalf("NUL value: %q, %v", v, err)
	}
	if p, _ := redis.Int64(remote.Do("TTL", "p:longttl")); p < 40*86400-5 {
		t.Fatalf("long TTL: %d s on the remote", p)
	}

	// Changes replace whole keys; deletes, TTL changes and type changes follow.
	pDo(t, local, "HDEL", "p:hash", "f1")
	pDo(t, local, "LPOP", "p:list")
	pDo(t, local, "SREM", "p:set", "x")
	pDo(t, local, "ZINCRBY", "p:zset", 10, "m2")
	pDo(t, local, "APPEND", "p:string", " world")
	pDo(t, local, "DEL", "p:del")
	pDo(t, local, "PERSIST", "p:ttl")
	pDo(t, local, "EXPIRE", "p:string", 500)
	pDo(t, local, "PERSIST", "p:hash")
	pDo(t, local, "DEL", "p:list")
	pDo(t, local, "HSET", "p:list", "now", "a hash")
	pDo(t, local, "SET", "p:gone", "x", "PX", 300)
	pWaitEqual(t, hub, "p:", 10*time.Second, nil)
	pWait(t, 5*time.Second, "expired key gone on the remote", func() bool {
		n, _ := redis.Int(remote.Do("EXISTS", "p:gone"))
		return n == 0
	})
	if p, _ := redis.Int64(remote.Do("PTTL", "p:ttl")); p != -1 {
		t.Fatalf("PERSIST not replicated: PTTL %d", p)
	}
	if ty, _ := redis.String(remote.Do("TYPE", "p:list")); ty != "hash" {
		t.Fatalf("type change not replicated: %s", ty)
	}

	st := l.Status()
	if st.WritePath != store.PathPlain {
		t.Fatalf("status write_path = %q, want plain", st.WritePath)
	}
	if st.LastError != "" {
		t.Fatalf("last error: %s", st.LastError)
	}
	// The fallback is said once, however many requests were refused.
	if n := logs.count(fallbackMsg); n != 1 {
		t.Fatalf("fallback logged %d times, want once", n)
	}
	if n := logs.count(`"level":"warn"`); n != 1 {
		t.Errorf("%d warnings logged, want only the fallback:\n%s", n, logs.b.String())
	}
}

// link.New makes the link say when it falls back (Store.OnFallback).
func TestPlainFallbackReported(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	l, err := New(plainConfig(t, hub, "r:"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if l.remote.st.OnFallback == nil {
		t.Skip("link.New does not set l.remote.st.OnFallback = l.reportFallback yet: the fallback would not be logged")
	}
}

// A stream key cannot be replicated in plain mode where the hub refuses
// RESTORE too: the error names it, and everything else replicates.
func TestPlainStreamReported(t *testing.T) {
	hub := plainHub(t, webdistest.Options{Disabled: []string{"EVAL", "EVALSHA", "RESTORE"}})
	l, _ := runPlainLink(t, plainConfig(t, hub, "x:"), nil)
	local, remote := pConns(t, hub)
	pDo(t, local, "XADD", "x:stream", "1-1", "f", "v")
	for i := range 50 {
		pDo(t, local, "SET", fmt.Sprintf("x:k%d", i), i)
		pDo(t, local, "HSET", fmt.Sprintf("x:h%d", i), "f", i)
	}
	pWaitEqual(t, hub, "x:", 10*time.Second, func(k string) bool { return k == "x:stream" })
	pWait(t, 10*time.Second, "the stream reported", func() bool {
		return strings.Contains(l.LastError(), `"x:stream"`) && l.Stats.Errors.Load() > 0
	})
	if n, _ := redis.Int(remote.Do("EXISTS", "x:stream")); n != 0 {
		t.Fatal("a stream on the remote")
	}
	if !strings.Contains(l.LastError(), "RESTORE") {
		t.Errorf("the error does not say RESTORE is refused: %s", l.LastError())
	}
	t.Logf("last error: %s", l.LastError())
}

// Streams travel both ways through a hub that refuses EVAL, with DUMP and
// RESTORE: entries, IDs, the last-generated-id, TTLs and consumer groups;
// changes and deletes follow, and a restarted link's resync finds both
// sides equal (the plain side's streams are digested through the local
// Redis).
func TestPlainStreamBoth(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	cfg := plainConfig(t, hub, "sb:")
	cfg.Direction = "both"
	l, stop := runPlainLink(t, cfg, nil)
	local, remote := pConns(t, hub)
	pDo(t, local, "XADD", "sb:local", "1-1", "f", "v\x00", "", "")
	pDo(t, local, "XADD", "sb:local", "2-0", "g", "w")
	pDo(t, local, "XGROUP", "CREATE", "sb:local", "readers", "1-1")
	pDo(t, local, "EXPIRE", "sb:local", 1000)
	pDo(t, remote, "XADD", "sb:remote", "3-3", "from", "the hub")
	pDo(t, remote, "XSETID", "sb:remote", "9-0")
	pDo(t, local, "SET", "sb:s", "beside")
	for i := range 20_000 { // a big one: over 16,384 entries
		remote.Send("XADD", "sb:bigremote", "*", "i", i)
	}
	pDo(t, remote, "PING")
	pWaitEqual(t, hub, "sb:", 20*time.Second, nil)
	if id := lastID(t, local, "sb:remote"); id != "9-0" {
		t.Errorf("last-generated-id on the local side %q, want 9-0", id)
	}
	if g, _ := redis.Values(remote.Do("XINFO", "GROUPS", "sb:local")); len(g) != 1 {
		t.Errorf("%d consumer groups on the remote, want 1", len(g))
	}

	pDo(t, local, "XADD", "sb:remote", "10-0", "more", "local")
	pDo(t, remote, "XADD", "sb:local", "5-0", "more", "remote")
	pDo(t, remote, "XADD", "sb:bigremote", "*", "last", "one")
	pWaitEqual(t, hub, "sb:", 20*time.Second, nil)
	pDo(t, remote, "DEL", "sb:local")
	got := pWaitEqual(t, hub, "sb:", 20*time.Second, nil)
	if _, ok := got["sb:local"]; ok || len(got) != 3 {
		t.Fatalf("after the delete: %d keys", len(got))
	}
	if st := l.Status(); st.WritePath != store.PathPlain || st.LastError != "" {
		t.Fatalf("status: path %s, last error %q", st.WritePath, st.LastError)
	}
	pWait(t, 10*time.Second, "dirty keys copied", func() bool { return l.dirty.Idle() })
	stop()

	l, _ = runPlainLink(t, cfg, nil)
	if st := l.Status(); !strings.HasSuffix(st.LastResyncOutcome, " 0 differed") || st.LastError != "" {
		t.Fatalf("a resync of equal sides with streams: %s, last error %q", st.LastResyncOutcome, st.LastError)
	}
}

func lastID(t *testing.T, c redis.Conn, key string) string {
	t.Helper()
	info, err := redis.Values(c.Do("XINFO", "STREAM", key))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(info); i += 2 {
		if k, _ := redis.String(info[i], nil); k == "last-generated-id" {
			id, _ := redis.String(info[i+1], nil)
			return id
		}
	}
	return ""
}

// Values far over nginx's default 1 MiB body limit replicate in plain mode
// too: staged in chunks with plain commands, then renamed into place.
func TestPlainLargeValues(t *testing.T) {
	hub := plainHub(t, webdistest.Options{}) // nginx's default client_max_body_size
	l, _ := runPlainLink(t, plainConfig(t, hub, "big:"), nil)
	local, _ := pConns(t, hub)
	r := rand.New(rand.NewPCG(3, 4))
	str := make([]byte, 3<<20)
	for i := range str {
		str[i] = byte(r.IntN(256))
	}
	pDo(t, local, "SET", "big:str", str, "EX", 3600)
	pDo(t, local, "SET", "big:medium", str[:600<<10]) // read whole, too big to send whole
	args := []any{"big:hash"}
	for i := range 150_000 {
		args = append(args, fmt.Sprintf("field-%d", i), str[i*8:i*8+8])
	}
	pDo(t, local, "HSET", args...)
	zargs := []any{"big:zset"}
	for i := range 120_000 {
		zargs = append(zargs, i, fmt.Sprintf("m%d", i))
	}
	pDo(t, local, "ZADD", zargs...)
	pDo(t, local, "RPUSH", append([]any{"big:list"}, zargs[1:]...)...)
	pDo(t, local, "SADD", append([]any{"big:set"}, zargs[1:]...)...)
	pWaitEqual(t, hub, "big:", 90*time.Second, nil)
	if st := l.Status(); st.WritePath != store.PathPlain || st.LastError != "" {
		t.Fatalf("status: path %s, last error %q", st.WritePath, st.LastError)
	}
}

// A link restarted after both sides changed behind its back converges in
// plain mode, and a resync then finds nothing to repair: digests computed
// in Go on the remote equal those computed by Lua locally, big keys too.
func TestPlainResyncConverges(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	cfg := plainConfig(t, hub, "rs:")
	_, stop := runPlainLink(t, cfg, nil)
	local, remote := pConns(t, hub)
	for i := range 100 {
		pDo(t, local, "SET", fmt.Sprintf("rs:s%d", i), fmt.Sprintf("v%d\x00", i))
		pDo(t, local, "HSET", fmt.Sprintf("rs:h%d", i), "f", i, "g", "")
		pDo(t, local, "RPUSH", fmt.Sprintf("rs:l%d", i), i, "x")
	}
	pDo(t, local, "EXPIRE", "rs:s1", 1000)
	args := []any{"rs:bighash"} // exactly digested although too big to read whole
	for i := range 60_000 {
		args = append(args, fmt.Sprintf("f%d", i), i)
	}
	pDo(t, local, "HSET", args...)
	pWaitEqual(t, hub, "rs:", 30*time.Second, nil)
	stop()

	for i := range 10 {
		pDo(t, local, "SET", fmt.Sprintf("rs:s%d", i), "changed locally")
		pDo(t, local, "DEL", fmt.Sprintf("rs:h%d", i))
		pDo(t, local, "ZADD", fmt.Sprintf("rs:new%d", i), i, "m")
		pDo(t, remote, "SET", fmt.Sprintf("rs:s%d", 10+i), "changed remotely")
		pDo(t, remote, "DEL", fmt.Sprintf("rs:l%d", i))
		pDo(t, remote, "SET", fmt.Sprintf("rs:junk%d", i), "remote only")
	}
	pDo(t, local, "PERSIST", "rs:s1")
	pDo(t, local, "EXPIRE", "rs:s2", 900)
	pDo(t, remote, "HSET", "rs:bighash", "f1", "changed")
	pDo(t, remote, "SET", "other:x", "not in the namespace")

	l, stop := runPlainLink(t, cfg, nil)
	if o := l.Status().LastResyncOutcome; strings.HasSuffix(o, " 0 differed") {
		t.Fatalf("the resync at start found nothing to repair: %s", o)
	}
	pWaitEqual(t, hub, "rs:", 30*time.Second, nil)
	if v, _ := redis.String(remote.Do("GET", "other:x")); v != "not in the namespace" {
		t.Fatal("a key outside the namespace was touched")
	}
	if l.remote.st.Path() != store.PathPlain || l.LastError() != "" {
		t.Fatalf("path %s, last error %q", l.remote.st.Path(), l.LastError())
	}
	pWait(t, 10*time.Second, "dirty keys copied", func() bool { return l.dirty.Idle() })
	stop()

	// Started again on equal sides, the link's resync repairs nothing.
	l, _ = runPlainLink(t, cfg, nil)
	st := l.Status()
	if !strings.HasPrefix(st.LastResyncOutcome, "ok") || !strings.HasSuffix(st.LastResyncOutcome, " 0 differed") {
		t.Fatalf("a resync of equal sides: %s", st.LastResyncOutcome)
	}
	if st.WritePath != store.PathPlain || st.LastError != "" {
		t.Fatalf("path %s, last error %q", st.WritePath, st.LastError)
	}
}

// Direction both in plain mode: remote changes are read with plain
// commands and reach the local side.
func TestPlainBoth(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	cfg := plainConfig(t, hub, "b:")
	cfg.Direction = "both"
	l, _ := runPlainLink(t, cfg, nil)
	local, remote := pConns(t, hub)
	pDo(t, remote, "SET", "b:r", "from remote\x00", "EX", 1000)
	pDo(t, remote, "HSET", "b:rh", "f", "v", "", "")
	pDo(t, remote, "ZADD", "b:rz", 2.5, "m")
	pDo(t, local, "SET", "b:l", "from local")
	pDo(t, local, "RPUSH", "b:ll", "a", "b")
	pWaitEqual(t, hub, "b:", 10*time.Second, nil)
	pDo(t, remote, "DEL", "b:rh")
	pDo(t, remote, "SADD", "b:rs", "x")
	pDo(t, local, "DEL", "b:ll")
	got := pWaitEqual(t, hub, "b:", 10*time.Second, nil)
	if _, ok := got["b:rs"]; !ok || len(got) != 4 {
		t.Fatalf("after deletes: %v", got)
	}
	if l.Status().WritePath != store.PathPlain || l.LastError() != "" {
		t.Fatalf("path %s, last error %q", l.Status().WritePath, l.LastError())
	}
}
