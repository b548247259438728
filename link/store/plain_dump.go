package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// DUMP and RESTORE carry what plain commands cannot: a stream (XRANGE's
// reply is nested, which Webdis's raw format drops) and module types, to and
// from a side that refuses scripts. DUMP's reply is one bulk string, which
// the raw format passes; RESTORE key exp payload REPLACE ABSTTL writes the
// whole key in one atomic command, byte-exact for every type: a stream's
// entries, IDs, last-generated-id and consumer groups (the source's: unlike
// the scripts, which keep the far side's groups at their place). A key is
// carried whole, so its payload must fit in one request of the side
// written (max_request_bytes, after percent-encoding); a bigger one is
// reported by name.
//
// It works only where the side written accepts RESTORE of the other side's
// payloads: an ACL may refuse it (RESTORE is @dangerous), a Webdis may
// disable it, and a payload of a newer RDB version than the server's is
// refused ("DUMP payload version or checksum are wrong"). Each side checks
// this once (restoreAllowed), with the payload of a tiny staging key dumped
// on the other side and restored on a staging key of its own. Where it is
// refused, such keys are reported by name once per attempt, as before
// (*UnsupportedError).
//
// A stream on a side that refuses scripts cannot be read there, so it is
// digested on the other side: its payload is restored into a staging key
// there (links ignore staging keys), digested by the scripts, and deleted.
// That side must run scripts and accept the payload.

// Pair makes a and b the two sides of one link: each is the source of the
// payloads the other restores, and the place where a stream the other
// cannot read is digested. Open pairs the sides it opens.
func Pair(a, b *Store) { a.peer, b.peer = b, a }

// restoreCheck remembers whether a side accepts RESTORE of its peer's
// payloads: decided once, by the first check that gets an answer.
type restoreCheck struct {
	mu      sync.Mutex
	decided bool
	ok      bool
	why     string // the refusal, when not ok
}

// probeValue is what the check dumps and restores.
const probeValue = "redisrepl RESTORE check"

// restoreAllowed says whether s accepts RESTORE of payloads DUMPed on its
// peer. The answer is kept; an error that is no answer (the network) is
// returned and the check is made again next time.
func (s *Store) restoreAllowed(ctx context.Context) (bool, error) {
	if s.peer == nil {
		return false, nil
	}
	r := &s.restore
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.decided {
		return r.ok, nil
	}
	refused := func(what string, err error) (bool, error) {
		r.decided, r.ok, r.why = true, false, what+": "+err.Error()
		return false, nil
	}
	src := s.peer
	probe := stagingKey(src.Prefix)
	if _, err := src.do.Do(ctx, []byte("SET"), probe, []byte(probeValue), []byte("PX"), []byte("60000")); err != nil {
		return s.answer(err, refused, "SET on "+src.Name)
	}
	payload, err := redis.Bytes(src.do.Do(ctx, []byte("DUMP"), probe))
	_, _ = src.do.Do(context.WithoutCancel(ctx), []byte("DEL"), probe)
	if err != nil {
		return s.answer(err, refused, "DUMP on "+src.Name)
	}
	tmp := stagingKey(s.Prefix)
	_, err = s.do.Do(ctx, []byte("RESTORE"), tmp, []byte("60000"), payload, []byte("REPLACE"))
	if err != nil {
		return s.answer(err, refused, "RESTORE")
	}
	v, err := redis.Bytes(s.do.Do(ctx, []byte("GET"), tmp))
	_, _ = s.do.Do(context.WithoutCancel(ctx), []byte("DEL"), tmp)
	if err != nil {
		return false, err
	}
	if string(v) != probeValue {
		return refused("RESTORE", fmt.Errorf("restored %q, not what was dumped", v))
	}
	r.decided, r.ok = true, true
	return true, nil
}

// answer turns err into the check's answer: a refusal by the server (an
// error reply: an ACL's NOPERM, an unknown command, a payload of an RDB
// version it cannot read) or by Webdis (HTTP 403) is a "no", kept; any other
// error is no answer.
func (s *Store) answer(err error, refused func(string, error) (bool, error), what string) (bool, error) {
	// A passing state of the server (loading its data, busy with a
	// script, out of memory for now) is no answer about RESTORE.
	err = webdis.Classify(err)
	var re redis.Error
	if errors.As(err, &re) && !errors.Is(err, webdis.ErrTransient) || errors.Is(err, webdis.ErrRefused) {
		return refused(what, err)
	}
	return false, err
}

// restoreRefusal is why s does not accept RESTORE, "" if it does or nobody
// asked yet.
func (s *Store) restoreRefusal() string {
	s.restore.mu.Lock()
	defer s.restore.mu.Unlock()
	return s.restore.why
}

// carriesByDump says whether keys plain commands cannot carry (streams)
// travel from src to dst with DUMP and RESTORE: dst accepts src's payloads.
func carriesByDump(ctx context.Context, src, dst *Store) (bool, error) {
	if dst.peer != src {
		return false, nil
	}
	return dst.restoreAllowed(ctx)
}

// restoreFrom writes key on s as src holds it now, with DUMP on src and
// RESTORE … REPLACE ABSTTL on s, expiring at exp (0 = never). A key src no
// longer holds is left alone: its own event follows. A payload that does
// not fit in one request of s is an *UnsupportedError naming the key.
func (s *Store) restoreFrom(ctx context.Context, src *Store, key []byte, exp int64) error {
	if err := checkNamespace(s.Prefix, key); err != nil {
		return err
	}
	payload, err := redis.Bytes(src.do.Do(ctx, []byte("DUMP"), key))
	if err == redis.ErrNil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: DUMP key %q: %w", src.Name, key, err)
	}
	args := [][]byte{[]byte("RESTORE"), key, strconv.AppendInt(nil, max(exp, 0), 10), payload, []byte("REPLACE"), []byte("ABSTTL")}
	if n := webdis.CommandLen(args...); s.MaxRequest > 0 && n > s.MaxRequest {
		return &UnsupportedError{Keys: [][]byte{key}, ty: "",
			why: fmt.Sprintf("its DUMP payload (%d bytes, %d encoded) does not fit in one request of max_request_bytes=%d, and this side refuses scripts (EVAL), which copy it in chunks", len(payload), n, s.MaxRequest)}
	}
	if _, err := s.do.Do(ctx, args...); err != nil {
		return fmt.Errorf("%s: RESTORE key %q: %w", s.Name, key, err)
	}
	return nil
}

// carryLeft writes with DUMP and RESTORE the states that Apply left out
// (a stream or a module type on a side running plain commands), when they
// came from s's peer and s accepts its payloads. It returns the keys still
// left out, as an error.
func (s *Store) carryLeft(ctx context.Context, states []State, left *unsupportedKeys) error {
	if len(left.keys) == 0 {
		return nil
	}
	ok, err := carriesByDump(ctx, s.peer, s)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	if !ok {
		return left.err(s.Name, s.restoreRefusal())
	}
	exp := make(map[string]int64, len(left.keys))
	for i := range states {
		exp[string(states[i].Key)] = states[i].ExpireAt
	}
	var still unsupportedKeys
	for _, k := range left.keys {
		err := s.restoreFrom(ctx, s.peer, k, exp[string(k)])
		if err != nil && !still.add(err) {
			return err
		}
	}
	return still.err(s.Name, "")
}

// copyByDump copies key with DUMP and RESTORE where that is the way, or
// the better one: a stream to or from a side running plain commands, a hash
// or a set read by plain commands (which read it whole; its payload is
// smaller), when dst accepts src's payloads and the payload fits. It says
// whether it took the key.
func copyByDump(ctx context.Context, src, dst *Store, key []byte, ty string, exp int64) (bool, error) {
	plainSrc, plainDst := src.Path() == PathPlain, dst.Path() == PathPlain
	stream := ty == "stream" && (plainSrc || plainDst)
	whole := plainSrc && unordered(ty)
	if !stream && !whole {
		return false, nil
	}
	ok, err := carriesByDump(ctx, src, dst)
	if err != nil || !ok {
		if err == nil && stream {
			err = unsupported(ty, key).because(dst.restoreRefusal())
		}
		return stream, err
	}
	if whole {
		// Only if the key likely fits one request (MEMORY USAGE is about its
		// payload's size or more), so that neither this process nor a
		// RESTORE holds more than a request's worth.
		budget := dst.MaxRequest
		if budget <= 0 {
			budget = noLimitRequest
		}
		n, err := redis.Int64(src.do.Do(ctx, []byte("MEMORY"), []byte("USAGE"), key))
		if err != nil || n > int64(budget) {
			return false, nil
		}
	}
	err = dst.restoreFrom(ctx, src, key, exp)
	if whole && errors.As(err, new(*UnsupportedError)) {
		return false, nil // too big after all: in chunks
	}
	return true, err
}

// digestByPeer is the digest of a key s cannot read (a stream, on a side
// running plain commands): its payload restored into a staging key of the
// peer, which runs scripts, digested there, and deleted.
func (s *Store) digestByPeer(ctx context.Context, key []byte, ty string) (string, error) {
	p := s.peer
	ok, err := carriesByDump(ctx, s, p)
	if err != nil {
		return "", err
	}
	if !ok || p.Path() != PathEval {
		return "", fmt.Errorf("%s: %w", s.Name, unsupported(ty, key).because(p.restoreRefusal()))
	}
	payload, err := redis.Bytes(s.do.Do(ctx, []byte("DUMP"), key))
	if err == redis.ErrNil {
		return NoneDigest, nil // gone: the key's own event follows
	}
	if err != nil {
		return "", fmt.Errorf("%s: DUMP key %q: %w", s.Name, key, err)
	}
	tmp := stagingKey(p.Prefix)
	defer func() { _, _ = p.do.Do(context.WithoutCancel(ctx), []byte("DEL"), tmp) }()
	if _, err := p.do.Do(ctx, []byte("RESTORE"), tmp, []byte(stagingTTL), payload, []byte("REPLACE")); err != nil {
		return "", fmt.Errorf("%s: RESTORE key %q to digest it: %w", p.Name, key, err)
	}
	sums, err := p.Summaries(ctx, [][]byte{tmp})
	if err != nil {
		return "", err
	}
	if sums[0].Digest != "" || sums[0].Type == "none" {
		return sums[0].Digest, nil
	}
	return p.BigDigest(ctx, tmp, sums[0].Type)
}
