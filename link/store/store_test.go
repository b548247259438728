package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// One suite runs against every implementation of ops, on a real Redis
// directly and through real nginx+Webdis, as Litestream runs one suite on
// every ReplicaClient: whatever the path, a store reads and writes the same
// bytes, TTLs and digests.

// odd holds the bytes that break naive encodings.
var odd = []string{"", "a/b", "a.b", "a+b", "100%", "a b", "l\nn", "nul\x00byte", "\xff\xfe\x80", ".raw", "/", "+", "a,b", "1:x"}

// backend is one way to reach a Redis: a store on it and a direct
// connection to the same Redis, to check what the store did.
type backend struct {
	name        string
	path        Path // the path the store runs once used
	conditional bool // checks State.Expect
	streams     bool // reads and writes streams
	open        func(t *testing.T, prefix string) (*Store, redis.Conn)
	// peer is a script store directly on the hub's other Redis, to copy
	// big keys to and from.
	peer func(t *testing.T, prefix string) (*Store, redis.Conn)
}

func testLimits() Limits {
	return Limits{MaxRequest: 900 << 10, MaxElems: DefaultMaxElems, MaxBytes: 900 << 10, MaxBatchBytes: DefaultMaxBatchBytes}
}

func webdisClient(t *testing.T, hub *webdistest.Hub) *webdis.Client {
	t.Helper()
	c, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA, MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func localPool(t *testing.T, hub *webdistest.Hub) *Pool { return pool(t, hub.LocalAddr) }

func pool(t *testing.T, addr string) *Pool {
	p := NewPool(RedisAddr{Addr: addr}, 16)
	t.Cleanup(func() { p.Close() })
	return p
}

// backends starts three hubs, one whose Webdis refuses EVAL, one that
// refuses RESTORE too, and returns the five ways to reach a Redis. The plain
// backends carry streams with DUMP and RESTORE (plain_dump.go) where
// RESTORE is allowed.
func backends(t *testing.T) []backend {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	// A Webdis refusing EVAL but allowing RESTORE (the gateway refuses
	// RESTORE to tenants: that case is noRestore).
	noEval := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"EVAL", "EVALSHA"}, Front: webdistest.FrontNginx})
	noRestore := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"EVAL", "EVALSHA", "RESTORE"}})
	direct := func(t *testing.T, hub *webdistest.Hub) redis.Conn {
		c, err := hub.Remote()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	local := func(t *testing.T, hub *webdistest.Hub) redis.Conn {
		c, err := hub.Local()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	unlimited := testLimits()
	unlimited.MaxRequest = 0
	onRemote := func(hub *webdistest.Hub) func(t *testing.T, p string) (*Store, redis.Conn) {
		return func(t *testing.T, p string) (*Store, redis.Conn) {
			return New("remote redis", pool(t, hub.RemoteAddr), []byte(p), unlimited), direct(t, hub)
		}
	}
	onLocal := func(hub *webdistest.Hub) func(t *testing.T, p string) (*Store, redis.Conn) {
		return func(t *testing.T, p string) (*Store, redis.Conn) {
			return New("local", localPool(t, hub), []byte(p), unlimited), local(t, hub)
		}
	}
	return []backend{
		{"eval/redis", PathEval, true, true, onLocal(hub), onRemote(hub)},
		{"eval/webdis", PathEval, true, true, func(t *testing.T, p string) (*Store, redis.Conn) {
			return New("remote", webdisClient(t, hub), []byte(p), testLimits()), direct(t, hub)
		}, onLocal(hub)},
		{"plain/redis", PathPlain, false, true, func(t *testing.T, p string) (*Store, redis.Conn) {
			s := New("local", localPool(t, noEval), []byte(p), unlimited)
			s.ForcePlain()
			return s, local(t, noEval)
		}, onRemote(noEval)},
		{"plain/webdis", PathPlain, false, true, func(t *testing.T, p string) (*Store, redis.Conn) {
			// No ForcePlain: the hub's refusal switches it.
			return New("remote", webdisClient(t, noEval), []byte(p), testLimits()), direct(t, noEval)
		}, onLocal(noEval)},
		{"plain/webdis-norestore", PathPlain, false, false, func(t *testing.T, p string) (*Store, redis.Conn) {
			return New("remote", webdisClient(t, noRestore), []byte(p), testLimits()), direct(t, noRestore)
		}, onLocal(noRestore)},
	}
}

func do(t *testing.T, c redis.Conn, cmd string, args ...any) any {
	t.Helper()
	v, err := c.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %.100q: %v", cmd, fmt.Sprint(args...), err)
	}
	return v
}

func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, x := range ss {
		out[i] = []byte(x)
	}
	return out
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

// suiteStates are states of every type, with the bytes that break
// encodings in keys, fields and values, and TTLs short and long.
func suiteStates(p string) []State {
	exp := time.Now().Add(time.Hour).UnixMilli()
	long := time.Now().Add(40 * 24 * time.Hour).UnixMilli() // PTTL past 2^31 ms
	sts := []State{
		{Key: []byte(p + "str"), Type: "string", Elems: bs("v\x00/")},
		{Key: []byte(p + "empty"), Type: "string", Elems: bs("")},
		{Key: []byte(p + "ttl"), Type: "string", ExpireAt: exp, Elems: bs("x")},
		{Key: []byte(p + "longttl"), Type: "string", ExpireAt: long, Elems: bs("x")},
		{Key: []byte(p + "hash"), Type: "hash", ExpireAt: exp, Elems: bs("f", "v", "", "", "a\x00b", "\xff")},
		{Key: []byte(p + "list"), Type: "list", Elems: bs("x", "", "x", "\x00")},
		{Key: []byte(p + "set"), Type: "set", Elems: bs("x", "\xff", "")},
		{Key: []byte(p + "zset"), Type: "zset", Elems: bs("n", "-inf", "", "0", "m", "1.5")}, // in score order, as read
	}
	for i, a := range odd {
		sts = append(sts,
			State{Key: []byte(p + "k" + a), Type: "string", Elems: bs("v" + a)},
			State{Key: []byte(fmt.Sprintf("%sh%d", p, i)), Type: "hash", Elems: bs(a, a)})
	}
	return sts
}

func TestStoreConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("ApplyWritesEveryTypeByteExact", func(t *testing.T) { testApply(t, b) })
			t.Run("ReadReturnsWhatWasWritten", func(t *testing.T) { testRead(t, b) })
			t.Run("ScanAndExistsSeeOnlyTheNamespace", func(t *testing.T) { testScan(t, b) })
			t.Run("ApplyRefusesKeysOutsideTheNamespace", func(t *testing.T) { testOutside(t, b) })
			t.Run("StringsOnlyBatchReplacesWholeKeys", func(t *testing.T) { testStringsOnly(t, b) })
			t.Run("StreamsCopiedOrNamed", func(t *testing.T) { testStream(t, b) })
			t.Run("ConditionalApply", func(t *testing.T) { testConditional(t, b) })
			t.Run("BigKeysCopiedAndDigestedInChunks", func(t *testing.T) { testBig(t, b) })
		})
	}
}

func testApply(t *testing.T, b backend) {
	s, c := b.open(t, "a:")
	ctx := context.Background()
	do(t, c, "SET", "a:str", "old", "EX", 100) // replaced whole, its TTL gone
	do(t, c, "HSET", "a:hash", "gone", "x")
	do(t, c, "SET", "a:del", "x")
	do(t, c, "SET", "a:past", "x")
	states := append(suiteStates("a:"),
		State{Key: []byte("a:del"), Type: "none"},
		State{Key: []byte("a:past"), Type: "string", ExpireAt: time.Now().Add(-time.Second).UnixMilli(), Elems: bs("x")},
		State{Key: []byte("a:hpast"), Type: "hash", ExpireAt: 1, Elems: bs("f", "v")})
	if err := s.Apply(ctx, states); err != nil {
		t.Fatal(err)
	}
	if s.Path() != b.path {
		t.Fatalf("path %s, want %s", s.Path(), b.path)
	}
	got, err := webdistest.Dump(c, "a:")
	if err != nil {
		t.Fatal(err)
	}
	want := suiteStates("a:")
	if len(got) != len(want) {
		t.Errorf("%d keys written, want %d: %v", len(got), len(want), got)
	}
	for _, st := range want {
		k := got[string(st.Key)]
		if k.Type != st.Type {
			t.Errorf("%q: %s, want a %s", st.Key, k.Type, st.Type)
			continue
		}
		if d := k.ExpireAt - st.ExpireAt; (k.ExpireAt == 0) != (st.ExpireAt == 0) || d > 1500 || d < -1500 {
			t.Errorf("%q expires at %d, want %d", st.Key, k.ExpireAt, st.ExpireAt)
		}
	}
	if v, _ := redis.Bytes(c.Do("GET", "a:str")); string(v) != "v\x00/" {
		t.Errorf("a:str = %q", v)
	}
	if h, _ := redis.StringMap(c.Do("HGETALL", "a:hash")); len(h) != 3 || h["a\x00b"] != "\xff" {
		t.Errorf("a:hash not replaced whole: %q", h)
	}
	for i, a := range odd {
		if v, _ := redis.String(c.Do("GET", "a:k"+a)); v != "v"+a {
			t.Errorf("key %q = %q", "a:k"+a, v)
		}
		if v, _ := redis.String(c.Do("HGET", fmt.Sprintf("a:h%d", i), a)); v != a {
			t.Errorf("field %q = %q", a, v)
		}
	}
}

func testRead(t *testing.T, b backend) {
	s, c := b.open(t, "r:")
	ctx := context.Background()
	want := suiteStates("r:")
	if err := s.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, 0, len(want)+1)
	for _, st := range want {
		keys = append(keys, st.Key)
	}
	keys = append(keys, []byte("r:missing"))
	got, err := s.Read(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := s.Summaries(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.Type || !dedupSame(g.ExpireAt, w.ExpireAt) || canonical(g.Type, g.Elems) != canonical(w.Type, w.Elems) {
			t.Errorf("%q: read %s %d %.100q, wrote %s %d %.100q", w.Key, g.Type, g.ExpireAt, g.Elems, w.Type, w.ExpireAt, w.Elems)
		}
		// The digest read equals the one summarized, and the one Lua
		// computes on the same contents (evalDigest: scripts on the Redis
		// directly, whatever the path under test).
		if sums[i].Digest != g.Digest || g.Digest != evalDigest(t, c, w.Type, g.Elems) {
			t.Errorf("%q: digest read %s, summarized %s, by Lua %s", w.Key, g.Digest, sums[i].Digest, evalDigest(t, c, w.Type, g.Elems))
		}
	}
	last := got[len(got)-1]
	if last.Type != "none" || last.Exists() || sums[len(sums)-1].Digest != NoneDigest {
		t.Errorf("a missing key reads %+v, summary %+v", last, sums[len(sums)-1])
	}
}

// luaDigestScript runs luaLib's digest(ty, elems).
var luaDigestScript = newScript(luaLib + `
local v = {}
for i = 2, #ARGV do v[#v + 1] = ARGV[i] end
return digest(ARGV[1], v)
`)

func evalDigest(t *testing.T, c redis.Conn, ty string, elems [][]byte) string {
	t.Helper()
	args := []any{luaDigestScript.Src, 0, ty}
	for _, e := range elems {
		args = append(args, e)
	}
	d, err := redis.String(c.Do("EVAL", args...))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func dedupSame(a, b int64) bool {
	d := a - b
	return (a == 0) == (b == 0) && d <= 1000 && d >= -1000
}

func testScan(t *testing.T, b backend) {
	s, c := b.open(t, "s*[x]:")
	ctx := context.Background()
	do(t, c, "SET", "s*[x]:a", "1")
	do(t, c, "SET", "s*[x]:b\x00", "1")
	do(t, c, "SET", "sx:other", "1") // matches the prefix as an unescaped glob
	do(t, c, "SET", "s*[x]:"+string(stagingMark)+"tmp", "1")
	var keys []string
	cursor := "0"
	for {
		next, ks, err := s.Scan(ctx, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			keys = append(keys, string(k))
		}
		if cursor = next; cursor == "0" {
			break
		}
	}
	slices.Sort(keys)
	if want := []string{"s*[x]:a", "s*[x]:b\x00"}; !slices.Equal(keys, want) {
		t.Errorf("scan found %q, want %q", keys, want)
	}
	ex, err := s.Exists(ctx, bs("s*[x]:a", "s*[x]:missing", "s*[x]:b\x00"))
	if err != nil || !slices.Equal(ex, []bool{true, false, true}) {
		t.Errorf("exists: %v, %v", ex, err)
	}
}

func testOutside(t *testing.T, b backend) {
	s, c := b.open(t, "o:")
	err := s.Apply(context.Background(), []State{
		{Key: []byte("o:ok"), Type: "string", Elems: bs("x")},
		{Key: []byte("p:out"), Type: "string", Elems: bs("x")},
	})
	if err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a key outside the namespace: %v", err)
	}
	if n, _ := redis.Int(c.Do("EXISTS", "o:ok", "p:out")); n != 0 {
		t.Fatal("a write with a key outside the namespace wrote something")
	}
}

// testStringsOnly: a batch of strings without expiry (one MSET with
// scripts) replaces keys of any type and drops their TTL, byte-exact, as
// the script does.
func testStringsOnly(t *testing.T, b backend) {
	s, c := b.open(t, "m:")
	do(t, c, "HSET", "m:was-hash", "f", "v")
	do(t, c, "PEXPIRE", "m:was-hash", 100000)
	do(t, c, "SET", "m:was-ttl", "old", "EX", 100)
	do(t, c, "RPUSH", "m:was-list", "a", "b")
	values := map[string]string{"m:was-hash": "a/b%2F\x00c", "m:was-ttl": "\xff\x00", "m:was-list": "", "m:new": "new value"}
	var states []State
	for _, k := range []string{"m:was-hash", "m:was-ttl", "m:was-list", "m:new"} {
		states = append(states, State{Key: []byte(k), Type: "string", Elems: bs(values[k])})
	}
	msets := commandCalls(t, c, "mset")
	if err := s.Apply(context.Background(), states); err != nil {
		t.Fatal(err)
	}
	if b.path == PathEval {
		if n := commandCalls(t, c, "mset") - msets; n != 1 {
			t.Errorf("%d MSET for a batch of strings without expiry, want 1", n)
		}
	}
	got, err := webdistest.Dump(c, "m:")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(values) {
		t.Errorf("%d keys, want %d: %v", len(got), len(values), got)
	}
	for k, v := range values {
		g := got[k]
		if g.Type != "string" || g.ExpireAt != 0 {
			t.Errorf("%q: a %s expiring at %d, want a string without expiry", k, g.Type, g.ExpireAt)
		}
		if raw, _ := redis.Bytes(c.Do("GET", k)); string(raw) != v {
			t.Errorf("%q = %q, want %q", k, raw, v)
		}
	}
}

// commandCalls is how many times c's server ran cmd (INFO commandstats).
func commandCalls(t *testing.T, c redis.Conn, cmd string) int {
	info, err := redis.String(c.Do("INFO", "commandstats"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func testStream(t *testing.T, b backend) {
	if b.path == PathPlain {
		testPlainStream(t, b)
		return
	}
	s, c := b.open(t, "x:")
	ctx := context.Background()
	st := State{Key: []byte("x:st"), Type: "stream", Elems: bs("7-0", "1-1", "4", "f", "v\x00", "g", "", "5-0", "2", "f", "w")}
	err := s.Apply(ctx, []State{st, {Key: []byte("x:s"), Type: "string", Elems: bs("v")}})
	if v, _ := redis.String(c.Do("GET", "x:s")); v != "v" {
		t.Errorf("the string beside the stream was not written (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, bs("x:st"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Type != "stream" || canonical("stream", got[0].Elems) != canonical("stream", st.Elems) {
		t.Errorf("stream read back as %q", got[0].Elems)
	}
}

// testPlainStream: a side on plain commands, paired with a side running
// scripts (its peer), carries a stream both ways with DUMP and RESTORE, and
// digests it through the peer, where RESTORE is allowed; where it is not,
// the stream is named in an *UnsupportedError that says why.
func testPlainStream(t *testing.T, b backend) {
	s, c := b.open(t, "x:")
	peer, pc := b.peer(t, "x:")
	Pair(s, peer)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UnixMilli()
	do(t, pc, "DEL", "x:st", "x:s")
	do(t, c, "DEL", "x:st", "x:s")
	do(t, pc, "XADD", "x:st", "1-1", "f", "v\x00", "g", "")
	do(t, pc, "XADD", "x:st", "5-0", "f", "w")
	do(t, pc, "XSETID", "x:st", "7-0")
	do(t, pc, "XGROUP", "CREATE", "x:st", "readers", "1-1")
	do(t, pc, "PEXPIREAT", "x:st", exp)
	do(t, pc, "SET", "x:s", "v")
	read, err := peer.Read(ctx, bs("x:st", "x:s"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Apply(ctx, read)
	if v, _ := redis.String(c.Do("GET", "x:s")); v != "v" {
		t.Errorf("the string beside the stream was not written (%v)", err)
	}
	if !b.streams {
		var ue *UnsupportedError
		if !errors.As(err, &ue) || len(ue.Keys) != 1 || string(ue.Keys[0]) != "x:st" || !strings.Contains(err.Error(), "RESTORE") {
			t.Fatalf("a stream on %s: %v, want an UnsupportedError naming it and the RESTORE refusal", b.name, err)
		}
		if n, _ := redis.Int(c.Do("EXISTS", "x:st")); n != 0 {
			t.Fatal("a stream written although RESTORE is refused")
		}
		t.Logf("reported: %v", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	same := func(what string) {
		t.Helper()
		a, err1 := webdistest.Dump(c, "x:")
		p, err2 := webdistest.Dump(pc, "x:")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if d := webdistest.Diff(a, p, 1000); len(d) > 0 || len(a) != 2 {
			t.Fatalf("%s: %d keys, differences %q", what, len(a), d)
		}
		if g, _ := redis.Values(c.Do("XINFO", "GROUPS", "x:st")); len(g) != 1 {
			t.Fatalf("%s: %d consumer groups, want the source's one", what, len(g))
		}
	}
	same("written with RESTORE")

	// Read on the plain side: big, undigested; digested through the peer.
	got, err := s.Read(ctx, bs("x:st"))
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Big || got[0].Type != "stream" || !dedupSame(got[0].ExpireAt, exp) {
		t.Fatalf("the plain side reads its stream as %+v, want a big stream expiring at %d", got[0], exp)
	}
	sums, err := s.Summaries(ctx, bs("x:st"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteDigests(ctx, bs("x:st"), sums); err != nil {
		t.Fatal(err)
	}
	if sums[0].Digest != read[0].Digest || read[0].Digest == "" {
		t.Fatalf("digest on the plain side %q, on the peer %q", sums[0].Digest, read[0].Digest)
	}

	// And back: from the plain side to the peer.
	do(t, pc, "DEL", "x:st")
	if err := CopyBig(ctx, s, peer, []byte("x:st"), "stream", got[0].ExpireAt); err != nil {
		t.Fatal(err)
	}
	same("copied back")
}

func testConditional(t *testing.T, b backend) {
	s, c := b.open(t, "c:")
	ctx := context.Background()
	do(t, c, "SET", "c:a", "read")
	do(t, c, "SET", "c:b", "read")
	read, err := s.Read(ctx, bs("c:a", "c:b"))
	if err != nil {
		t.Fatal(err)
	}
	do(t, c, "SET", "c:b", "written meanwhile") // after the read, before the write
	states := []State{
		{Key: []byte("c:a"), Type: "string", Elems: bs("new"), Expect: DigestPrefix(read[0].Digest)},
		{Key: []byte("c:b"), Type: "string", Elems: bs("new"), Expect: DigestPrefix(read[1].Digest)},
		{Key: []byte("c:c"), Type: "string", Elems: bs("new")}, // no condition
	}
	given := slices.Clone(states)
	w, err := s.Write(ctx, nil, states, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(states, given) {
		t.Fatalf("Write changed the states it was given: %+v, was %+v", states, given)
	}
	wantB, wantSkip := "written meanwhile", true
	if !b.conditional {
		wantB, wantSkip = "new", false // plain commands write unconditionally (documented)
	}
	skipped := func(i int) bool { return w.Outcomes[i] == Skipped }
	if skipped(0) || skipped(1) != wantSkip || skipped(2) {
		t.Fatalf("skipped: %v %v %v, want false %v false", skipped(0), skipped(1), skipped(2), wantSkip)
	}
	for k, want := range map[string]string{"c:a": "new", "c:b": wantB, "c:c": "new"} {
		if v, _ := redis.String(c.Do("GET", k)); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
}

// testBig copies keys over the read limits in chunks, from the store under
// test to a peer on another Redis and back, and checks their digests,
// computed a chunk at a time, against the digest Lua computes whole.
func testBig(t *testing.T, b backend) {
	s, c := b.open(t, "b:")
	peer, pc := b.peer(t, "b:")
	for _, st := range []*Store{s, peer} {
		st.MaxElems, st.MaxBytes = 100, 1000
		st.MaxRequest = 32 << 10 // many stage requests
	}
	ctx := context.Background()
	args := []any{"b:hash"}
	for i := range 300 {
		args = append(args, fmt.Sprintf("f%d\x00", i), i)
	}
	do(t, c, "HSET", args...)
	do(t, c, "SET", "b:str", bytes.Repeat([]byte("x\x00/"), 5000))
	do(t, c, "PEXPIRE", "b:str", 3_600_000)
	list := []any{"b:list"}
	for i := range 500 {
		list = append(list, i)
	}
	do(t, c, "RPUSH", list...)
	set := []any{"b:set"}
	for i := range 3000 { // past SSCAN's listpack and intset encodings: walked in many steps
		set = append(set, fmt.Sprintf("m%d\x00", i))
	}
	do(t, c, "SADD", set...)
	keys := bs("b:hash", "b:str", "b:list", "b:set")
	copyAll := func(from, to *Store) {
		t.Helper()
		states, err := from.Read(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range states {
			if !st.Big || st.Digest != "" || to.Fits(&st) {
				t.Fatalf("%q: big %v, digest %q: want a big key, undigested, that fits no request", st.Key, st.Big, st.Digest)
			}
			if err := CopyBig(ctx, from, to, st.Key, st.Type, st.ExpireAt); err != nil {
				t.Fatal(err)
			}
		}
	}
	equal := func(what string) {
		t.Helper()
		a, err := webdistest.Dump(c, "b:")
		if err != nil {
			t.Fatal(err)
		}
		p, err := webdistest.Dump(pc, "b:")
		if err != nil {
			t.Fatal(err)
		}
		if d := webdistest.Diff(a, p, 1500); len(d) > 0 || len(a) != len(keys) {
			t.Fatalf("%s: %d keys, differences %q", what, len(a), d)
		}
	}
	copyAll(s, peer) // the store under test reads in chunks
	equal("copied to the peer")
	do(t, c, "DEL", "b:hash", "b:str", "b:list", "b:set")
	copyAll(peer, s) // the store under test stages and renames
	equal("copied back")
	sums, err := s.Summaries(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteDigests(ctx, keys, sums); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		elems := readAll(t, c, sums[i].Type, string(k))
		if want := evalDigest(t, c, sums[i].Type, elems); sums[i].Digest != want {
			t.Errorf("%q: chunked digest %s, Lua %s", k, sums[i].Digest, want)
		}
	}
	if b.path == PathPlain && b.streams {
		// Paired, a big hash or set read by plain commands (which read it
		// whole) travels with DUMP and RESTORE, its payload fitting.
		Pair(s, peer)
		peer.MaxRequest = 1 << 20 // room for both payloads
		if ok, err := carriesByDump(ctx, s, peer); !ok || err != nil {
			t.Fatalf("the peer does not take the payloads: %v %v", ok, err)
		}
		do(t, pc, "DEL", "b:hash", "b:set")
		before := restores(t, pc)
		copyAll(s, peer)
		equal("copied back with DUMP and RESTORE")
		if n := restores(t, pc) - before; n != 2 {
			t.Errorf("%d RESTOREs on the peer, want 2 (the hash and the set)", n)
		}
	}
}

// restores is the number of RESTOREs c's Redis has run.
func restores(t *testing.T, c redis.Conn) int {
	t.Helper()
	info, err := redis.String(c.Do("INFO", "commandstats"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_restore:calls="); ok {
			n := 0
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

func readAll(t *testing.T, c redis.Conn, ty, k string) [][]byte {
	t.Helper()
	var v any
	switch ty {
	case "string":
		b, err := redis.Bytes(c.Do("GET", k))
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{b}
	case "hash":
		v = do(t, c, "HGETALL", k)
	case "list":
		v = do(t, c, "LRANGE", k, 0, -1)
	case "set":
		v = do(t, c, "SMEMBERS", k)
	}
	out, err := redis.ByteSlices(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dupScan is a side whose HSCAN/SSCAN returns an element twice on the first
// walk, as SCAN may while a key's table is resized.
type dupScan struct {
	ops
	elems [][]byte
	walks int
}

func (d *dupScan) hashChunk(_ context.Context, _ []byte, ty, cursor string, _ int) (HashChunk, error) {
	half := len(d.elems) / 2
	var c HashChunk
	if cursor == "0" {
		d.walks++
		c.Sum.addElems(ty, d.elems[:half])
		c.Next = "1"
		return c, nil
	}
	rest := d.elems[half:]
	if d.walks == 1 {
		rest = append([][]byte{d.elems[0]}, rest...) // a duplicate
	}
	c.Sum.addElems(ty, rest)
	c.Card = int64(len(d.elems))
	return c, nil
}

// A walk that counts more elements than the key holds is walked again, and
// the digest is the one of the key's contents.
func TestBigDigestWalksAgainOnDuplicates(t *testing.T) {
	members := bs("a", "b", "c", "d", "e", "f")
	d := &dupScan{elems: members}
	s := &Store{Name: "fake", eval: d, plain: d}
	got, err := s.BigDigest(context.Background(), []byte("k"), "set")
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf("set", members); got != want || d.walks != 2 {
		t.Fatalf("digest %s after %d walks, want %s after 2", got, d.walks, want)
	}
}

// RestoreMissing copies only the keys the destination still lacks: a key
// written there meanwhile is left as it is (a restore racing a new write
// must not overwrite it).
func TestRestoreMissingLeavesPresentKeys(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	lim := testLimits()
	lim.MaxRequest = 0
	src := New("hub", pool(t, hub.RemoteAddr), []byte("m:"), lim)
	dst := New("local", localPool(t, hub), []byte("m:"), lim)
	local, remote := hub.Conns(t)
	do(t, remote, "SET", "m:a", "from the hub")
	do(t, remote, "HSET", "m:b", "f", "from the hub")
	do(t, local, "SET", "m:b", "written locally meanwhile")
	if err := RestoreMissing(context.Background(), src, dst, bs("m:a", "m:b", "m:gone")); err != nil {
		t.Fatal(err)
	}
	if v, _ := redis.String(local.Do("GET", "m:a")); v != "from the hub" {
		t.Errorf("m:a = %q, want it restored", v)
	}
	if v, _ := redis.String(local.Do("GET", "m:b")); v != "written locally meanwhile" {
		t.Errorf("m:b = %q: a local write was overwritten by the restore", v)
	}
}

// A write mark reaches a subscriber of the namespace's keyspace events
// after every event of the writes it was sent with: through Webdis and
// directly; plain commands and a side refusing PUBLISH say they sent none,
// and still write.
func TestApplyMarkedPublishesTheMarkAfterItsWrites(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	noEval := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"EVAL", "EVALSHA"}, Front: webdistest.FrontNginx})
	direct := func(h *webdistest.Hub) redis.Conn {
		c, err := h.Remote()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	do(t, direct(hub), "ACL", "SETUSER", "nopub", "on", ">pw", "~*", "&*", "+@all", "-publish")
	cases := []struct {
		name       string
		hub        *webdistest.Hub
		store      func(prefix []byte) *Store
		wantMarked bool
	}{
		{"eval/webdis", hub, func(p []byte) *Store { return New("remote", webdisClient(t, hub), p, testLimits()) }, true},
		{"eval/redis", hub, func(p []byte) *Store { return New("remote", pool(t, hub.RemoteAddr), p, testLimits()) }, true},
		{"eval/redis-no-publish", hub, func(p []byte) *Store {
			pl := NewPool(RedisAddr{Addr: hub.RemoteAddr, User: "nopub", Password: "pw"}, 4)
			t.Cleanup(func() { pl.Close() })
			return New("remote", pl, p, testLimits())
		}, false},
		{"plain/webdis", noEval, func(p []byte) *Store { return New("remote", webdisClient(t, noEval), p, testLimits()) }, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte(fmt.Sprintf("mk%d:", i))
			c := direct(tc.hub)
			do(t, c, "CONFIG", "SET", "notify-keyspace-events", "KA")
			do(t, c, "SET", string(prefix)+"gone", "x")
			sub := direct(tc.hub)
			psc := redis.PubSubConn{Conn: sub}
			if err := psc.PSubscribe("__keyspace@0__:" + string(prefix) + "*"); err != nil {
				t.Fatal(err)
			}
			if _, ok := psc.Receive().(redis.Subscription); !ok {
				t.Fatal("no subscription")
			}
			states := []State{
				{Key: []byte(string(prefix) + "h"), Type: "hash", ExpireAt: time.Now().Add(time.Hour).UnixMilli(), Elems: bs("f", "v")},
				{Key: []byte(string(prefix) + "s"), Type: "string", Elems: bs("v")},
				{Key: []byte(string(prefix) + "gone"), Type: "none"},
			}
			mark := WriteMark(0, prefix, 42)
			w, err := tc.store(prefix).Write(context.Background(), nil, states, WriteOptions{Mark: func([]int) []byte { return mark }})
			if err != nil {
				t.Fatal(err)
			}
			marked := w.Marked
			if marked != tc.wantMarked {
				t.Fatalf("marked = %v, want %v", marked, tc.wantMarked)
			}
			if n, _ := redis.Int(c.Do("EXISTS", string(prefix)+"h", string(prefix)+"s", string(prefix)+"gone")); n != 2 {
				t.Fatalf("%d of the 2 keys written exist", n)
			}
			// The events of h, s and gone, then the mark; then a write of
			// another client, whose event must come after the mark.
			do(t, c, "SET", string(prefix)+"later", "x")
			seen := map[string]bool{}
			markAt, laterAt := -1, -1
			for n := 0; laterAt < 0; n++ {
				m, ok := psc.ReceiveWithTimeout(5 * time.Second).(redis.Message)
				if !ok {
					t.Fatalf("events so far %v: then no message", seen)
				}
				key := strings.TrimPrefix(m.Channel, "__keyspace@0__:")
				switch {
				case key == string(mark[len("__keyspace@0__:"):]):
					markAt = n
				case key == string(prefix)+"later":
					laterAt = n
				case IsStaging(prefix, []byte(key)):
					// plain mode builds the hash in a staging key
				default:
					if markAt >= 0 {
						t.Errorf("event %s of %q after the mark", m.Data, key)
					}
					seen[key] = true
				}
			}
			if tc.wantMarked && (markAt < 0 || markAt > laterAt) {
				t.Errorf("mark at %d, the later write at %d", markAt, laterAt)
			}
			if !tc.wantMarked && markAt >= 0 {
				t.Errorf("a mark published although marked is false")
			}
			if len(seen) != 3 {
				t.Errorf("events of %v, want the 3 keys written", seen)
			}
		})
	}
}

// A hub refusing MSET (Webdis's disabled list, an ACL) still takes batches
// of plain strings, through the apply script, and the store stays on
// scripts: MSET is only a shortcut.
func TestMSETRefusedWritesStringsWithTheScript(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf, Disabled: []string{"MSET"}})
	c, err := hub.Remote()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New("remote", webdisClient(t, hub), []byte("ms:"), testLimits())
	for round := range 2 {
		v := fmt.Sprintf("v%d", round)
		if err := s.Apply(context.Background(), []State{
			{Key: []byte("ms:a"), Type: "string", Elems: bs(v)},
			{Key: []byte("ms:b"), Type: "string", Elems: bs(v)},
		}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, k := range []string{"ms:a", "ms:b"} {
			if got, _ := redis.String(c.Do("GET", k)); got != v {
				t.Errorf("round %d: %s = %q, want %q", round, k, got, v)
			}
		}
	}
	if s.Path() != PathEval {
		t.Errorf("path %s after MSET was refused, want eval", s.Path())
	}
	if n := commandCalls(t, c, "mset"); n != 0 {
		t.Errorf("the hub ran MSET %d times although it refuses it", n)
	}

	// The same refused by an ACL on a Redis reached directly (NOPERM).
	do(t, c, "ACL", "SETUSER", "nomset", "on", ">pw", "~*", "&*", "+@all", "-mset")
	pl := NewPool(RedisAddr{Addr: hub.RemoteAddr, User: "nomset", Password: "pw"}, 2)
	defer pl.Close()
	d := New("remote", pl, []byte("ms:"), testLimits())
	if err := d.Apply(context.Background(), []State{{Key: []byte("ms:acl"), Type: "string", Elems: bs("x")}}); err != nil {
		t.Fatalf("through an ACL without MSET: %v", err)
	}
	if got, _ := redis.String(c.Do("GET", "ms:acl")); got != "x" || d.Path() != PathEval {
		t.Errorf("through an ACL without MSET: ms:acl = %q, path %s; want x on scripts", got, d.Path())
	}
}
