package link

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// Plain mode: a hub whose Webdis ACL disables EVAL (and so EVALSHA, which
// the same prefix entry covers) refuses every script of scripts.go. The
// first refusal (HTTP 403, webdis.KindForbidden) switches the Store to plain
// commands for good (Store.toPlain, which tells the link once through
// OnFallback), and from then on Store.Eval runs each script's plain
// equivalent below, which returns the same reply. Callers do not change.
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
//     as from readScript, and bigDigest completes it through the plain
//     equivalents of hashChunkScript and stringHashScript.
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
//     drops, so a stream can be neither read nor verified without scripts.
//     Writing one is refused too (an *unsupportedError naming the key, never
//     a silent skip), and so are module types. A stream's summary has the
//     digest unknownDigest, equal to no real one, so resyncs find it
//     different and report it again.
//   - Going back: the store stays in plain mode until the link restarts.

// unknownDigest is the digest of a key plain commands cannot read (a
// stream): not hex, so it equals no digest of luaLib, and not empty, which
// would ask bigDigest for one.
const unknownDigest = "unknown"

// plainParallel is how many keys plain mode reads at once for digests and
// existence checks (a resync's work); each key takes several requests.
const plainParallel = 8

// maxPlainArgs bounds the elements of one plain write command.
const maxPlainArgs = 1 << 16

// unsupportedError names keys that plain commands cannot replicate.
type unsupportedError struct {
	keys [][]byte
	ty   string
	why  string
}

func (e *unsupportedError) Error() string {
	var b strings.Builder
	switch len(e.keys) {
	case 0:
	case 1:
		fmt.Fprintf(&b, "key %q not replicated: ", e.keys[0])
	default:
		b.WriteString("keys ")
		for i, k := range e.keys {
			if i == 5 {
				fmt.Fprintf(&b, " and %d more", len(e.keys)-5)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", k)
		}
		b.WriteString(" not replicated: ")
	}
	b.WriteString(e.why)
	return b.String()
}

// has says whether key is one of the keys left out.
func (e *unsupportedError) has(key []byte) bool {
	for _, k := range e.keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// unsupportedKeys gathers the keys of several unsupportedErrors.
type unsupportedKeys struct {
	keys [][]byte
	ty   string // their type, "" when they differ
}

// add takes in the keys of err if it is an unsupportedError, and says so.
func (u *unsupportedKeys) add(err error) bool {
	var ue *unsupportedError
	if !errors.As(err, &ue) {
		return false
	}
	if len(u.keys) == 0 {
		u.ty = ue.ty
	} else if u.ty != ue.ty {
		u.ty = ""
	}
	u.keys = append(u.keys, ue.keys...)
	return true
}

// err is the error naming the keys gathered, nil if none.
func (u *unsupportedKeys) err(side string) error {
	if len(u.keys) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", side, unsupported(u.ty, u.keys...))
}

// unsupported is the error for keys of type ty ("" when they differ).
func unsupported(ty string, keys ...[]byte) *unsupportedError {
	what := "a " + ty
	switch ty {
	case "stream":
	case "":
		what = "streams and module types"
	default:
		what = "type " + strconv.Quote(ty)
	}
	return &unsupportedError{keys: keys, ty: ty, why: what + " cannot be read or written with plain commands, and this side refuses scripts (EVAL): allow EVAL and EVALSHA on the hub to replicate it"}
}

// errChanged: a key changed while plain commands read it; read it again.
var errChanged = errors.New("key changed while read")

// emulate runs the plain equivalent of script sc and returns the reply the
// script would have returned.
func (s *Store) emulate(ctx context.Context, sc *Script, keys, args [][]byte) (any, error) {
	num := func(i int) int64 {
		if i >= len(args) {
			return 0
		}
		n, _ := strconv.ParseInt(string(args[i]), 10, 64)
		return n
	}
	switch sc {
	case readScript:
		states, err := s.readPlain(ctx, keys, num(0), num(1), num(2))
		if err != nil {
			return nil, err
		}
		return encodeStates(states), nil
	case digestScript:
		sums, err := s.summariesPlain(ctx, keys, num(0), num(1))
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, 3*len(sums))
		for _, m := range sums {
			out = append(out, []byte(m.Type), strconv.AppendInt(nil, m.ExpireAt, 10), []byte(m.Digest))
		}
		return out, nil
	case scanScript:
		if len(args) < 2 {
			return nil, errors.New("scan: bad arguments")
		}
		return s.scanPlain(ctx, string(args[0]), args[1])
	case existsScript:
		return s.existsPlain(ctx, keys)
	case casApplyScript:
		// Plain commands cannot check and write in one step: written
		// unconditionally, as in push mode.
		if len(args) < 1+len(keys) {
			return nil, errors.New("apply: bad arguments")
		}
		states, err := parseApplyArgs(keys, append([][]byte{args[0]}, args[1+len(keys):]...))
		if err != nil {
			return nil, err
		}
		if _, err := s.applyPlainStates(ctx, states); err != nil {
			return nil, err
		}
		return []any{}, nil
	case applyScript:
		states, err := parseApplyArgs(keys, args)
		if err != nil {
			return nil, err
		}
		if _, err := s.applyPlainStates(ctx, states); err != nil {
			return nil, err
		}
		return int64(len(keys)), nil
	case stageScript:
		if len(keys) != 1 || len(args) < 2 {
			return nil, errors.New("stage: bad arguments")
		}
		elems := args[2:]
		if string(args[1]) == "stream" && len(elems) > 0 {
			elems = elems[1:]
		}
		if err := s.stagePlain(ctx, args[0], keys[0], string(args[1]), elems); err != nil {
			return nil, err
		}
		return int64(1), nil
	case finishScript:
		if len(keys) != 2 || len(args) < 2 {
			return nil, errors.New("finish: bad arguments")
		}
		lastID := ""
		if len(args) > 2 {
			lastID = string(args[2])
		}
		if err := s.finishPlain(ctx, args[0], keys[0], keys[1], num(1), lastID); err != nil {
			return nil, err
		}
		return int64(1), nil
	case chunkScript:
		if len(keys) != 1 || len(args) < 3 {
			return nil, errors.New("chunk: bad arguments")
		}
		return s.chunkPlain(ctx, keys[0], string(args[0]), string(args[1]), num(2))
	case hashChunkScript:
		if len(keys) != 1 || len(args) < 3 {
			return nil, errors.New("hash chunk: bad arguments")
		}
		return s.hashChunkPlain(ctx, keys[0], string(args[0]), string(args[1]), num(2))
	case stringHashScript:
		if len(keys) != 1 {
			return nil, errors.New("string hash: bad arguments")
		}
		return s.stringHashPlain(ctx, keys[0], num(0))
	}
	return nil, errors.New("scripts are refused, and this one has no plain equivalent")
}

// --- digests ---------------------------------------------------------------

// digestOf is luaLib's digest(ty, v) computed in Go, for elems laid out as
// in State: sha1 hex of ty, '|', then the element hashes joined by ','.
// elementHashes makes them.
func digestOf(ty string, elems [][]byte) string {
	h := sha1.New()
	h.Write([]byte(ty))
	h.Write([]byte{'|'})
	for i, p := range elementHashes(ty, elems) {
		if i > 0 {
			h.Write([]byte{','})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// elementHashes are digest()'s parts: the sha1 hex of "len:field" "len:value"
// of each pair of a hash, of "len:element" of each element of other types;
// sorted for a hash or a set.
func elementHashes(ty string, elems [][]byte) []string {
	var parts []string
	p := sha1.New()
	if ty == "hash" {
		parts = make([]string, 0, len(elems)/2)
		for i := 0; i+1 < len(elems); i += 2 {
			p.Reset()
			writeField(p, elems[i])
			writeField(p, elems[i+1])
			parts = append(parts, hex.EncodeToString(p.Sum(nil)))
		}
	} else {
		parts = make([]string, len(elems))
		for i, e := range elems {
			p.Reset()
			writeField(p, e)
			parts[i] = hex.EncodeToString(p.Sum(nil))
		}
	}
	if ty == "hash" || ty == "set" {
		slices.Sort(parts)
	}
	return parts
}

// writeField writes luaLib's field(s): its length, ':', then s.
func writeField(h hash.Hash, b []byte) {
	h.Write(strconv.AppendInt(nil, int64(len(b)), 10))
	h.Write([]byte{':'})
	h.Write(b)
}

// --- reads -----------------------------------------------------------------

func (s *Store) do(ctx context.Context, args ...string) (any, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return s.Do.Do(ctx, b...)
}

// doKey sends cmd with key k and further arguments.
func (s *Store) doKey(ctx context.Context, cmd string, k []byte, args ...[]byte) (any, error) {
	return s.Do.Do(ctx, append([][]byte{[]byte(cmd), k}, args...)...)
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

func (s *Store) clockPlain(ctx context.Context) (serverClock, error) {
	at := time.Now()
	vs, err := redis.ByteSlices(s.do(ctx, "TIME"))
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
func (s *Store) expireAtPlain(ctx context.Context, k []byte, clock serverClock) (int64, error) {
	now := clock.now()
	ttl, err := redis.Int64(s.doKey(ctx, "TTL", k))
	if err != nil {
		return 0, err
	}
	if ttl < 0 {
		return 0, nil
	}
	if ttl >= 2_000_000 {
		return now + ttl*1000, nil
	}
	pttl, err := redis.Int64(s.doKey(ctx, "PTTL", k))
	if err != nil {
		return 0, err
	}
	if pttl < 0 {
		return 0, nil
	}
	return now + pttl, nil
}

func (s *Store) typePlain(ctx context.Context, k []byte) (string, error) {
	return redis.String(s.doKey(ctx, "TYPE", k))
}

// countPlain is the key's size as luaLib's contents() checks it: bytes of a
// string, elements of a collection (fields of a hash, members of a zset).
func (s *Store) countPlain(ctx context.Context, k []byte, ty string) (int64, error) {
	cmd := map[string]string{"string": "STRLEN", "hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD"}[ty]
	n, err := redis.Int64(s.doKey(ctx, cmd, k))
	if isWrongType(err) {
		return 0, errChanged
	}
	return n, err
}

// fetchPlain reads a key's whole contents, laid out as in State.
func (s *Store) fetchPlain(ctx context.Context, k []byte, ty string) ([][]byte, error) {
	var v any
	var err error
	switch ty {
	case "string":
		v, err = s.doKey(ctx, "GET", k)
		if isWrongType(err) || err == nil && v == nil {
			return nil, errChanged
		}
		b, err := redis.Bytes(v, err)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	case "hash":
		v, err = s.doKey(ctx, "HGETALL", k)
	case "list":
		v, err = s.doKey(ctx, "LRANGE", k, []byte("0"), []byte("-1"))
	case "set":
		v, err = s.doKey(ctx, "SMEMBERS", k)
	case "zset":
		v, err = s.doKey(ctx, "ZRANGE", k, []byte("0"), []byte("-1"), []byte("WITHSCORES"))
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
// and maxBytes, else Big with its size and an empty digest, which bigDigest
// completes), or, with summary, only what digestScript needs (Elems may then
// be set or not). A key that changes type or vanishes while read is read
// again.
func (s *Store) readKeyPlain(ctx context.Context, k []byte, clock serverClock, maxElems, maxBytes int64, summary bool) (State, error) {
	for attempt := 1; ; attempt++ {
		st, err := s.tryReadKeyPlain(ctx, k, clock, maxElems, maxBytes, summary)
		if err != errChanged {
			var ue *unsupportedError
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

func (s *Store) tryReadKeyPlain(ctx context.Context, k []byte, clock serverClock, maxElems, maxBytes int64, summary bool) (State, error) {
	st := State{Key: k}
	ty, err := s.typePlain(ctx, k)
	if err != nil {
		return st, err
	}
	st.Type = ty
	switch ty {
	case "none":
		st.Digest, st.Elems = noneDigestHex, [][]byte{}
		return st, nil
	case "string", "hash", "list", "set", "zset":
	case "stream":
		if !summary {
			return st, unsupported(ty, k)
		}
		// Never equal to a real digest: resyncs try it, and report it.
		st.Digest = unknownDigest
		st.ExpireAt, err = s.expireAtPlain(ctx, k, clock)
		return st, err
	default:
		// Module types: contents() in luaLib reads nothing for them.
		st.Elems = [][]byte{}
		st.Digest = digestOf(ty, nil)
		st.ExpireAt, err = s.expireAtPlain(ctx, k, clock)
		return st, err
	}
	if st.ExpireAt, err = s.expireAtPlain(ctx, k, clock); err != nil {
		return st, err
	}
	n, err := s.countPlain(ctx, k, ty)
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
		elems, err := s.fetchPlain(ctx, k, ty)
		if err != nil {
			return st, err
		}
		for _, e := range elems {
			total += int64(len(e))
		}
		// The type read first must still hold (contents read of another
		// type would pass for this one only by chance).
		if ty2, err := s.typePlain(ctx, k); err != nil || ty2 != ty {
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
			if m, err := redis.Int64(s.doKey(ctx, "MEMORY", k, []byte("USAGE"))); err == nil {
				st.BigSize = m
			} else if total > 0 {
				st.BigSize = total
			}
		}
	}
	return st, nil
}

// readPlain is readScript: keys read in order until the reply holds more
// than batchBytes; the keys past it are Deferred.
func (s *Store) readPlain(ctx context.Context, keys [][]byte, maxElems, maxBytes, batchBytes int64) ([]State, error) {
	clock, err := s.clockPlain(ctx)
	if err != nil {
		return nil, err
	}
	states := make([]State, len(keys))
	total := int64(0)
	for i, k := range keys {
		if total > batchBytes {
			// As readScript: type and expiry, no contents.
			st := State{Key: k, Deferred: true}
			if st.Type, err = s.typePlain(ctx, k); err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			if st.Type != "none" {
				if st.ExpireAt, err = s.expireAtPlain(ctx, k, clock); err != nil {
					return nil, fmt.Errorf("key %q: %w", k, err)
				}
			}
			states[i] = st
			continue
		}
		st, err := s.readKeyPlain(ctx, k, clock, maxElems, maxBytes, false)
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

// summariesPlain is digestScript, a few keys at a time.
func (s *Store) summariesPlain(ctx context.Context, keys [][]byte, maxElems, maxBytes int64) ([]Summary, error) {
	clock, err := s.clockPlain(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, len(keys))
	err = parallel(ctx, len(keys), func(i int) error {
		st, err := s.readKeyPlain(ctx, keys[i], clock, maxElems, maxBytes, true)
		out[i] = st.Summary()
		return err
	})
	return out, err
}

// encodeStates lays states out as readScript's reply.
func encodeStates(states []State) []any {
	var out []any
	for _, st := range states {
		out = append(out, []byte(st.Type), strconv.AppendInt(nil, st.ExpireAt, 10), []byte(st.Digest))
		switch {
		case st.Deferred:
			out = append(out, []byte("-2"))
		case st.Big:
			out = append(out, []byte("-1"), strconv.AppendInt(nil, st.BigSize, 10))
		default:
			out = append(out, strconv.AppendInt(nil, int64(len(st.Elems)), 10))
			for _, e := range st.Elems {
				out = append(out, e)
			}
		}
	}
	return out
}

// scanPlain lists the namespace with KEYS (SCAN's reply is nested, which
// Webdis's raw format cannot carry): all of it in one reply, as one page.
// The reply is scanScript's: cursor "0", then the keys.
func (s *Store) scanPlain(ctx context.Context, cursor string, pattern []byte) (any, error) {
	out := []any{[]byte("0")}
	if cursor != "0" {
		return out, nil // the one page was handed out already
	}
	keys, err := redis.ByteSlices(s.Do.Do(ctx, []byte("KEYS"), pattern))
	if err != nil {
		return nil, fmt.Errorf("KEYS: %w", err)
	}
	for _, k := range keys {
		out = append(out, k)
	}
	return out, nil
}

// existsPlain is existsScript: "1" or "0" per key.
func (s *Store) existsPlain(ctx context.Context, keys [][]byte) (any, error) {
	out := make([]any, len(keys))
	err := parallel(ctx, len(keys), func(i int) error {
		n, err := redis.Int(s.doKey(ctx, "EXISTS", keys[i]))
		out[i] = []byte(strconv.Itoa(n))
		return err
	})
	return out, err
}

// chunkPlain is chunkScript: one chunk of a big key, for copyBig. Cursors
// are byte offsets (string) and indexes (list, zset: ZRANGE by rank); a hash
// or a set (HSCAN and SSCAN replies are nested) comes whole in one chunk.
func (s *Store) chunkPlain(ctx context.Context, k []byte, ty, cursor string, count int64) (any, error) {
	off, _ := strconv.ParseInt(cursor, 10, 64)
	if count <= 0 {
		count = 512
	}
	rng := [][]byte{strconv.AppendInt(nil, off, 10), strconv.AppendInt(nil, off+count-1, 10)}
	var v any
	var err error
	per := int64(1) // elements per counted unit
	switch ty {
	case "string":
		b, err := redis.Bytes(s.doKey(ctx, "GETRANGE", k, rng...))
		if err != nil {
			return nil, err
		}
		next := []byte{}
		if int64(len(b)) >= count {
			next = strconv.AppendInt(nil, off+count, 10)
		}
		return []any{next, b}, nil
	case "list":
		v, err = s.doKey(ctx, "LRANGE", k, rng...)
	case "zset":
		v, err = s.doKey(ctx, "ZRANGE", k, rng[0], rng[1], []byte("WITHSCORES"))
		per = 2
	case "hash", "set":
		if cursor != "0" {
			return []any{[]byte{}}, nil
		}
		if ty == "hash" {
			v, err = s.doKey(ctx, "HGETALL", k)
		} else {
			v, err = s.doKey(ctx, "SMEMBERS", k)
		}
		count = -1 // all of it: no next chunk
	case "stream":
		return nil, unsupported(ty)
	default:
		return nil, fmt.Errorf("no chunks for type %q", ty)
	}
	elems, err := redis.ByteSlices(v, err)
	if err != nil {
		return nil, err
	}
	next := []byte{}
	if count > 0 && int64(len(elems)) >= count*per {
		next = strconv.AppendInt(nil, off+count, 10)
	}
	out := make([]any, 0, 1+len(elems))
	out = append(out, next)
	for _, e := range elems {
		out = append(out, e)
	}
	return out, nil
}

// hashChunkPlain is hashChunkScript, for bigDigest: the next cursor, then
// the element hashes of one chunk. Lists and sorted sets are walked by rank;
// a hash or a set (HSCAN's and SSCAN's replies are nested) comes whole in
// one chunk, which holds it in memory once.
func (s *Store) hashChunkPlain(ctx context.Context, k []byte, ty, cursor string, count int64) (any, error) {
	var elems [][]byte
	next := []byte{}
	switch ty {
	case "hash", "set":
		if cursor == "0" {
			var err error
			if elems, err = s.fetchPlain(ctx, k, ty); err != nil && err != errChanged {
				return nil, err
			}
		}
	case "list", "zset":
		reply, err := s.chunkPlain(ctx, k, ty, cursor, count)
		if err != nil {
			return nil, err
		}
		vs, err := redis.ByteSlices(reply, nil)
		if err != nil || len(vs) == 0 {
			return nil, orBadReply(err)
		}
		next, elems = vs[0], vs[1:]
	case "stream":
		return nil, unsupported(ty, k)
	default:
		return nil, fmt.Errorf("no chunk hashes for type %q", ty)
	}
	hashes := elementHashes(ty, elems)
	out := make([]any, 0, 1+len(hashes))
	out = append(out, next)
	for _, h := range hashes {
		out = append(out, []byte(h))
	}
	return out, nil
}

// stringHashPlain is stringHashScript: sha1 hex of "len:value" of a string
// of at most max bytes, else "".
func (s *Store) stringHashPlain(ctx context.Context, k []byte, max int64) (any, error) {
	n, err := redis.Int64(s.doKey(ctx, "STRLEN", k))
	if err != nil {
		return nil, err
	}
	if n > max {
		return []byte{}, nil
	}
	v, err := redis.Bytes(s.doKey(ctx, "GET", k))
	if err != nil && err != redis.ErrNil {
		return nil, err
	}
	h := sha1.New()
	writeField(h, v)
	return []byte(hex.EncodeToString(h.Sum(nil))), nil
}

// --- writes ----------------------------------------------------------------

// parseApplyArgs decodes applyScript's arguments into states.
func parseApplyArgs(keys, args [][]byte) ([]State, error) {
	if len(args) < 1 {
		return nil, errors.New("apply: bad arguments")
	}
	states := make([]State, len(keys))
	a := 1
	for i, k := range keys {
		if a+3 > len(args) {
			return nil, errors.New("apply: bad arguments")
		}
		exp, err1 := strconv.ParseInt(string(args[a+1]), 10, 64)
		n, err2 := strconv.Atoi(string(args[a+2]))
		if err1 != nil || err2 != nil || n < 0 || a+3+n > len(args) {
			return nil, errors.New("apply: bad arguments")
		}
		states[i] = State{Key: k, Type: string(args[a]), ExpireAt: exp, Elems: args[a+3 : a+3+n]}
		a += 3 + n
	}
	return states, nil
}

// applyPlain is Apply in plain mode: each key written on its own,
// atomically (see the top of this file). It checks every key is in the
// namespace before writing any; a key of a type plain commands cannot write
// is left out, and the error naming it is returned once the others are
// written.
func (s *Store) applyPlain(ctx context.Context, states []State) (int, error) {
	n, err := s.applyPlainStates(ctx, states)
	var tb *tooBigError
	var ue *unsupportedError
	switch {
	case err == nil, errors.As(err, &tb):
	case errors.As(err, &ue):
		err = fmt.Errorf("%s: %w", s.Name, err)
	default:
		err = fmt.Errorf("%s: write %d keys: %w", s.Name, len(states), err)
	}
	return n, err
}

func (s *Store) applyPlainStates(ctx context.Context, states []State) (int, error) {
	for i := range states {
		if !bytes.HasPrefix(states[i].Key, s.Prefix) {
			return 0, fmt.Errorf("key %q is outside the namespace %q", states[i].Key, s.Prefix)
		}
	}
	requests := 0
	var left unsupportedKeys
	for i := range states {
		st := &states[i]
		if s.MaxRequest > 0 && 64+len(s.Prefix)*3+st.applyLen() > s.MaxRequest {
			return requests, &tooBigError{key: st.Key}
		}
		n, err := s.applyOnePlain(ctx, st)
		requests += n
		if err != nil && !left.add(err) {
			return requests, fmt.Errorf("key %q: %w", st.Key, err)
		}
	}
	if len(left.keys) > 0 {
		return requests, unsupported(left.ty, left.keys...)
	}
	return requests, nil
}

// applyOnePlain writes one state, atomically, and returns the requests sent.
func (s *Store) applyOnePlain(ctx context.Context, st *State) (requests int, err error) {
	switch st.Type {
	case "none":
		_, err = s.doKey(ctx, "DEL", st.Key)
		return 1, err
	case "string":
		if len(st.Elems) != 1 {
			return 0, fmt.Errorf("a string state with %d elements", len(st.Elems))
		}
		args := [][]byte{st.Elems[0]}
		if st.ExpireAt > 0 {
			// An expiry in the past deletes the key, as PEXPIREAT would.
			args = append(args, []byte("PXAT"), strconv.AppendInt(nil, st.ExpireAt, 10))
		}
		_, err = s.doKey(ctx, "SET", st.Key, args...)
		return 1, err
	case "hash", "list", "set", "zset":
	default:
		return 0, unsupported(st.Type, st.Key)
	}
	if len(st.Elems) == 0 {
		// Redis holds no empty collection: applyScript deletes the key.
		_, err = s.doKey(ctx, "DEL", st.Key)
		return 1, err
	}
	tmp := stagingKey(s.Prefix)
	defer func() {
		if err != nil {
			_, _ = s.doKey(context.WithoutCancel(ctx), "DEL", tmp)
			requests++
		}
	}()
	n, err := s.addPlain(ctx, tmp, st.Type, st.Elems, true)
	requests += n
	if err != nil {
		return requests, err
	}
	n, err = s.movePlain(ctx, tmp, st.Key, st.ExpireAt)
	return requests + n, err
}

// plainBudget is the largest plain command to send, in encoded bytes.
func (s *Store) plainBudget() int {
	if s.MaxRequest > 0 {
		return s.MaxRequest
	}
	return 8 << 20
}

// addPlain adds elems (laid out as in State) to key k of type ty, in as many
// commands as the request budget needs, and gives k the staging TTL: after
// the first command when once is set, else after the last.
func (s *Store) addPlain(ctx context.Context, k []byte, ty string, elems [][]byte, once bool) (int, error) {
	cmd, step := map[string]string{"string": "APPEND", "hash": "HSET", "list": "RPUSH", "set": "SADD", "zset": "ZADD"}[ty], 1
	if ty == "hash" || ty == "zset" {
		step = 2
	}
	if cmd == "" {
		return 0, fmt.Errorf("no plain write for type %q", ty)
	}
	if len(elems)%step != 0 {
		return 0, fmt.Errorf("%d elements for type %s", len(elems), ty)
	}
	overhead := 32 + webdis.EncodedLen(k)
	budget := s.plainBudget()
	requests := 0
	expire := func() error {
		requests++
		_, err := s.doKey(ctx, "PEXPIRE", k, []byte(stagingTTL))
		return err
	}
	args := make([][]byte, 0, 64)
	size := overhead
	send := func() error {
		if len(args) == 0 {
			return nil
		}
		requests++
		if _, err := s.doKey(ctx, cmd, k, args...); err != nil {
			return err
		}
		if once && requests == 1 {
			if err := expire(); err != nil {
				return err
			}
		}
		args, size = args[:0], overhead
		return nil
	}
	for i := 0; i < len(elems); i += step {
		unit := elems[i : i+step]
		l := 0
		for _, e := range unit {
			l += 1 + webdis.EncodedLen(e)
		}
		if overhead+l > budget {
			return requests, fmt.Errorf("an element of %d bytes does not fit in one request of %d bytes", l, budget)
		}
		if size+l > budget || len(args)+step > maxPlainArgs || ty == "string" {
			if err := send(); err != nil {
				return requests, err
			}
		}
		if ty == "zset" {
			args = append(args, unit[1], unit[0]) // ZADD takes the score first
		} else {
			args = append(args, unit...)
		}
		size += l
	}
	if err := send(); err != nil {
		return requests, err
	}
	if !once {
		return requests, expire()
	}
	return requests, nil
}

// movePlain gives staging key tmp the final expiry (PEXPIREAT, or PERSIST)
// and renames it over key: one atomic step, as RENAME carries the TTL. An
// expiry already past deletes tmp; key is then deleted too, as the state
// says.
func (s *Store) movePlain(ctx context.Context, tmp, key []byte, exp int64) (int, error) {
	var err error
	if exp > 0 {
		_, err = s.doKey(ctx, "PEXPIREAT", tmp, strconv.AppendInt(nil, exp, 10))
	} else {
		_, err = s.doKey(ctx, "PERSIST", tmp)
	}
	if err != nil {
		return 1, err
	}
	_, err = s.doKey(ctx, "RENAME", tmp, key)
	var re redis.Error
	if exp > 0 && errors.As(err, &re) && strings.Contains(string(re), "no such key") {
		_, err = s.doKey(ctx, "DEL", key)
		return 3, err
	}
	return 2, err
}

// checkNamespace is luaWrite's check_namespace.
func checkNamespace(prefix []byte, keys ...[]byte) error {
	for _, k := range keys {
		if !bytes.HasPrefix(k, prefix) {
			return redis.Error("ERR redisrepl: key outside the namespace")
		}
	}
	return nil
}

// stagePlain is stageScript: elems added to staging key tmp, whose TTL is
// then set to the staging TTL.
func (s *Store) stagePlain(ctx context.Context, prefix, tmp []byte, ty string, elems [][]byte) error {
	if err := checkNamespace(prefix, tmp); err != nil {
		return err
	}
	if ty == "stream" {
		return unsupported(ty)
	}
	_, err := s.addPlain(ctx, tmp, ty, elems, false)
	return err
}

// finishPlain is finishScript: staging key tmp moved into place as key,
// expiring at exp.
func (s *Store) finishPlain(ctx context.Context, prefix, tmp, key []byte, exp int64, lastID string) error {
	if err := checkNamespace(prefix, tmp, key); err != nil {
		return err
	}
	if lastID != "" {
		return unsupported("stream")
	}
	n, err := redis.Int(s.doKey(ctx, "EXISTS", tmp))
	if err != nil {
		return err
	}
	if n == 0 {
		return redis.Error("ERR redisrepl: staging key vanished")
	}
	_, err = s.movePlain(ctx, tmp, key, exp)
	return err
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

// fallbackMsg is logged once when the remote refuses scripts.
const fallbackMsg = "the hub refuses scripts (EVAL): falling back to plain commands; " +
	"each key is still written atomically, but replication is slower, reads are not atomic, " +
	"streams are not replicated, and listing the namespace uses KEYS; /status shows write_path: plain"

// reportFallback is the remote Store's OnFallback: it says once, as a
// warning, that the link now uses plain commands, and why.
func (l *Link) reportFallback(err error) {
	l.log.Warn().Err(err).Str("write_path", "plain").Msg(fallbackMsg)
}
