package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// plainOps is the ops of a side that refuses scripts: a hub whose Webdis ACL
// disables EVAL (and so EVALSHA, which the same prefix entry covers). The
// first refusal (HTTP 403, webdis.KindForbidden) switches the Store to
// plainOps for good (Store.run, which tells the link once through
// OnFallback). Reads are here, chunks of big keys in plain_chunk.go, writes
// in plain_write.go, and what DUMP and RESTORE carry in plain_dump.go.
//
// What plain mode keeps:
//
//   - Every key is written atomically. A string is one SET (with PXAT when it
//     expires: SET without KEEPTTL clears an old TTL). A hash, list, set or
//     sorted set is built in a staging key (bigkey.go: a key of the namespace
//     that links ignore), given its final TTL (PEXPIREAT, or PERSIST), then
//     RENAMEd into place: RENAME is atomic and carries the TTL, so a reader
//     sees the old value or the new one, never a half-built one. The staging
//     key holds a one-hour TTL while it is built, so that a copy abandoned
//     half way (the process killed) cleans itself up. A delete is one DEL.
//   - Digests are computed in Go (digestOf) exactly as luaLib's digest()
//     computes them in Lua, so a side in plain mode compares equal with a
//     side running scripts. A key too big to read whole gets an empty digest,
//     as from readScript, and BigDigest completes it through hashChunk
//     and stringHash.
//   - Replies stay flat, as Webdis's raw format needs: SCAN's reply is
//     nested, so the namespace is listed with KEYS, which returns it whole in
//     one reply (and blocks the hub's Redis while it runs: acceptable for a
//     fallback, heavy for namespaces of millions of keys). PTTL beyond 2^31 ms
//     (24.8 days) does not survive Webdis's raw format: TTL (seconds) is
//     asked first and PTTL only for shorter TTLs.
//
// What it gives up:
//
//   - Speed: one or more requests per key instead of hundreds of keys per
//     request.
//   - Atomic reads: a key is read with several commands (TYPE, TTL,
//     HGETALL...). A read that sees the key change type or vanish is retried;
//     any other change meanwhile produces its own keyspace event, which reads
//     the key again.
//   - Streams: XRANGE and XREAD replies are nested, which Webdis's raw format
//     drops, so a stream can be neither read nor written with plain
//     commands. Where the sides accept each other's DUMP payloads, streams
//     (and module types) travel with DUMP and RESTORE instead, and a stream
//     here is digested on the other side (plain_dump.go). Where they do not,
//     writing one is refused (an *UnsupportedError naming the key, never a
//     silent skip), and a stream's summary has the digest unknownDigest,
//     equal to no real one, so resyncs find it different and report it
//     again.
//   - Going back: the store stays in plain mode until the link restarts.

type plainOps struct {
	do     Doer
	budget int // the largest request, in encoded bytes; 0 = no limit
	// streams says whether streams travel by DUMP and RESTORE
	// (plain_dump.go): then a stream reads as a Big key, undigested, which
	// BigDigest digests and CopyBig copies through the peer.
	streams func(context.Context) bool
}

// unknownDigest is the digest of a key plain commands cannot read (a
// stream): not hex, so it equals no digest of luaLib, and not empty, which
// would ask BigDigest for one.
const unknownDigest = "unknown"

// plainParallel is how many keys plain mode reads at once for digests and
// existence checks (a resync's work); each key takes several requests.
const plainParallel = 8

func (p plainOps) cmd(ctx context.Context, args ...string) (any, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return p.do.Do(ctx, b...)
}

// doKey sends cmd with key k and further arguments.
func (p plainOps) doKey(ctx context.Context, cmd string, k []byte, args ...[]byte) (any, error) {
	return p.do.Do(ctx, append([][]byte{[]byte(cmd), k}, args...)...)
}

// serverClock is the side's clock, read once (TIME: a flat pair of
// strings) and advanced by the local monotonic clock, so that a plain read
// of many keys, one after the other, computes each expiry from the time its
// TTL was read, as readScript's single instant does.
type serverClock struct {
	ms int64 // the side's time when read, unix ms
	at time.Time
}

func (c serverClock) now() int64 { return c.ms + time.Since(c.at).Milliseconds() }

func (p plainOps) clockPlain(ctx context.Context) (serverClock, error) {
	at := time.Now()
	vs, err := redis.ByteSlices(p.cmd(ctx, "TIME"))
	if err != nil || len(vs) != 2 {
		return serverClock{}, fmt.Errorf("TIME: %w", orBadReply(err))
	}
	sec, err1 := strconv.ParseInt(string(vs[0]), 10, 64)
	usec, err2 := strconv.ParseInt(string(vs[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return serverClock{}, errors.New("TIME: bad reply")
	}
	return serverClock{ms: sec*1000 + usec/1000, at: at}, nil
}

func orBadReply(err error) error {
	if err == nil {
		return errors.New("bad reply")
	}
	return err
}

// expireAtPlain is luaLib's expire_at: the key's expiry in unix ms, 0 if
// none. Webdis's raw format cuts integers past 2^31, and a PTTL is past it
// beyond 24.8 days: TTL (in seconds) is asked first, PTTL only when it is
// short enough; a longer TTL is known to a second, within ttlTolerance.
func (p plainOps) expireAtPlain(ctx context.Context, k []byte, clock serverClock) (int64, error) {
	now := clock.now()
	ttl, err := redis.Int64(p.doKey(ctx, "TTL", k))
	if err != nil {
		return 0, err
	}
	if ttl < 0 {
		return 0, nil
	}
	if ttl >= 2_000_000 {
		return now + ttl*1000, nil
	}
	pttl, err := redis.Int64(p.doKey(ctx, "PTTL", k))
	if err != nil {
		return 0, err
	}
	if pttl < 0 {
		return 0, nil
	}
	return now + pttl, nil
}

func (p plainOps) typePlain(ctx context.Context, k []byte) (string, error) {
	return redis.String(p.doKey(ctx, "TYPE", k))
}

// countPlain is the key's size as luaLib's contents() checks it: bytes of a
// string, elements of a collection (fields of a hash, members of a zset).
func (p plainOps) countPlain(ctx context.Context, k []byte, ty string) (int64, error) {
	cmd := map[string]string{"string": "STRLEN", "hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD"}[ty]
	n, err := redis.Int64(p.doKey(ctx, cmd, k))
	if isWrongType(err) {
		return 0, errChanged
	}
	return n, err
}

// fetchPlain reads a key's whole contents, laid out as in State.
func (p plainOps) fetchPlain(ctx context.Context, k []byte, ty string) ([][]byte, error) {
	var v any
	var err error
	switch ty {
	case "string":
		v, err = p.doKey(ctx, "GET", k)
		if isWrongType(err) || err == nil && v == nil {
			return nil, errChanged
		}
		b, err := redis.Bytes(v, err)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	case "hash":
		v, err = p.doKey(ctx, "HGETALL", k)
	case "list":
		v, err = p.doKey(ctx, "LRANGE", k, []byte("0"), []byte("-1"))
	case "set":
		v, err = p.doKey(ctx, "SMEMBERS", k)
	case "zset":
		v, err = p.doKey(ctx, "ZRANGE", k, []byte("0"), []byte("-1"), []byte("WITHSCORES"))
	default:
		return nil, fmt.Errorf("no plain read for type %q", ty)
	}
	if isWrongType(err) {
		return nil, errChanged
	}
	elems, err := redis.ByteSlices(v, err)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, errChanged // a collection is never empty: it is gone
	}
	return elems, nil
}

func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(string(re), "WRONGTYPE")
}

// readKeyPlain reads one key as readScript does (contents within maxElems
// and maxBytes, else Big with its size and an empty digest, which BigDigest
// completes), or, with summary, only what digestScript needs (Elems may then
// be set or not). A key that changes type or vanishes while read is read
// again.
func (p plainOps) readKeyPlain(ctx context.Context, k []byte, clock serverClock, maxElems, maxBytes int64, summary bool) (State, error) {
	for attempt := 1; ; attempt++ {
		st, err := p.tryReadKeyPlain(ctx, k, clock, maxElems, maxBytes, summary)
		if err != errChanged {
			var ue *UnsupportedError
			if err != nil && !errors.As(err, &ue) {
				err = fmt.Errorf("key %q: %w", k, err)
			}
			return st, err
		}
		if attempt == 5 {
			return st, fmt.Errorf("key %q kept changing while read with plain commands", k)
		}
	}
}

func (p plainOps) tryReadKeyPlain(ctx context.Context, k []byte, clock serverClock, maxElems, maxBytes int64, summary bool) (State, error) {
	st := State{Key: k}
	ty, err := p.typePlain(ctx, k)
	if err != nil {
		return st, err
	}
	st.Type = ty
	switch ty {
	case "none":
		st.Digest, st.Elems = NoneDigest, [][]byte{}
		return st, nil
	case "string", "hash", "list", "set", "zset":
	case "stream":
		if p.streams != nil && p.streams(ctx) {
			// Carried and digested through the peer (plain_dump.go).
			st.Big = true
			if st.ExpireAt, err = p.expireAtPlain(ctx, k, clock); err != nil || summary {
				return st, err
			}
			st.BigSize, _ = redis.Int64(p.doKey(ctx, "MEMORY", k, []byte("USAGE")))
			return st, nil
		}
		if !summary {
			return st, unsupported(ty, k)
		}
		// Never equal to a real digest: resyncs try it, and report it.
		st.Digest = unknownDigest
		st.ExpireAt, err = p.expireAtPlain(ctx, k, clock)
		return st, err
	default:
		// Module types: contents() in luaLib reads nothing for them.
		st.Elems = [][]byte{}
		st.Digest = digestOf(ty, nil)
		st.ExpireAt, err = p.expireAtPlain(ctx, k, clock)
		return st, err
	}
	if st.ExpireAt, err = p.expireAtPlain(ctx, k, clock); err != nil {
		return st, err
	}
	n, err := p.countPlain(ctx, k, ty)
	if err != nil {
		return st, err
	}
	if n == 0 && ty != "string" {
		return st, errChanged // a collection is never empty: it is gone
	}
	units := n
	if ty == "hash" || ty == "zset" {
		units = 2 * n
	}
	fits := units <= maxElems
	if ty == "string" {
		fits = n <= maxBytes
	}
	total := int64(0)
	if fits {
		elems, err := p.fetchPlain(ctx, k, ty)
		if err != nil {
			return st, err
		}
		for _, e := range elems {
			total += int64(len(e))
		}
		// The type read first must still hold (contents read of another
		// type would pass for this one only by chance).
		if ty2, err := p.typePlain(ctx, k); err != nil || ty2 != ty {
			if err != nil {
				return st, err
			}
			return st, errChanged
		}
		if total <= maxBytes {
			st.Elems, st.Digest = elems, digestOf(ty, elems)
			return st, nil
		}
	}
	st.Big = true
	if !summary {
		st.BigSize = n
		if ty != "string" {
			// luaLib's size(): MEMORY USAGE, an estimate. Should the hub's
			// ACL refuse MEMORY, the bytes read stand in for it.
			if m, err := redis.Int64(p.doKey(ctx, "MEMORY", k, []byte("USAGE"))); err == nil {
				st.BigSize = m
			} else if total > 0 {
				st.BigSize = total
			}
		}
	}
	return st, nil
}

// read is readScript: keys read in order until the reply holds more
// than batchBytes; the keys past it are Deferred.
func (p plainOps) read(ctx context.Context, keys [][]byte, lim Limits) ([]State, error) {
	maxElems, maxBytes, batchBytes := int64(lim.MaxElems), int64(lim.MaxBytes), int64(lim.MaxBatchBytes)
	clock, err := p.clockPlain(ctx)
	if err != nil {
		return nil, err
	}
	states := make([]State, len(keys))
	total := int64(0)
	for i, k := range keys {
		if total > batchBytes {
			// As readScript: type and expiry, no contents.
			st := State{Key: k, Deferred: true}
			if st.Type, err = p.typePlain(ctx, k); err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			if st.Type != "none" {
				if st.ExpireAt, err = p.expireAtPlain(ctx, k, clock); err != nil {
					return nil, fmt.Errorf("key %q: %w", k, err)
				}
			}
			states[i] = st
			continue
		}
		st, err := p.readKeyPlain(ctx, k, clock, maxElems, maxBytes, false)
		if err != nil {
			return nil, err
		}
		for _, e := range st.Elems {
			total += int64(len(e))
		}
		states[i] = st
	}
	return states, nil
}

// summaries is digestScript, a few keys at a time.
func (p plainOps) summaries(ctx context.Context, keys [][]byte, lim Limits) ([]Summary, error) {
	maxElems, maxBytes := int64(lim.MaxElems), int64(lim.MaxBytes)
	clock, err := p.clockPlain(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, len(keys))
	err = parallel(ctx, len(keys), func(i int) error {
		st, err := p.readKeyPlain(ctx, keys[i], clock, maxElems, maxBytes, true)
		out[i] = st.Summary()
		return err
	})
	return out, err
}

// scan lists the namespace with KEYS (SCAN's reply is nested, which
// Webdis's raw format cannot carry): all of it in one reply, as one page.
func (p plainOps) scan(ctx context.Context, cursor string, match []byte, _ int) (string, [][]byte, error) {
	if cursor != "0" {
		return "0", nil, nil // the one page was handed out already
	}
	keys, err := redis.ByteSlices(p.do.Do(ctx, []byte("KEYS"), match))
	if err != nil {
		return "", nil, fmt.Errorf("KEYS: %w", err)
	}
	return "0", keys, nil
}

// exists is EXISTS of each key, a few at a time.
func (p plainOps) exists(ctx context.Context, keys [][]byte) ([]bool, error) {
	out := make([]bool, len(keys))
	err := parallel(ctx, len(keys), func(i int) error {
		n, err := redis.Int(p.doKey(ctx, "EXISTS", keys[i]))
		out[i] = n == 1
		return err
	})
	return out, err
}

// parallel runs f(0..n-1), plainParallel at a time, and returns the first
// error; after one, the calls not yet started are skipped.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, plainParallel)
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for i := range n {
		if failed() || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
