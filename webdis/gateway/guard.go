package gateway

import (
	"fmt"
	"strconv"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
)

// Allocation guards (docs/ARCHITECTURE.md, "The hub gateway"): a request of
// a few bytes must not make the hub allocate or send hundreds of
// megabytes. guardArgs checks what the arguments alone tell (offsets,
// counts, spans); guardSizes asks the hub, under the tenant's user, the
// sizes a command will read (APPEND's string, MGET's values, LCS's
// strings) before it runs. A refusal is an error reply naming the limit,
// counted as reasonLimit.

const reasonLimit = "over a limit"

// limitError is the error reply of a request over a limit of l.
func limitError(field string, value int64) redis.Error {
	return redis.Error(fmt.Sprintf("ERR gateway: over the tenant's %s (%d)", field, value))
}

// guardArgs checks c's arguments against l; the error reply is nil if
// they pass. Malformed numbers pass: Redis answers them.
func guardArgs(c *command, l *config.Limits) *redis.Error {
	fail := func(field string, v int64) *redis.Error { e := limitError(field, v); return &e }
	args := c.args[1:]
	num := func(i int) (int64, bool) {
		if i >= len(args) {
			return 0, false
		}
		n, err := strconv.ParseInt(string(args[i]), 10, 64)
		return n, err == nil
	}
	switch c.name() {
	case "SETRANGE":
		if off, ok := num(1); ok && len(args) > 2 && off+int64(len(args[2])) > l.MaxValueBytes {
			return fail("max_value_bytes", l.MaxValueBytes)
		}
	case "SETBIT":
		if off, ok := num(1); ok && off/8+1 > l.MaxValueBytes {
			return fail("max_value_bytes", l.MaxValueBytes)
		}
	case "BITFIELD", "BITFIELD_RO":
		if bitfieldEnd(args) > l.MaxValueBytes {
			return fail("max_value_bytes", l.MaxValueBytes)
		}
	case "SRANDMEMBER", "ZRANDMEMBER", "HRANDFIELD", "SPOP":
		if n, ok := num(1); ok && (n > l.MaxElements || n < -l.MaxElements) {
			return fail("max_elements", l.MaxElements)
		}
	case "LRANGE", "ZRANGE", "ZREVRANGE", "ZRANGESTORE":
		i := 1
		if c.name() == "ZRANGESTORE" {
			i = 2
		}
		if !rankRange(args) {
			break
		}
		a, ok1 := num(i)
		b, ok2 := num(i + 1)
		// A span known from the indexes alone (both counted from the same
		// end); 0..-1 is bounded by the key's size and max_reply_bytes.
		if ok1 && ok2 && (a >= 0) == (b >= 0) && b-a+1 > l.MaxElements {
			return fail("max_elements", l.MaxElements)
		}
	case "SCAN", "SSCAN", "HSCAN", "ZSCAN":
		// A COUNT over scan_count is lowered to it: SCAN may always
		// return fewer keys, so the client sees no difference but speed.
		for i := 1; i+1 < len(args); i++ {
			if equalFold(args[i], "COUNT") {
				if n, ok := num(i + 1); ok && n > l.ScanCount {
					args[i+1] = strconv.AppendInt(nil, l.ScanCount, 10)
				}
			}
		}
	}
	return nil
}

// rankRange: a ZRANGE's indexes are ranks (no BYSCORE or BYLEX).
func rankRange(args [][]byte) bool {
	for _, a := range args {
		if equalFold(a, "BYSCORE") || equalFold(a, "BYLEX") {
			return false
		}
	}
	return true
}

// bitfieldEnd is the byte just past the last bit BITFIELD's GET, SET and
// INCRBY operations touch ("#n" offsets count in units of the type).
func bitfieldEnd(args [][]byte) int64 {
	var end int64
	for i := 1; i < len(args); i++ {
		n := 0
		switch {
		case equalFold(args[i], "GET"):
			n = 2
		case equalFold(args[i], "SET"), equalFold(args[i], "INCRBY"):
			n = 3
		case equalFold(args[i], "OVERFLOW"):
			i++
			continue
		default:
			continue
		}
		if i+2 >= len(args) {
			return end
		}
		ty, off := args[i+1], args[i+2]
		width, err := strconv.ParseInt(string(ty[min(1, len(ty)):]), 10, 64)
		if err != nil || width <= 0 {
			i += n
			continue
		}
		unit := int64(1)
		if len(off) > 0 && off[0] == '#' {
			off, unit = off[1:], width
		}
		o, err := strconv.ParseInt(string(off), 10, 64)
		if err == nil && o >= 0 {
			if o > 1<<50/unit {
				return 1 << 50
			}
			end = max(end, (o*unit+width)/8+1)
		}
		i += n
	}
	return end
}

// guardSizes asks the hub, on conn (the tenant's user), the sizes c will
// read or make, and refuses what l does not allow. The reply is nil if c
// passes; err is a failure to reach Redis.
func guardSizes(conn redis.Conn, c *command, l *config.Limits) (*redis.Error, error) {
	args := c.args[1:]
	fail := func(field string, v int64) (*redis.Error, error) { e := limitError(field, v); return &e, nil }
	switch c.name() {
	case "APPEND":
		if len(args) != 2 {
			return nil, nil
		}
		n, err := redis.Int64(conn.Do("STRLEN", args[0]))
		if err != nil {
			return nil, passRedisError(err)
		}
		if n+int64(len(args[1])) > l.MaxValueBytes {
			return fail("max_value_bytes", l.MaxValueBytes)
		}
	case "MGET", "HMGET":
		keys, cmd := args, "STRLEN"
		if c.name() == "HMGET" {
			if len(args) < 2 {
				return nil, nil
			}
			keys, cmd = args[1:], "HSTRLEN"
		}
		var total int64
		for _, k := range keys {
			if cmd == "STRLEN" {
				conn.Send(cmd, k)
			} else {
				conn.Send(cmd, args[0], k)
			}
		}
		if err := conn.Flush(); err != nil {
			return nil, err
		}
		var first error
		for range keys {
			n, err := redis.Int64(conn.Receive())
			if err != nil && first == nil {
				first = err
			}
			total += n + 16
		}
		if first != nil {
			return nil, passRedisError(first)
		}
		if total > l.MaxReplyBytes {
			return fail("max_reply_bytes", l.MaxReplyBytes)
		}
	case "LCS":
		if len(args) < 2 {
			return nil, nil
		}
		conn.Send("STRLEN", args[0])
		conn.Send("STRLEN", args[1])
		if err := conn.Flush(); err != nil {
			return nil, err
		}
		a, err1 := redis.Int64(conn.Receive())
		b, err2 := redis.Int64(conn.Receive())
		if err1 != nil || err2 != nil {
			return nil, passRedisError(firstErr(err1, err2))
		}
		if a > 0 && b > l.MaxLCSBytes/a {
			return fail("max_lcs_bytes", l.MaxLCSBytes)
		}
	}
	return nil, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// passRedisError: a Redis error to a size check (a wrong type, a key the
// tenant may not read) lets the command run, so that Redis gives its own
// answer; a failure to reach Redis stays an error.
func passRedisError(err error) error {
	if _, ok := err.(redis.Error); ok && !isBusy(err) {
		return nil
	}
	return err
}
