// Package store reads and writes whole keys of one namespace on one Redis:
// the local one directly, or the remote one through Webdis. A Store is one
// side of a link; the link (package link) decides what to copy, the store
// does the copying. See docs/ARCHITECTURE.md, "link/store".
//
// A Store runs its operations through one of two implementations of the
// small ops interface (ops.go):
//
//	evalOps   Lua scripts (eval.go, scripts.go): atomic reads and writes,
//	          many keys per request
//	plainOps  plain commands (plain_*.go, streams by DUMP/RESTORE): the fallback
//	          when a hub's Webdis refuses EVAL; still atomic per key written
//
// The store starts with scripts and switches to plain commands once, for
// good, the first time the side refuses a script, telling OnFallback.
// Big keys (bigkey.go), digests and comparisons (compare.go) go through the
// same operations, never through raw scripts.
package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/webdis"
)

// Doer sends one command to a Redis and returns its reply as redigo does
// (an error reply as a redis.Error error). The remote side's Doer is a
// *webdis.Client; the local side's is a *Pool (redis.go).
type Doer interface {
	Do(ctx context.Context, args ...[]byte) (any, error)
}

// Path is how a store reads and writes.
type Path int32

const (
	PathEval  Path = iota // Lua scripts: atomic reads and writes, many keys per request
	PathPlain             // plain commands: the fallback when scripts are refused
)

// MarshalText writes the path as its name, for /status.
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p Path) String() string {
	if p == PathPlain {
		return "plain"
	}
	return "eval"
}

// Limits bound what one request carries and what one read holds.
type Limits struct {
	// MaxRequest is the largest request body the side accepts, in encoded
	// bytes (Webdis behind nginx: client_max_body_size); 0 = no limit.
	MaxRequest int
	// MaxElems and MaxBytes bound what one read returns for one key; a
	// bigger key is Big, copied and digested in chunks (bigkey.go).
	MaxElems, MaxBytes int
	// MaxBatchBytes bounds a whole read: the keys past it are Deferred.
	MaxBatchBytes int
}

// Default limits of the link's reads: a key of more elements is read and
// digested in chunks, so that no script holds a busy Redis for long; a
// worker holds at most DefaultMaxBatchBytes of values at a time.
const (
	DefaultMaxElems      = 16384
	DefaultMaxBatchBytes = 4 << 20
)

// noLimitRequest is the request size the store aims for where the side sets
// no limit (the local Redis): big keys still travel in chunks of this size.
const noLimitRequest = 8 << 20

// Store is one side of a link: the namespace Prefix of one Redis.
type Store struct {
	Name   string // "local …" or "remote …", for messages
	Prefix []byte // the namespace
	Limits

	// OnFallback, if set, is called once, when the store switches to plain
	// commands because the side refused a script with err.
	OnFallback func(err error)

	do    Doer
	eval  ops
	plain ops
	path  atomic.Int32 // a Path

	// peer is the link's other side (Pair), for DUMP and RESTORE
	// (plain_dump.go); restore is whether this side accepts its payloads.
	peer    *Store
	restore restoreCheck

	// applyBase is the size of an apply request besides its states and
	// the digits of its key count: the script's source (sent when the side
	// lost its script cache), the namespace and room for a write mark.
	applyBase int
}

// New returns a store of namespace prefix on the Redis behind do.
func New(name string, do Doer, prefix []byte, lim Limits) *Store {
	s := &Store{Name: name, Prefix: prefix, Limits: lim, do: do, eval: evalOps{do: do, noMSET: new(atomic.Bool)},
		applyBase: casApplyScript.evalLen(prefix) + 1 + markReserve(prefix)}
	s.plain = plainOps{do: do, budget: lim.MaxRequest, streams: s.streamsByDump}
	return s
}

// streamsByDump says whether a stream on this side, which plain commands
// cannot read, travels and is digested with DUMP and RESTORE through the
// peer (plain_dump.go).
func (s *Store) streamsByDump(ctx context.Context) bool {
	if s.peer == nil || s.peer.Path() != PathEval {
		return false
	}
	ok, _ := carriesByDump(ctx, s, s.peer)
	return ok
}

// Doer is what the store sends its commands through.
func (s *Store) Doer() Doer { return s.do }

// Path says whether the store runs scripts or, since a refusal, plain
// commands.
func (s *Store) Path() Path { return Path(s.path.Load()) }

// ForcePlain switches the store to plain commands without waiting for a
// refusal (tests).
func (s *Store) ForcePlain() { s.path.Store(int32(PathPlain)) }

// run calls f with the store's current implementation. A script refused by
// the side (Webdis answers 403 to a command its ACL disables, before running
// it) switches the store to plain commands for good, and f runs again there.
func (s *Store) run(f func(o ops) error) error {
	if s.Path() == PathPlain {
		return f(s.plain)
	}
	err := f(s.eval)
	if err != nil && webdis.KindOf(err) == webdis.KindForbidden && s.onlyScriptsRefused() {
		if s.path.CompareAndSwap(int32(PathEval), int32(PathPlain)) && s.OnFallback != nil {
			s.OnFallback(err)
		}
		return f(s.plain)
	}
	return err
}

// onlyScriptsRefused says whether the side, which just refused a script,
// answers a plain read of the namespace: a refusal of everything (a
// gateway that knows no tenant for the certificate yet, say) must not
// switch the store to plain commands for good.
func (s *Store) onlyScriptsRefused() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.do.Do(ctx, []byte("EXISTS"), s.Prefix) // a name in the namespace
	return webdis.KindOf(err) != webdis.KindForbidden
}

// Read reads the whole state of each key (atomically with scripts), in as
// many requests as the key names need. Keys past MaxBatchBytes of values
// are returned Deferred, unread: the caller asks again later.
func (s *Store) Read(ctx context.Context, keys [][]byte) ([]State, error) {
	out := make([]State, 0, len(keys))
	held := 0
	for _, part := range splitKeys(keys, s.MaxRequest, keysOverhead(readScript, 3)) {
		if held > s.MaxBatchBytes {
			for _, k := range part {
				out = append(out, State{Key: k, Deferred: true})
			}
			continue
		}
		lim := s.Limits
		lim.MaxBatchBytes = max(s.MaxBatchBytes-held, s.MaxBytes, 0)
		var st []State
		err := s.run(func(o ops) (err error) { st, err = o.read(ctx, part, lim); return err })
		if err != nil {
			return nil, fmt.Errorf("%s: read %d keys: %w", s.Name, len(part), err)
		}
		for i := range st {
			held += st[i].size()
		}
		out = append(out, st...)
	}
	return out, nil
}

// Summaries returns the type, expiry and digest of each key, in as many
// requests as the key names need. The digest of a key too big to digest in
// one go is "": CompleteDigests fills it in.
func (s *Store) Summaries(ctx context.Context, keys [][]byte) ([]Summary, error) {
	out := make([]Summary, 0, len(keys))
	overhead := keysOverhead(digestScript, 2)
	for _, part := range splitKeys(keys, s.MaxRequest, overhead) {
		if len(part) == 1 && s.MaxRequest > 0 && overhead+argLen(part[0]) > s.MaxRequest {
			// A key whose name alone is over the request budget cannot be
			// asked about: unknown, so it compares different, and the copy
			// that follows reports it by name (and does not stop a resync).
			out = append(out, Summary{Type: "unknown", Digest: unknownDigest})
			continue
		}
		var sums []Summary
		err := s.run(func(o ops) (err error) { sums, err = o.summaries(ctx, part, s.Limits); return err })
		if err != nil {
			return nil, fmt.Errorf("%s: digest %d keys: %w", s.Name, len(part), err)
		}
		out = append(out, sums...)
	}
	return out, nil
}

// Exists says which keys exist.
func (s *Store) Exists(ctx context.Context, keys [][]byte) ([]bool, error) {
	out := make([]bool, 0, len(keys))
	for _, part := range splitKeys(keys, s.MaxRequest, keysOverhead(existsScript, 0)) {
		var ex []bool
		err := s.run(func(o ops) (err error) { ex, err = o.exists(ctx, part); return err })
		if err != nil {
			return nil, fmt.Errorf("%s: exists: %w", s.Name, err)
		}
		out = append(out, ex...)
	}
	return out, nil
}

// Scan is one step of a SCAN over the namespace: the next cursor ("0" at the
// end) and the keys found, staging keys left out.
func (s *Store) Scan(ctx context.Context, cursor string, count int) (string, [][]byte, error) {
	var next string
	var keys [][]byte
	err := s.run(func(o ops) (err error) {
		next, keys, err = o.scan(ctx, cursor, MatchPattern(s.Prefix), count)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("%s: scan: %w", s.Name, err)
	}
	out := keys[:0]
	for _, k := range keys {
		if !IsStaging(s.Prefix, k) {
			out = append(out, k)
		}
	}
	return next, out, nil
}

// Fits says whether st can be written in one request (Apply); if not, it
// is copied in chunks (CopyBig).
func (s *Store) Fits(st *State) bool {
	if st.Big {
		return false
	}
	return s.MaxRequest <= 0 || s.applyOverhead(1)+st.applyLen() <= s.MaxRequest
}

// applyOverhead is the size of an apply request of n keys besides their
// states (applyBase is computed once: it is asked for every key written).
func (s *Store) applyOverhead(n int) int { return s.applyBase + intLen(int64(n)) }

// Apply writes states (none of them Big), each atomically, packing as many
// keys into each request as MaxRequest allows. A state with Expect is
// written only if the key still holds that digest (scripts only: plain
// commands write unconditionally). A state that alone does not fit (see
// Fits) is an error. Write is Apply with what it did told back, and big
// keys.
//
// Keys of a type plain commands cannot write (a stream) are carried with
// DUMP and RESTORE from the peer they were read on where this side accepts
// it (plain_dump.go); otherwise they are left out and named in an
// *UnsupportedError, returned once every other key is written.
func (s *Store) Apply(ctx context.Context, states []State) error {
	_, _, err := s.apply(ctx, states, nil)
	return err
}

// apply is Apply publishing mark (WriteMark) in each write request, in the
// same atomic step, after its writes. It says whether every request
// published it (not on plain commands, which cannot write and publish in
// one step, nor where the side refuses PUBLISH), and which states it
// skipped (their Expect not met), by index.
func (s *Store) apply(ctx context.Context, states []State, mark []byte) (marked bool, skipped []int, err error) {
	var left unsupportedKeys
	all := states
	marked = mark != nil
	for at := 0; at < len(all); {
		states := all[at:]
		n, size := 0, 0
		for n < len(states) {
			l := states[n].applyLen()
			if s.MaxRequest > 0 && s.applyOverhead(n+1)+size+l > s.MaxRequest {
				break
			}
			size += l
			n++
		}
		if n == 0 {
			return false, nil, webdis.WithKind(fmt.Errorf("%s: key %q does not fit in one request of max_request_bytes=%d", s.Name, states[0].Key, s.MaxRequest), webdis.ErrTooLarge)
		}
		part := states[:n]
		var ok bool
		var sk []int
		err := s.run(func(o ops) (err error) { ok, sk, err = o.apply(ctx, s.Prefix, part, mark); return err })
		marked = marked && ok
		if err != nil && !left.add(err) {
			return false, nil, fmt.Errorf("%s: write %d keys: %w", s.Name, n, err)
		}
		for _, i := range sk {
			skipped = append(skipped, at+i)
		}
		at += n
	}
	return marked, skipped, s.carryLeft(ctx, all, &left)
}

// WriteMark is the channel a write marked token publishes to on a side
// whose keyspace events of db are listened to for namespace prefix: the
// keyspace channel of a staging key, so that the link's own subscription
// receives it after the write's events (ParseWriteMark reads it back).
func WriteMark(db int, prefix []byte, token uint64) []byte {
	m := []byte(dedup.KeyspaceChannel(db))
	m = append(append(append(m, prefix...), dedup.StagingMark...), dedup.WriteMarkTag...)
	return strconv.AppendUint(m, token, 10)
}

// ParseWriteMark is the token of key (a keyspace channel without its
// "__keyspace@db__:" part) if it is a write mark of namespace prefix.
func ParseWriteMark(prefix, key []byte) (uint64, bool) {
	if !IsStaging(prefix, key) {
		return 0, false
	}
	rest, ok := bytes.CutPrefix(key[len(prefix)+len(stagingMark):], []byte(dedup.WriteMarkTag))
	if !ok {
		return 0, false
	}
	t, err := strconv.ParseUint(string(rest), 10, 64)
	return t, err == nil
}

// markReserve is the room a request keeps for a write mark: the longest
// WriteMark of the namespace.
func markReserve(prefix []byte) int {
	return argLen(WriteMark(math.MaxInt32, prefix, math.MaxUint64))
}

// intLen is the length of n in decimal, as a request carries it (digits
// and '-' need no percent-encoding).
func intLen(n int64) int {
	l, u := 1, uint64(n)
	if n < 0 {
		l, u = 2, -u
	}
	for ; u >= 10; u /= 10 {
		l++
	}
	return l
}

// keysOverhead is the size of a request of sc with nargs numeric arguments
// besides its keys.
func keysOverhead(sc *Script, nargs int) int {
	args := [][]byte{[]byte("999999")}
	for range nargs {
		args = append(args, []byte("9999999999"))
	}
	return sc.evalLen(args...)
}

// argLen is what arg adds to a request: a separator and its encoding.
func argLen(arg []byte) int { return 1 + webdis.EncodedLen(arg) }

// splitKeys cuts keys into runs whose request, of overhead bytes besides
// the keys, stays within budget (0 = no limit).
func splitKeys(keys [][]byte, budget, overhead int) [][][]byte {
	if budget <= 0 || len(keys) == 0 {
		return [][][]byte{keys}
	}
	var parts [][][]byte
	start, size := 0, overhead
	for i, k := range keys {
		l := argLen(k)
		if size+l > budget && i > start {
			parts = append(parts, keys[start:i])
			start, size = i, overhead
		}
		size += l
	}
	return append(parts, keys[start:])
}

// MatchPattern is the SCAN MATCH / PSUBSCRIBE pattern for keys starting with
// prefix: its glob characters escaped, then '*'.
func MatchPattern(prefix []byte) []byte { return append(GlobEscape(prefix), '*') }

// GlobEscape is a pattern matching exactly s: its glob characters escaped.
func GlobEscape(s []byte) []byte {
	p := make([]byte, 0, len(s)+8)
	for _, b := range s {
		switch b {
		case '*', '?', '[', ']', '\\':
			p = append(p, '\\')
		}
		p = append(p, b)
	}
	return p
}

// stagingMark follows the namespace in the name of a staging key
// (dedup.StagingMark): links ignore such keys.
var stagingMark = []byte(dedup.StagingMark)

// LegacyCanaryKey is the key older links wrote in namespace prefix to prove
// that keyspace events flow. It is a staging key by name, so links never
// replicate it and resyncs never compare it; a link starting deletes it
// (link: health.go). The canary of a link lives outside every namespace
// (config.Link.CanaryKey).
func LegacyCanaryKey(prefix []byte) []byte {
	k := append(append([]byte{}, prefix...), stagingMark...)
	return append(k, dedup.LegacyCanaryTag...)
}

// IsStaging says whether key is a staging key of namespace prefix.
func IsStaging(prefix, key []byte) bool {
	return bytes.HasPrefix(key, prefix) && bytes.HasPrefix(key[len(prefix):], stagingMark)
}
