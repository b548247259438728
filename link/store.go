package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// Doer sends one command to a Redis and returns its reply as redigo does
// (an error reply as a redis.Error error). The remote side's Doer is a
// *webdis.Client; the local side's wraps a redigo pool (local.go).
type Doer interface {
	Do(ctx context.Context, args ...[]byte) (any, error)
}

// Store is one side of a link: the namespace of one Redis, read and written
// whole keys at a time with the scripts of scripts.go. The same code serves
// both sides; only the Doer differs.
//
// When the side refuses scripts (a Webdis ACL that disables EVAL), the store
// switches once, for good, to plain commands (plain.go): same results, each
// key still written atomically, but slower, reads not atomic, and streams
// not supported. Path tells which path is in use.
type Store struct {
	Name   string // "local" or "remote", for messages
	Do     Doer
	Prefix []byte // the namespace

	// MaxRequest is the largest request body the side accepts, in encoded
	// bytes (Webdis behind nginx: client_max_body_size); 0 = no limit.
	MaxRequest int
	// MaxElems and MaxBytes bound what one read returns for one key; a
	// bigger key is copied in chunks (bigkey.go). MaxBatchBytes bounds a
	// whole read: the keys past it are deferred.
	MaxElems, MaxBytes, MaxBatchBytes int

	// OnFallback, if set, is called once, when the store switches to plain
	// commands because the side refused a script with err.
	OnFallback func(err error)

	plain atomic.Bool // scripts refused: plain commands only (plain.go)
}

// Path is how the store reads and writes: "eval" (Lua scripts: atomic reads
// and writes, many keys per request) or "plain" (plain commands, the
// fallback when scripts are refused).
func (s *Store) Path() string {
	if s.plain.Load() {
		return "plain"
	}
	return "eval"
}

// Eval runs a script by its SHA, loading it on first use (or after the
// server lost its script cache, e.g. a restart). When the side refuses
// scripts, the store falls back to plain commands for good, and Eval runs
// the script's plain equivalent (emulate), which gives the same reply.
func (s *Store) Eval(ctx context.Context, sc *Script, keys [][]byte, args ...[]byte) (any, error) {
	if s.plain.Load() {
		return s.emulate(ctx, sc, keys, args)
	}
	v, err := s.evalScript(ctx, sc, keys, args)
	if err != nil && isForbidden(err) {
		s.toPlain(err)
		return s.emulate(ctx, sc, keys, args)
	}
	return v, err
}

func (s *Store) evalScript(ctx context.Context, sc *Script, keys, args [][]byte) (any, error) {
	cmd := make([][]byte, 0, 3+len(keys)+len(args))
	cmd = append(cmd, []byte("EVALSHA"), []byte(sc.SHA), []byte(strconv.Itoa(len(keys))))
	cmd = append(cmd, keys...)
	cmd = append(cmd, args...)
	v, err := s.Do.Do(ctx, cmd...)
	if err != nil && isNoScript(err) {
		cmd[0], cmd[1] = []byte("EVAL"), []byte(sc.Src)
		v, err = s.Do.Do(ctx, cmd...)
	}
	return v, err
}

// isForbidden says whether err is the side refusing the command itself:
// Webdis answers 403 to a command its ACL disables (EVAL, and EVALSHA, which
// an entry "EVAL" or "EVALSHA" both cover).
func isForbidden(err error) bool {
	return webdis.KindOf(err) == webdis.KindForbidden
}

// toPlain switches the store to plain commands, telling OnFallback once.
func (s *Store) toPlain(err error) {
	if s.plain.CompareAndSwap(false, true) && s.OnFallback != nil {
		s.OnFallback(err)
	}
}

func isNoScript(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT")
}

func (s *Store) limits() [][]byte {
	return [][]byte{[]byte(strconv.Itoa(s.MaxElems)), []byte(strconv.Itoa(s.MaxBytes))}
}

// Read reads the whole state of each key, atomically.
func (s *Store) Read(ctx context.Context, keys [][]byte) ([]State, error) {
	reply, err := s.Eval(ctx, readScript, keys, append(s.limits(), []byte(strconv.Itoa(max(s.MaxBatchBytes, s.MaxBytes))))...)
	if err != nil {
		return nil, fmt.Errorf("%s: read %d keys: %w", s.Name, len(keys), err)
	}
	st, err := parseStates(keys, reply)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	return st, nil
}

// Summaries returns type, expiry and digest of each key.
func (s *Store) Summaries(ctx context.Context, keys [][]byte) ([]Summary, error) {
	reply, err := s.Eval(ctx, digestScript, keys, s.limits()...)
	if err != nil {
		return nil, fmt.Errorf("%s: digest %d keys: %w", s.Name, len(keys), err)
	}
	sums, err := parseSummaries(len(keys), reply)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	return sums, nil
}

// Scan is one step of a SCAN over the namespace: the next cursor ("0" at the
// end) and the keys found, staging keys left out.
func (s *Store) Scan(ctx context.Context, cursor string, count int) (string, [][]byte, error) {
	reply, err := s.Eval(ctx, scanScript, nil, []byte(cursor), MatchPattern(s.Prefix), []byte(strconv.Itoa(count)))
	if err != nil {
		return "", nil, fmt.Errorf("%s: scan: %w", s.Name, err)
	}
	vs, err := redis.ByteSlices(reply, nil)
	if err != nil || len(vs) == 0 {
		return "", nil, fmt.Errorf("%s: scan: bad reply", s.Name)
	}
	keys := make([][]byte, 0, len(vs)-1)
	for _, k := range vs[1:] {
		if !IsStaging(s.Prefix, k) {
			keys = append(keys, k)
		}
	}
	return string(vs[0]), keys, nil
}

// Apply writes states (none of them Big), packing as many keys into each
// request as MaxRequest allows; each request is one atomic EVAL. It returns
// how many requests it sent. A state that alone is over MaxRequest is an
// error of kind errTooBig: the caller copies it in chunks instead.
//
// In plain mode (see Path) each key is written on its own, still atomically
// (applyPlain); a key of a type plain commands cannot write (a stream) is
// left out and named in an *unsupportedError, returned once every other key
// is written.
func (s *Store) Apply(ctx context.Context, states []State) (int, error) {
	requests := 0
	var left unsupportedKeys
	overhead := len(applyScript.SHA) + 32 + len(s.Prefix)*3
	for len(states) > 0 {
		if s.plain.Load() {
			n, err := s.applyPlain(ctx, states)
			requests += n
			if err != nil && !left.add(err) {
				return requests, err
			}
			break
		}
		n, size := 0, overhead
		for n < len(states) {
			l := states[n].applyLen()
			if s.MaxRequest > 0 && size+l > s.MaxRequest {
				break
			}
			size += l
			n++
		}
		if n == 0 {
			return requests, &tooBigError{key: states[0].Key}
		}
		// The script may be refused, and the store switch to plain mode,
		// during this request: it is then written in plain mode too.
		if err := s.apply(ctx, states[:n]); err != nil && !left.add(err) {
			return requests, err
		}
		requests++
		states = states[n:]
	}
	return requests, left.err(s.Name)
}

func (s *Store) apply(ctx context.Context, states []State) error {
	keys := make([][]byte, len(states))
	nargs := 1
	conditional := false
	for i := range states {
		keys[i] = states[i].Key
		nargs += 4 + len(states[i].Elems)
		conditional = conditional || states[i].Expect != ""
	}
	args := make([][]byte, 0, nargs)
	args = append(args, s.Prefix)
	script := applyScript
	if conditional {
		script = casApplyScript
		for i := range states {
			args = append(args, []byte(states[i].Expect))
		}
	}
	for i := range states {
		st := &states[i]
		args = append(args, []byte(st.Type), strconv.AppendInt(nil, st.ExpireAt, 10), strconv.AppendInt(nil, int64(len(st.Elems)), 10))
		args = append(args, st.Elems...)
	}
	reply, err := s.Eval(ctx, script, keys, args...)
	if err != nil {
		return fmt.Errorf("%s: write %d keys: %w", s.Name, len(keys), err)
	}
	if conditional {
		skipped, err := redis.Strings(reply, nil)
		if err != nil {
			return fmt.Errorf("%s: write %d keys: bad reply", s.Name, len(keys))
		}
		for _, v := range skipped {
			if i, err := strconv.Atoi(v); err == nil && i >= 1 && i <= len(states) {
				states[i-1].Skipped = true
			}
		}
	}
	return nil
}

type tooBigError struct{ key []byte }

func (e *tooBigError) Error() string {
	return fmt.Sprintf("key %q does not fit in one request", e.key)
}

// MatchPattern is the SCAN MATCH / PSUBSCRIBE pattern for keys starting with
// prefix: its glob characters escaped, then '*'.
func MatchPattern(prefix []byte) []byte {
	p := make([]byte, 0, len(prefix)+8)
	for _, b := range prefix {
		switch b {
		case '*', '?', '[', ']', '\\':
			p = append(p, '\\')
		}
		p = append(p, b)
	}
	return append(p, '*')
}

// stagingMark follows the namespace in the name of a staging key, the
// temporary key a big value is built in on the far side before it is renamed
// into place. Links ignore such keys: they are never replicated.
var stagingMark = []byte("\x00redisrepl-staging\x00")

// IsStaging says whether key is a staging key of namespace prefix.
func IsStaging(prefix, key []byte) bool {
	return bytes.HasPrefix(key, prefix) && bytes.HasPrefix(key[len(prefix):], stagingMark)
}
