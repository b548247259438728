package store

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

// evalOps runs each operation as one of the Lua scripts of scripts.go: one
// EVAL is atomic on the server, holds many keys, and returns a flat reply.
type evalOps struct {
	do Doer
	// noMSET: the side refused MSET (an ACL, Webdis's disabled list), so
	// batches of plain strings go through the apply script too.
	noMSET *atomic.Bool
}

// eval runs a script by its SHA, sending its source when the server lacks it
// (first use, or after a restart emptied its script cache).
func (e evalOps) eval(ctx context.Context, sc *Script, keys [][]byte, args ...[]byte) (any, error) {
	cmd := make([][]byte, 0, 3+len(keys)+len(args))
	cmd = append(cmd, []byte("EVALSHA"), []byte(sc.SHA), []byte(strconv.Itoa(len(keys))))
	cmd = append(cmd, keys...)
	cmd = append(cmd, args...)
	v, err := e.do.Do(ctx, cmd...)
	if err != nil && isNoScript(err) {
		cmd[0], cmd[1] = []byte("EVAL"), []byte(sc.Src)
		v, err = e.do.Do(ctx, cmd...)
	}
	return v, err
}

func isNoScript(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT")
}

func itoa(n int) []byte { return strconv.AppendInt(nil, int64(n), 10) }

func (e evalOps) read(ctx context.Context, keys [][]byte, lim Limits) ([]State, error) {
	reply, err := e.eval(ctx, readScript, keys, itoa(lim.MaxElems), itoa(lim.MaxBytes), itoa(lim.MaxBatchBytes))
	if err != nil {
		return nil, err
	}
	return parseStates(keys, reply)
}

func (e evalOps) summaries(ctx context.Context, keys [][]byte, lim Limits) ([]Summary, error) {
	reply, err := e.eval(ctx, digestScript, keys, itoa(lim.MaxElems), itoa(lim.MaxBytes))
	if err != nil {
		return nil, err
	}
	return parseSummaries(len(keys), reply)
}

func (e evalOps) scan(ctx context.Context, cursor string, match []byte, count int) (string, [][]byte, error) {
	reply, err := e.eval(ctx, scanScript, nil, []byte(cursor), match, itoa(count))
	if err != nil {
		return "", nil, err
	}
	vs, err := redis.ByteSlices(reply, nil)
	if err != nil || len(vs) == 0 {
		return "", nil, errors.New("bad reply")
	}
	return string(vs[0]), vs[1:], nil
}

func (e evalOps) exists(ctx context.Context, keys [][]byte) ([]bool, error) {
	reply, err := e.eval(ctx, existsScript, keys)
	if err != nil {
		return nil, err
	}
	vs, err := redis.ByteSlices(reply, nil)
	if err != nil || len(vs) != len(keys) {
		return nil, errors.New("bad reply")
	}
	out := make([]bool, len(vs))
	for i, v := range vs {
		out[i] = bytes.Equal(v, []byte("1"))
	}
	return out, nil
}

// apply sends applyScript, or casApplyScript when a state has a condition,
// publishing mark after the writes when it is not nil. A batch of strings
// without expiry, condition or mark, the common case of a burst in push
// mode, is one MSET instead: as atomic, with two arguments per key instead
// of five and no script to run (the namespace is checked here, before
// anything is sent).
func (e evalOps) apply(ctx context.Context, prefix []byte, states []State, mark []byte) (bool, []int, error) {
	if mark == nil && !e.noMSET.Load() && msetable(states) {
		args := make([][]byte, 0, 1+2*len(states))
		args = append(args, []byte("MSET"))
		for i := range states {
			if !bytes.HasPrefix(states[i].Key, prefix) {
				return false, nil, fmt.Errorf("key %q is outside the namespace %q", states[i].Key, prefix)
			}
			args = append(args, states[i].Key, states[i].Elems[0])
		}
		_, err := e.do.Do(ctx, args...)
		if err == nil || !errors.Is(webdis.Classify(err), webdis.ErrRefused) {
			return false, nil, err
		}
		// Refused, before anything was written: the script writes
		// strings as well, from now on.
		e.noMSET.Store(true)
	}
	keys := make([][]byte, len(states))
	nargs := 2
	conditional := false
	for i := range states {
		keys[i] = states[i].Key
		nargs += 4 + len(states[i].Elems)
		conditional = conditional || states[i].Expect != ""
	}
	args := make([][]byte, 0, nargs)
	args = append(args, prefix, mark)
	script := applyScript
	if conditional {
		script = casApplyScript
		for i := range states {
			args = append(args, []byte(states[i].Expect))
		}
	}
	// The numbers of all states share one buffer (20 digits at most each).
	nums := make([]byte, 0, 40*len(states))
	for i := range states {
		st := &states[i]
		at := len(nums)
		nums = strconv.AppendInt(nums, st.ExpireAt, 10)
		mid := len(nums)
		nums = strconv.AppendInt(nums, int64(len(st.Elems)), 10)
		args = append(args, []byte(st.Type), nums[at:mid:mid], nums[mid:len(nums):len(nums)])
		args = append(args, st.Elems...)
	}
	reply, err := e.eval(ctx, script, keys, args...)
	if err != nil {
		return false, nil, err
	}
	out, err := redis.Strings(reply, nil)
	if err != nil || len(out) == 0 {
		return false, nil, errors.New("bad reply")
	}
	var skipped []int
	for _, v := range out[1:] {
		if i, err := strconv.Atoi(v); err == nil && i >= 1 && i <= len(states) {
			skipped = append(skipped, i-1)
		}
	}
	return out[0] == "1", skipped, nil
}

// msetable says whether states can be written by one MSET: strings without
// expiry, unconditional.
func msetable(states []State) bool {
	for i := range states {
		st := &states[i]
		if st.Type != "string" || st.ExpireAt != 0 || st.Expect != "" || len(st.Elems) != 1 {
			return false
		}
	}
	return len(states) > 0
}

func (e evalOps) chunk(ctx context.Context, key []byte, ty, cursor string, count int) (Chunk, error) {
	reply, err := e.eval(ctx, chunkScript, [][]byte{key}, []byte(ty), []byte(cursor), itoa(count))
	if err != nil {
		return Chunk{}, err
	}
	vs, err := redis.ByteSlices(reply, nil)
	if err != nil || len(vs) == 0 || ty == "stream" && len(vs) < 2 {
		return Chunk{}, errors.New("bad reply")
	}
	c := Chunk{Next: string(vs[0]), Elems: vs[1:]}
	if ty == "stream" {
		c.LastID, c.Elems = string(vs[1]), vs[2:]
	}
	return c, nil
}

func (e evalOps) hashChunk(ctx context.Context, key []byte, ty, cursor string, count int) (HashChunk, error) {
	reply, err := e.eval(ctx, hashChunkScript, [][]byte{key}, []byte(ty), []byte(cursor), itoa(count))
	if err != nil {
		return HashChunk{}, err
	}
	vs, err := redis.Strings(reply, nil)
	if err != nil || len(vs) == 0 || ty == "stream" && len(vs) < 2 || unordered(ty) && len(vs) != 4 {
		return HashChunk{}, errors.New("bad reply")
	}
	c := HashChunk{Next: vs[0], Hashes: vs[1:]}
	switch {
	case ty == "stream":
		c.LastID, c.Hashes = vs[1], vs[2:]
	case unordered(ty):
		c.Hashes = nil
		if c.Sum, err = parseElemSum(vs[1], vs[2]); err != nil {
			return HashChunk{}, err
		}
		if c.Card, err = strconv.ParseInt(vs[3], 10, 64); err != nil {
			return HashChunk{}, errors.New("bad reply")
		}
	}
	return c, nil
}

func (e evalOps) stringHash(ctx context.Context, key []byte, max int64) (string, error) {
	reply, err := e.eval(ctx, stringHashScript, [][]byte{key}, strconv.AppendInt(nil, max, 10))
	if err != nil {
		return "", err
	}
	h, err := redis.String(reply, nil)
	if err != nil {
		return "", fmt.Errorf("bad reply: %w", err)
	}
	return h, nil
}

func (e evalOps) stage(ctx context.Context, prefix, tmp []byte, ty string, elems [][]byte) error {
	args := make([][]byte, 0, 3+len(elems))
	args = append(args, prefix, []byte(ty))
	if ty == "stream" {
		args = append(args, nil) // the last-id slot: set by finish
	}
	_, err := e.eval(ctx, stageScript, [][]byte{tmp}, append(args, elems...)...)
	return err
}

func (e evalOps) finish(ctx context.Context, prefix, tmp, key []byte, exp int64, lastID string) error {
	_, err := e.eval(ctx, finishScript, [][]byte{tmp, key}, prefix, strconv.AppendInt(nil, exp, 10), []byte(lastID))
	return err
}
