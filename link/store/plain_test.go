package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The plain path against the script path, on the same data: digests,
// reads with every limit, and the switch from one to the other.

func plainHub(t *testing.T) *webdistest.Hub {
	// nginx+Webdis whatever WEBDISTEST_FRONT says: RESTORE is part of what
	// is tested, and the gateway refuses it to tenants.
	return webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"EVAL", "EVALSHA"}, Front: webdistest.FrontNginx})
}

// webdisStore is a Store on hub's remote, through Webdis.
func webdisStore(t *testing.T, hub *webdistest.Hub, prefix string) *Store {
	return New("remote", webdisClient(t, hub), []byte(prefix), Limits{MaxRequest: 900 << 10, MaxElems: 100_000, MaxBytes: 900 << 10, MaxBatchBytes: 4 << 20})
}

// localStore is a Store on hub's local Redis, running scripts.
func localStore(t *testing.T, hub *webdistest.Hub, prefix string) *Store {
	return New("local", localPool(t, hub), []byte(prefix), Limits{MaxElems: 100_000, MaxBytes: 900 << 10, MaxBatchBytes: 4 << 20})
}

// The digest computed in Go is the one luaLib computes, for every type and
// for the bytes that trouble encodings.
func TestPlainDigestEqualsLua(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	c, _ := hub.Conns(t)
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
		want := evalDigest(t, c, v.ty, v.elems)
		if got := digestOf(v.ty, v.elems); got != want {
			t.Errorf("vector %d (%s, %.80q): Go digest %s, Lua %s", i, v.ty, v.elems, got, want)
		}
		seen[want] = true
	}
	if len(seen) != len(inputs) {
		t.Errorf("%d distinct digests for %d distinct vectors", len(seen), len(inputs))
	}
	if digestOf("none", nil) != NoneDigest {
		t.Error("digest of none is not NoneDigest")
	}
}

// fillBoth writes the same keys on both Redis servers: every type, odd
// bytes, TTLs short and long (past 2^31 ms), big keys.
func fillBoth(t *testing.T, conns ...redis.Conn) {
	now := time.Now().UnixMilli()
	for _, c := range conns {
		do(t, c, "SET", "d:str", "hello")
		do(t, c, "SET", "d:empty", "")
		do(t, c, "SET", "d:ttl", "x", "PXAT", now+100_000)
		do(t, c, "SET", "d:longttl", "x", "PXAT", now+40*86400_000) // PTTL past 2^31
		do(t, c, "HSET", "d:hash", "f", "v", "", "", "a\x00b", "\xff")
		do(t, c, "PEXPIREAT", "d:hash", now+5_000_000)
		do(t, c, "RPUSH", "d:list", "a", "", "a", "\x00")
		do(t, c, "SADD", "d:set", "x", "", "\xfe")
		do(t, c, "ZADD", "d:zset", 1.5, "m1", "-inf", "m2", "inf", "m3", 0.1, "", 0, "zero", 1e300, "big")
		do(t, c, "XADD", "d:stream", "1-1", "f", "v")
		for i, a := range odd {
			do(t, c, "SET", "d:k"+a, "v"+a)
			do(t, c, "HSET", fmt.Sprintf("d:h%d", i), a, a)
			do(t, c, "SADD", "d:s", a)
			do(t, c, "RPUSH", "d:l", a)
		}
		// Big: over MaxElems / MaxBytes of the stores below, digested exactly.
		args := []any{"d:bighash"}
		for i := range 300 {
			args = append(args, fmt.Sprintf("f%d", i), i)
		}
		do(t, c, "HSET", args...)
		do(t, c, "SET", "d:bigstr", strings.Repeat("x\x00", 5000))
		do(t, c, "ZADD", "d:bigzset", 1, "a", 2, "b", 3, "c", 4, "d", 5, "e", 6, "f")
		// Past MaxElems even with the default limits.
		for i := 0; i < 150_000; i += 50_000 {
			args := []any{"d:huge"}
			for j := i; j < i+50_000; j++ {
				args = append(args, j)
			}
			do(t, c, "RPUSH", args...)
		}
	}
}

// A store in plain mode through Webdis reads what the scripts read on the
// same data: same types, digests, contents, big keys, deferred keys, and
// expiry times within a second.
func TestPlainReadsEqualScripts(t *testing.T) {
	hub := plainHub(t)
	local, remote := hub.Conns(t)
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
	if rs.Path() != PathEval {
		t.Fatal("plain before any refusal")
	}
	cur, rkeys, err := rs.Scan(ctx, "0", 10)
	if err != nil || cur != "0" || len(rkeys) != len(keys) {
		t.Fatalf("remote scan: cursor %q, %d keys (local %d), %v", cur, len(rkeys), len(keys), err)
	}
	if rs.Path() != PathPlain || fellBack != 1 {
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
		rsum, err := rs.Summaries(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		// Big keys' digests are computed a chunk at a time.
		if err := ls.CompleteDigests(ctx, keys, lsum); err != nil {
			t.Fatal(err)
		}
		if err := rs.CompleteDigests(ctx, keys, rsum); err != nil {
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

// Many requests refused at once switch the store once.
func TestPlainFallbackOnce(t *testing.T) {
	hub := plainHub(t)
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
			if err := rs.Apply(ctx, []State{{Key: k, Type: "hash", Elems: [][]byte{[]byte("f"), []byte("v")}}}); err != nil {
				t.Error(err)
			}
			if _, err := rs.Summaries(ctx, [][]byte{k}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 || rs.Path() != PathPlain {
		t.Fatalf("%d fallbacks, path %s", n.Load(), rs.Path())
	}
	_, remote := hub.Conns(t)
	if n, _ := redis.Int(remote.Do("HLEN", "o:7")); n != 1 {
		t.Fatal("o:7 not written")
	}
}

// A refusal in the middle of a script-mode Apply of several requests writes
// the rest in plain mode, and names only what it could not write.
func TestPlainApplySwitchesMidway(t *testing.T) {
	hub := plainHub(t)
	rs := webdisStore(t, hub, "m:")
	rs.MaxRequest = rs.applyOverhead(3) + 150 // a few keys per request
	states := []State{{Key: []byte("m:stream"), Type: "stream", Elems: [][]byte{[]byte("1-1"), []byte("1-1"), []byte("1"), []byte("f"), []byte("v")}}}
	for i := range 20 {
		states = append(states, State{Key: []byte(fmt.Sprintf("m:%d", i)), Type: "string", Elems: [][]byte{[]byte("v")}})
	}
	err := rs.Apply(context.Background(), states)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || len(ue.Keys) != 1 || string(ue.Keys[0]) != "m:stream" || rs.Path() != PathPlain {
		t.Fatalf("Apply: %v (path %s)", err, rs.Path())
	}
	_, remote := hub.Conns(t)
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 20 {
		t.Fatalf("%d keys written, want 20", n)
	}
}

// refuseRestore is a Redis whose RESTORE answers as a server of an older
// RDB version answers a newer payload.
type refuseRestore struct{ Doer }

func (r refuseRestore) Do(ctx context.Context, args ...[]byte) (any, error) {
	if strings.EqualFold(string(args[0]), "RESTORE") {
		return nil, redis.Error("ERR DUMP payload version or checksum are wrong")
	}
	return r.Doer.Do(ctx, args...)
}

// A side whose RESTORE refuses the other side's payloads (another RDB
// version) is checked once and keeps naming the stream, with the reason.
func TestPlainRestoreRDBVersionRefused(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := hub.Conns(t)
	var restores atomic.Int32
	counting := doerFunc(func(ctx context.Context, args ...[]byte) (any, error) {
		if strings.EqualFold(string(args[0]), "RESTORE") {
			restores.Add(1)
		}
		return refuseRestore{pool(t, hub.RemoteAddr)}.Do(ctx, args...)
	})
	src := localStore(t, hub, "v:")
	dst := New("remote", counting, []byte("v:"), testLimits())
	dst.ForcePlain()
	Pair(src, dst)
	do(t, local, "XADD", "v:st", "1-1", "f", "v")
	ctx := context.Background()
	for range 3 {
		read, err := src.Read(ctx, bs("v:st"))
		if err != nil {
			t.Fatal(err)
		}
		err = dst.Apply(ctx, read)
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !ue.Has([]byte("v:st")) || !strings.Contains(err.Error(), "payload version or checksum are wrong") {
			t.Fatalf("Apply: %v", err)
		}
	}
	if n := restores.Load(); n != 1 {
		t.Fatalf("%d RESTOREs tried, want one check", n)
	}
	if n, _ := redis.Int(remote.Do("EXISTS", "v:st")); n != 0 {
		t.Fatal("the stream was written")
	}
}

type doerFunc func(ctx context.Context, args ...[]byte) (any, error)

func (f doerFunc) Do(ctx context.Context, args ...[]byte) (any, error) { return f(ctx, args...) }

// A stream whose DUMP payload does not fit one request of the side without
// scripts is named, with the reason, and nothing of it is written; a
// stream that fits, beside it, is carried.
func TestPlainStreamTooBigReported(t *testing.T) {
	hub := plainHub(t)
	local, remote := hub.Conns(t)
	src := localStore(t, hub, "tb:")
	dst := webdisStore(t, hub, "tb:")
	dst.MaxRequest = 64 << 10
	Pair(src, dst)
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 { // random bytes: RDB's compression does not shrink them
		value := make([]byte, 100)
		for i := range value {
			value[i] = byte(r.IntN(256))
		}
		do(t, local, "XADD", "tb:big", "*", "v", value)
	}
	do(t, local, "XADD", "tb:small", "1-1", "f", "v")
	ctx := context.Background()
	read, err := src.Read(ctx, bs("tb:big", "tb:small"))
	if err != nil {
		t.Fatal(err)
	}
	// As the link does: a state that fits no request goes to CopyBig.
	if dst.Fits(&read[0]) || !dst.Fits(&read[1]) {
		t.Fatal("the test's streams are not one too big and one small")
	}
	if err := dst.Apply(ctx, read[1:]); err != nil {
		t.Fatal(err)
	}
	err = CopyBig(ctx, src, dst, read[0].Key, "stream", 0)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || len(ue.Keys) != 1 || string(ue.Keys[0]) != "tb:big" || !strings.Contains(err.Error(), "max_request_bytes=65536") {
		t.Fatalf("CopyBig: %v", err)
	}
	if n, _ := redis.Int(remote.Do("EXISTS", "tb:big")); n != 0 {
		t.Fatal("the big stream was written")
	}
	if n, _ := redis.Int(remote.Do("XLEN", "tb:small")); n != 1 {
		t.Fatal("the small stream was not carried")
	}
	t.Logf("reported: %v", err)
}

// A side that refuses everything, not scripts alone (a gateway that knows
// no tenant for the certificate yet answers 403 to all), does not switch
// the store to plain commands for good: the refusal is returned.
func TestRefusalOfEverythingKeepsScripts(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"EVAL", "EVALSHA", "EXISTS"}, Front: webdistest.FrontNginx})
	rs := webdisStore(t, hub, "r:")
	fell := 0
	rs.OnFallback = func(error) { fell++ }
	_, err := rs.Read(context.Background(), bs("r:a"))
	if webdis.KindOf(err) != webdis.KindForbidden || rs.Path() != PathEval || fell != 0 {
		t.Fatalf("read: %v, path %s, %d fallbacks: want the refusal, scripts kept", err, rs.Path(), fell)
	}
}
