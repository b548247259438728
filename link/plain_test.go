package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Plain mode is tested with the real stack, through a Webdis whose ACL
// disables EVAL and EVALSHA, as a hub may.

var noEval = []string{"EVAL", "EVALSHA"}

// odd holds the bytes that break naive encodings.
var odd = []string{"", "a/b", "a.b", "a+b", "100%", "a b", "l\nn", "nul\x00byte", "\xff\xfe\x80", ".raw", "/", "+", "a,b", "1:x"}

func plainHub(t *testing.T, opts webdistest.Options) *webdistest.Hub {
	t.Helper()
	opts.Disabled, opts.Log = noEval, t.Logf
	return webdistest.New(t, opts)
}

func plainConfig(t *testing.T, hub *webdistest.Hub, ns string) config.Link {
	return config.Link{
		Name: "plain", Local: hub.LocalAddr, LocalAddr: hub.LocalAddr, Namespace: ns,
		Remote: hub.URL, Cert: hub.Cert, Key: hub.Key, CA: hub.CA,
		Direction: "push", Conflict: "local", Workers: 8, BatchKeys: 256,
		MaxRequestBytes: 900 << 10, MaxDirtyKeys: 1_000_000, MaxValueBytes: 512 << 20,
		StateFile: t.TempDir() + "/plain.state",
	}
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
	l, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	if l.remote.OnFallback == nil {
		// Until link.New sets it, the link says nothing when it falls
		// back; the tests of the fallback itself work the same.
		l.remote.OnFallback = l.reportFallback
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
	pWait(t, 20*time.Second, "link live", func() bool { return l.State() == "live" })
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

// webdisStore is a Store on hub's remote, through Webdis.
func webdisStore(t *testing.T, hub *webdistest.Hub, prefix string) *Store {
	t.Helper()
	c, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA, MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &Store{Name: "remote", Do: c, Prefix: []byte(prefix), MaxRequest: 900 << 10, MaxElems: 100_000, MaxBytes: 900 << 10, MaxBatchBytes: 4 << 20}
}

// localStore is a Store on hub's local Redis, running scripts.
func localStore(t *testing.T, hub *webdistest.Hub, prefix string) *Store {
	t.Helper()
	p := NewPool(RedisAddr{Addr: hub.LocalAddr}, 16)
	t.Cleanup(func() { p.Close() })
	return &Store{Name: "local", Do: p, Prefix: []byte(prefix), MaxElems: 100_000, MaxBytes: 900 << 10, MaxBatchBytes: 4 << 20}
}

// luaDigest runs luaLib's digest(ty, elems) on a real Redis.
var luaDigestScript = newScript(luaLib + `
local v = {}
for i = 2, #ARGV do v[#v + 1] = ARGV[i] end
return digest(ARGV[1], v)
`)

// The digest computed in Go is the one luaLib computes, for every type and
// for the bytes that trouble encodings.
func TestPlainDigestEqualsLua(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	s := localStore(t, hub, "d:")
	ctx := context.Background()
	bs := func(ss ...string) [][]byte {
		out := make([][]byte, len(ss))
		for i, x := range ss {
			out[i] = []byte(x)
		}
		return out
	}
	type vec struct {
		ty    string
		elems [][]byte
	}
	vecs := []vec{
		{"none", nil}, {"string", bs("")}, {"string", bs("\x00")}, {"string", bs("hello")}, {"string", bs("\xff\xfe\x80")},
		{"string", [][]byte{bytes.Repeat([]byte("ab\x00"), 400_000)}},
		{"hash", nil}, {"hash", bs("", "")}, {"hash", bs("f", "v", "a\x00b", "\xff", "", "x")}, {"hash", bs("a,b", "1:x", "a", "b,1:x")},
		{"list", nil}, {"list", bs("", "", "a")}, {"list", bs("a,b")}, {"list", bs("a", "b")}, {"list", bs("1:x")},
		{"set", nil}, {"set", bs("")}, {"set", bs("x", "y", "\x00", "\xff")},
		{"zset", bs("m", "1", "n", "-inf", "", "0.10000000000000001", "\x00", "inf")},
		{"stream", bs("7-3", "1-1", "2", "f", "v", "g", "", "5-0", "1", "f", "w")},
		{"vectorset", nil},
	}
	odds := bs(odd...)
	vecs = append(vecs, vec{"list", odds}, vec{"set", odds}, vec{"hash", append(odds, odds...)})
	r := rand.New(rand.NewPCG(1, 2))
	types := []string{"string", "hash", "list", "set", "zset", "stream"}
	for range 300 {
		ty := types[r.IntN(len(types))]
		n := r.IntN(12)
		if ty == "string" {
			n = 1
		}
		if ty == "hash" || ty == "zset" {
			n *= 2
		}
		var elems [][]byte
		for range n {
			e := make([]byte, r.IntN(30))
			for i := range e {
				e[i] = byte(r.IntN(256))
			}
			elems = append(elems, e)
		}
		vecs = append(vecs, vec{ty, elems})
	}
	seen, inputs := map[string]bool{}, map[string]bool{}
	for i, v := range vecs {
		inputs[v.ty+" "+fmt.Sprintf("%q", v.elems)] = true
		want, err := redis.String(s.Eval(ctx, luaDigestScript, nil, append([][]byte{[]byte(v.ty)}, v.elems...)...))
		if err != nil {
			t.Fatalf("vector %d: EVAL: %v", i, err)
		}
		if got := digestOf(v.ty, v.elems); got != want {
			t.Errorf("vector %d (%s, %.80q): Go digest %s, Lua %s", i, v.ty, v.elems, got, want)
		}
		seen[want] = true
	}
	if len(seen) != len(inputs) {
		t.Errorf("%d distinct digests for %d distinct vectors", len(seen), len(inputs))
	}
	if digestOf("none", nil) != noneDigestHex {
		t.Error("digest of none is not noneDigestHex")
	}
}

// fillBoth writes the same keys on both Redis servers: every type, odd
// bytes, TTLs short and long (past 2^31 ms), big keys.
func fillBoth(t *testing.T, conns ...redis.Conn) {
	now := time.Now().UnixMilli()
	for _, c := range conns {
		pDo(t, c, "SET", "d:str", "hello")
		pDo(t, c, "SET", "d:empty", "")
		pDo(t, c, "SET", "d:ttl", "x", "PXAT", now+100_000)
		pDo(t, c, "SET", "d:longttl", "x", "PXAT", now+40*86400_000) // PTTL past 2^31
		pDo(t, c, "HSET", "d:hash", "f", "v", "", "", "a\x00b", "\xff")
		pDo(t, c, "PEXPIREAT", "d:hash", now+5_000_000)
		pDo(t, c, "RPUSH", "d:list", "a", "", "a", "\x00")
		pDo(t, c, "SADD", "d:set", "x", "", "\xfe")
		pDo(t, c, "ZADD", "d:zset", 1.5, "m1", "-inf", "m2", "inf", "m3", 0.1, "", 0, "zero", 1e300, "big")
		pDo(t, c, "XADD", "d:stream", "1-1", "f", "v")
		for i, a := range odd {
			pDo(t, c, "SET", "d:k"+a, "v"+a)
			pDo(t, c, "HSET", fmt.Sprintf("d:h%d", i), a, a)
			pDo(t, c, "SADD", "d:s", a)
			pDo(t, c, "RPUSH", "d:l", a)
		}
		// Big: over MaxElems / MaxBytes of the stores below, digested exactly.
		args := []any{"d:bighash"}
		for i := range 300 {
			args = append(args, fmt.Sprintf("f%d", i), i)
		}
		pDo(t, c, "HSET", args...)
		pDo(t, c, "SET", "d:bigstr", strings.Repeat("x\x00", 5000))
		pDo(t, c, "ZADD", "d:bigzset", 1, "a", 2, "b", 3, "c", 4, "d", 5, "e", 6, "f")
		// Past MaxElems even with the default limits.
		for i := 0; i < 150_000; i += 50_000 {
			args := []any{"d:huge"}
			for j := i; j < i+50_000; j++ {
				args = append(args, j)
			}
			pDo(t, c, "RPUSH", args...)
		}
	}
}

// A store in plain mode through Webdis reads what the scripts read on the
// same data: same types, digests, contents, big keys, deferred keys, and
// expiry times within a second.
func TestPlainReadsEqualScripts(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	local, remote := pConns(t, hub)
	fillBoth(t, local, remote)
	ls, rs := localStore(t, hub, "d:"), webdisStore(t, hub, "d:")
	fellBack := 0
	rs.OnFallback = func(err error) {
		fellBack++
		if webdis.KindOf(err) != webdis.KindForbidden {
			t.Errorf("fallback for %v", err)
		}
	}
	ctx := context.Background()

	_, keys, err := ls.Scan(ctx, "0", 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Path() != "eval" {
		t.Fatal("plain before any refusal")
	}
	cur, rkeys, err := rs.Scan(ctx, "0", 10)
	if err != nil || cur != "0" || len(rkeys) != len(keys) {
		t.Fatalf("remote scan: cursor %q, %d keys (local %d), %v", cur, len(rkeys), len(keys), err)
	}
	if rs.Path() != "plain" || fellBack != 1 {
		t.Fatalf("path %s after a refusal, %d fallbacks", rs.Path(), fellBack)
	}
	keys = append(keys, []byte("d:missing"))
	// Big keys first: with small limits, they are read before the batch
	// budget runs out and the keys after it are deferred.
	slices.SortStableFunc(keys, func(a, b []byte) int {
		big := func(k []byte) bool {
			return bytes.HasPrefix(k, []byte("d:big")) || bytes.HasPrefix(k, []byte("d:huge"))
		}
		switch {
		case big(a) && !big(b):
			return -1
		case big(b) && !big(a):
			return 1
		}
		return 0
	})

	for _, limits := range [][3]int{{100_000, 900 << 10, 4 << 20}, {100, 100, 50}} {
		ls.MaxElems, ls.MaxBytes, ls.MaxBatchBytes = limits[0], limits[1], limits[2]
		rs.MaxElems, rs.MaxBytes, rs.MaxBatchBytes = limits[0], limits[1], limits[2]
		lsum, err := ls.Summaries(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		rsum, err := rs.SummariesSplit(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		// Big keys' digests are computed a chunk at a time.
		if err := completeDigests(ctx, ls, keys, lsum); err != nil {
			t.Fatal(err)
		}
		if err := completeDigests(ctx, rs, keys, rsum); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			l, r := lsum[i], rsum[i]
			if l.Type == "stream" {
				if r.Type != "stream" || r.Digest != unknownDigest {
					t.Errorf("%q: plain summary %+v, want a stream of unknown digest", k, r)
				}
				continue
			}
			if !l.Same(r, 1000) {
				t.Errorf("limits %v: %q: summaries differ: script %+v, plain %+v", limits, k, l, r)
			}
		}

		var nostream [][]byte
		for _, k := range keys {
			if string(k) != "d:stream" {
				nostream = append(nostream, k)
			}
		}
		lst, err := ls.Read(ctx, nostream)
		if err != nil {
			t.Fatal(err)
		}
		rst, err := rs.Read(ctx, nostream)
		if err != nil {
			t.Fatal(err)
		}
		deferred, big := 0, 0
		for i, k := range nostream {
			l, r := lst[i], rst[i]
			d := l.ExpireAt - r.ExpireAt
			switch {
			case l.Type != r.Type || l.Digest != r.Digest || l.Big != r.Big || l.Deferred != r.Deferred:
				t.Errorf("limits %v: %q: script %s/%s big %v deferred %v, plain %s/%s big %v deferred %v", limits, k,
					l.Type, l.Digest, l.Big, l.Deferred, r.Type, r.Digest, r.Big, r.Deferred)
			case len(l.Elems) != len(r.Elems):
				t.Errorf("%q: %d elements by script, %d plain", k, len(l.Elems), len(r.Elems))
			case (l.ExpireAt == 0) != (r.ExpireAt == 0) || d > 1000 || d < -1000:
				t.Errorf("%q: expires at %d by script, %d plain", k, l.ExpireAt, r.ExpireAt)
			case l.Big && l.Type == "string" && l.BigSize != r.BigSize:
				t.Errorf("%q: size %d by script, %d plain", k, l.BigSize, r.BigSize)
			}
			if a, b := canonical(l.Type, l.Elems), canonical(r.Type, r.Elems); a != b {
				t.Errorf("%q: elements %.200q by script, %.200q plain", k, a, b)
			}
			if l.Deferred {
				deferred++
			}
			if l.Big {
				big++
			}
		}
		if limits[0] == 100 && (deferred == 0 || big == 0) {
			t.Errorf("small limits: %d deferred, %d big keys: the test misses a path", deferred, big)
		}
	}

	// A stream cannot be read whole in plain mode: the error names it.
	_, err = rs.Read(ctx, [][]byte{[]byte("d:str"), []byte("d:stream")})
	if err == nil || !strings.Contains(err.Error(), `"d:stream"`) {
		t.Fatalf("reading a stream in plain mode: %v", err)
	}
	ex, err := rs.Exists(ctx, [][]byte{[]byte("d:str"), []byte("d:missing"), []byte("d:k\x00")})
	if err != nil || !ex[0] || ex[1] || ex[2] {
		t.Fatalf("exists: %v, %v", ex, err)
	}
}

// canonical is a key's elements in a comparable form: each Redis seeds its
// hash tables at random, so the order of a set's or a hash's elements
// differs between two servers holding the same.
func canonical(ty string, elems [][]byte) string {
	step := 1
	if ty == "hash" {
		step = 2
	}
	var units []string
	for i := 0; i+step <= len(elems); i += step {
		units = append(units, fmt.Sprintf("%q", elems[i:i+step]))
	}
	if ty == "hash" || ty == "set" {
		slices.Sort(units)
	}
	return strings.Join(units, " ")
}

// Many requests refused at once switch the store once.
func TestPlainFallbackOnce(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	rs := webdisStore(t, hub, "o:")
	var n atomic.Int32
	rs.OnFallback = func(error) { n.Add(1) }
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := []byte(fmt.Sprintf("o:%d", i))
			if _, err := rs.Apply(ctx, []State{{Key: k, Type: "hash", Elems: [][]byte{[]byte("f"), []byte("v")}}}); err != nil {
				t.Error(err)
			}
			if _, err := rs.Summaries(ctx, [][]byte{k}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 || rs.Path() != "plain" {
		t.Fatalf("%d fallbacks, path %s", n.Load(), rs.Path())
	}
	_, remote := pConns(t, hub)
	if n, _ := redis.Int(remote.Do("HLEN", "o:7")); n != 1 {
		t.Fatal("o:7 not written")
	}
}

// Plain Apply writes each key whole and atomically, with the TTL; a key
// outside the namespace is refused before anything is written.
func TestPlainApply(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	rs := webdisStore(t, hub, "a:")
	rs.plain.Store(true)
	_, remote := pConns(t, hub)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UnixMilli()
	pDo(t, remote, "SET", "a:s2", "old", "EX", 100)
	pDo(t, remote, "HSET", "a:h", "gone", "x")
	pDo(t, remote, "SET", "a:del", "x")
	b := func(ss ...string) [][]byte { return bytes.Split([]byte(strings.Join(ss, "\x01")), []byte("\x01")) }
	states := []State{
		{Key: []byte("a:s1"), Type: "string", Elems: b("v\x00/")},
		{Key: []byte("a:s2"), Type: "string", Elems: b("new")}, // the old TTL goes
		{Key: []byte("a:s3"), Type: "string", ExpireAt: exp, Elems: b("")},
		{Key: []byte("a:past"), Type: "string", ExpireAt: time.Now().Add(-time.Second).UnixMilli(), Elems: b("x")},
		{Key: []byte("a:h"), Type: "hash", ExpireAt: exp, Elems: b("f", "v", "", "")},
		{Key: []byte("a:l"), Type: "list", Elems: b("x", "", "x")},
		{Key: []byte("a:set"), Type: "set", Elems: b("x", "\xff")},
		{Key: []byte("a:z"), Type: "zset", Elems: b("m", "1.5", "n", "-inf")},
		{Key: []byte("a:hpast"), Type: "hash", ExpireAt: 1, Elems: b("f", "v")},
		{Key: []byte("a:del"), Type: "none"},
		{Key: []byte("a:st"), Type: "stream", Elems: b("1-1", "1-1", "1", "f", "v")},
	}
	_, err := rs.Apply(ctx, states)
	if err == nil || !strings.Contains(err.Error(), `"a:st"`) || !strings.Contains(err.Error(), "stream") {
		t.Fatalf("a stream in plain mode: %v", err)
	}
	got, err := webdistest.Dump(remote, "a:")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a:s1": "string", "a:s2": "string", "a:s3": "string", "a:h": "hash", "a:l": "list", "a:set": "set", "a:z": "zset"}
	if len(got) != len(want) {
		t.Errorf("remote holds %v, want the keys %v", got, want)
	}
	for k, ty := range want {
		if got[k].Type != ty {
			t.Errorf("%q: %+v, want a %s", k, got[k], ty)
		}
	}
	if v, _ := redis.Bytes(remote.Do("GET", "a:s1")); string(v) != "v\x00/" {
		t.Errorf("a:s1 = %q", v)
	}
	if p, _ := redis.Int64(remote.Do("PTTL", "a:s2")); p != -1 {
		t.Errorf("a:s2 kept a TTL: %d", p)
	}
	for _, k := range []string{"a:s3", "a:h"} {
		if e := got[k].ExpireAt; e < exp-1500 || e > exp+1500 {
			t.Errorf("%s expires at %d, want %d", k, e, exp)
		}
	}
	if c := got["a:h"].Contents; strings.Contains(c, "gone") {
		t.Errorf("a:h not replaced whole: %s", c)
	}
	if _, err := rs.Apply(ctx, []State{{Key: []byte("a:ok"), Type: "string", Elems: b("x")}, {Key: []byte("b:out"), Type: "string", Elems: b("x")}}); err == nil {
		t.Fatal("a key outside the namespace was accepted")
	}
	if n, _ := redis.Int(remote.Do("EXISTS", "a:ok", "b:out")); n != 0 {
		t.Fatal("a write with a key outside the namespace wrote something")
	}
}

// A refusal in the middle of a script-mode Apply of several requests writes
// the rest in plain mode, and names only what it could not write.
func TestPlainApplySwitchesMidway(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
	rs := webdisStore(t, hub, "m:")
	rs.MaxRequest = 400 // a few keys per request
	states := []State{{Key: []byte("m:stream"), Type: "stream", Elems: [][]byte{[]byte("1-1"), []byte("1-1"), []byte("1"), []byte("f"), []byte("v")}}}
	for i := range 20 {
		states = append(states, State{Key: []byte(fmt.Sprintf("m:%d", i)), Type: "string", Elems: [][]byte{[]byte("v")}})
	}
	_, err := rs.Apply(context.Background(), states)
	var ue *unsupportedError
	if !errors.As(err, &ue) || len(ue.keys) != 1 || string(ue.keys[0]) != "m:stream" || rs.Path() != "plain" {
		t.Fatalf("Apply: %v (path %s)", err, rs.Path())
	}
	_, remote := pConns(t, hub)
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 20 {
		t.Fatalf("%d keys written, want 20", n)
	}
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
	if st.WritePath != "plain" {
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
	if l.remote.OnFallback == nil {
		t.Skip("link.New does not set l.remote.OnFallback = l.reportFallback yet: the fallback would not be logged")
	}
}

// A stream key cannot be replicated in plain mode: the error names it,
// and everything else replicates.
func TestPlainStreamReported(t *testing.T) {
	hub := plainHub(t, webdistest.Options{})
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
	t.Logf("last error: %s", l.LastError())
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
	if st := l.Status(); st.WritePath != "plain" || st.LastError != "" {
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
	if l.remote.Path() != "plain" || l.LastError() != "" {
		t.Fatalf("path %s, last error %q", l.remote.Path(), l.LastError())
	}
	pWait(t, 10*time.Second, "dirty keys copied", func() bool { return l.dirty.Idle() })
	stop()

	// Started again on equal sides, the link's resync repairs nothing.
	l, _ = runPlainLink(t, cfg, nil)
	st := l.Status()
	if !strings.HasPrefix(st.LastResyncOutcome, "ok") || !strings.HasSuffix(st.LastResyncOutcome, " 0 differed") {
		t.Fatalf("a resync of equal sides: %s", st.LastResyncOutcome)
	}
	if st.WritePath != "plain" || st.LastError != "" {
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
	if l.Status().WritePath != "plain" || l.LastError() != "" {
		t.Fatalf("path %s, last error %q", l.Status().WritePath, l.LastError())
	}
}
