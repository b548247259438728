package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// maxPlainArgs bounds the elements of one plain write command.
const maxPlainArgs = 1 << 16

// Writes in plain mode (see plainOps in plain_read.go): every key is
// written atomically. A string is one SET (with PXAT when it expires: SET
// without KEEPTTL clears an old TTL). A hash, list, set or sorted set is
// built in a staging key, given its final TTL (PEXPIREAT, or PERSIST), then
// RENAMEd into place: RENAME is atomic and carries the TTL. A delete is one
// DEL. Plain commands cannot check and write in one step: a state's Expect
// is not checked, the write is unconditional, as in push mode.

// apply writes each key on its own, atomically. It checks every key is in
// the namespace before writing any; a key of a type plain commands cannot
// write is left out, and the error naming it is returned once the others
// are written. It publishes no mark: plain commands cannot write and
// publish in one step.
func (p plainOps) apply(ctx context.Context, prefix []byte, states []State, _ []byte) (bool, []int, error) {
	return false, nil, p.applyAll(ctx, prefix, states)
}

func (p plainOps) applyAll(ctx context.Context, prefix []byte, states []State) error {
	for i := range states {
		if !bytes.HasPrefix(states[i].Key, prefix) {
			return fmt.Errorf("key %q is outside the namespace %q", states[i].Key, prefix)
		}
	}
	var left unsupportedKeys
	for i := range states {
		st := &states[i]
		if err := p.applyOne(ctx, prefix, st); err != nil && !left.add(err) {
			return fmt.Errorf("key %q: %w", st.Key, err)
		}
	}
	if len(left.keys) > 0 {
		return unsupported(left.ty, left.keys...)
	}
	return nil
}

// applyOne writes one state, atomically.
func (p plainOps) applyOne(ctx context.Context, prefix []byte, st *State) (err error) {
	switch st.Type {
	case "none":
		_, err = p.doKey(ctx, "DEL", st.Key)
		return err
	case "string":
		if len(st.Elems) != 1 {
			return fmt.Errorf("a string state with %d elements", len(st.Elems))
		}
		args := [][]byte{st.Elems[0]}
		if st.ExpireAt > 0 {
			// An expiry in the past deletes the key, as PEXPIREAT would.
			args = append(args, []byte("PXAT"), strconv.AppendInt(nil, st.ExpireAt, 10))
		}
		_, err = p.doKey(ctx, "SET", st.Key, args...)
		return err
	case "hash", "list", "set", "zset":
	default:
		return unsupported(st.Type, st.Key)
	}
	if len(st.Elems) == 0 {
		// Redis holds no empty collection: applyScript deletes the key.
		_, err = p.doKey(ctx, "DEL", st.Key)
		return err
	}
	tmp := stagingKeyFor(prefix, st.Key)
	defer func() {
		if err != nil {
			_, _ = p.doKey(context.WithoutCancel(ctx), "DEL", tmp)
		}
	}()
	if err := p.add(ctx, tmp, st.Type, st.Elems, true); err != nil {
		return err
	}
	return p.move(ctx, tmp, st.Key, st.ExpireAt)
}

// add adds elems (laid out as in State) to key k of type ty, in as many
// commands as the request budget needs, and gives k the staging TTL: after
// the first command when once is set, else after the last.
func (p plainOps) add(ctx context.Context, k []byte, ty string, elems [][]byte, once bool) error {
	cmd, step := map[string]string{"string": "APPEND", "hash": "HSET", "list": "RPUSH", "set": "SADD", "zset": "ZADD"}[ty], 1
	if ty == "hash" || ty == "zset" {
		step = 2
	}
	if cmd == "" {
		return fmt.Errorf("no plain write for type %q", ty)
	}
	if len(elems)%step != 0 {
		return fmt.Errorf("%d elements for type %s", len(elems), ty)
	}
	overhead := webdis.CommandLen([]byte(cmd), k)
	budget := p.budget
	if budget <= 0 {
		budget = noLimitRequest
	}
	expire := func() error {
		_, err := p.doKey(ctx, "PEXPIRE", k, []byte(stagingTTL))
		return err
	}
	args := make([][]byte, 0, 64)
	size, sent := overhead, 0
	send := func() error {
		if len(args) == 0 {
			return nil
		}
		if _, err := p.doKey(ctx, cmd, k, args...); err != nil {
			return err
		}
		if sent++; once && sent == 1 {
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
			l += argLen(e)
		}
		if overhead+l > budget {
			return webdis.WithKind(fmt.Errorf("an element of %d bytes does not fit in one request of %d bytes", l, budget), webdis.ErrTooLarge)
		}
		if size+l > budget || len(args)+step > maxPlainArgs || ty == "string" {
			if err := send(); err != nil {
				return err
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
		return err
	}
	if !once {
		return expire()
	}
	return nil
}

// move gives staging key tmp the final expiry (PEXPIREAT, or PERSIST) and
// renames it over key: one atomic step, as RENAME carries the TTL. An expiry
// already past deletes tmp; key is then deleted too, as the state says.
func (p plainOps) move(ctx context.Context, tmp, key []byte, exp int64) error {
	var err error
	if exp > 0 {
		_, err = p.doKey(ctx, "PEXPIREAT", tmp, strconv.AppendInt(nil, exp, 10))
	} else {
		_, err = p.doKey(ctx, "PERSIST", tmp)
	}
	if err != nil {
		return err
	}
	_, err = p.doKey(ctx, "RENAME", tmp, key)
	var re redis.Error
	if exp > 0 && errors.As(err, &re) && strings.Contains(string(re), "no such key") {
		_, err = p.doKey(ctx, "DEL", key)
	}
	return err
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

// stage is stageScript: elems added to staging key tmp, whose TTL is then
// set to the staging TTL.
func (p plainOps) stage(ctx context.Context, prefix, tmp []byte, ty string, elems [][]byte) error {
	if err := checkNamespace(prefix, tmp); err != nil {
		return err
	}
	if ty == "stream" {
		return unsupported(ty)
	}
	return p.add(ctx, tmp, ty, elems, false)
}

// finish is finishScript: staging key tmp moved into place as key,
// expiring at exp.
func (p plainOps) finish(ctx context.Context, prefix, tmp, key []byte, exp int64, lastID string) error {
	if err := checkNamespace(prefix, tmp, key); err != nil {
		return err
	}
	if lastID != "" {
		return unsupported("stream", key)
	}
	n, err := redis.Int(p.doKey(ctx, "EXISTS", tmp))
	if err != nil {
		return err
	}
	if n == 0 {
		return redis.Error("ERR redisrepl: staging key vanished")
	}
	return p.move(ctx, tmp, key, exp)
}
