package gateway

import (
	"bytes"
	"strings"
)

// The gateway refuses by default: a command is served only if it is in
// allowed (below), and Redis checks it once more under the tenant's ACL
// user, which is granted exactly these commands (see aclRule). Key names,
// channels and the keys touched inside scripts are Redis's to check; the
// gateway adds what ACLs cannot do:
//   - SCAN and KEYS run on the gateway's own connection with their reply
//     filtered to the tenant's prefixes (ACLs do not filter key names), and
//     INFO gives a few fields of the server section (hub.go: infoKept);
//   - scripts are the link's own, or read-only ones of tenants granted
//     eval, under a watchdog (scripts.go); requests that could make the
//     hub allocate or send too much are refused (guard.go); RANDOMKEY is refused; of CONFIG,
//     only CONFIG GET notify-keyspace-events is answered (the gateway turns
//     keyspace events on itself: [gateway] keyspace_events);
//   - SUBSCRIBE and PSUBSCRIBE only on the tenant's own channels;
//   - the options that reach another database (COPY ... DB, a db in the
//     URL other than the hub's), the BY and GET patterns of SORT, and the
//     blocking forms of XREAD, which would hold a connection, are refused.

// kind says how a command is served.
type kind uint8

const (
	kPass      kind = iota + 1 // sent to Redis as the tenant
	kSubscribe                 // SUBSCRIBE, PSUBSCRIBE: a stream
	kScan                      // SCAN: run by the gateway, filtered
	kKeys                      // KEYS: run by the gateway, filtered
	kInfo                      // INFO: the server section, run by the gateway
	kEval                      // EVAL, EVALSHA: sent as the tenant, or redisrepl's scan script
	kConfigGet                 // CONFIG GET notify-keyspace-events, read by the gateway
)

// allowed maps the command names served to their kind.
var allowed = func() map[string]kind {
	m := map[string]kind{
		"SUBSCRIBE": kSubscribe, "PSUBSCRIBE": kSubscribe,
		"SCAN": kScan, "KEYS": kKeys, "INFO": kInfo,
		"EVAL": kEval, "EVALSHA": kEval, "EVAL_RO": kEval, "EVALSHA_RO": kEval,
		"CONFIG": kConfigGet, "MEMORY": kPass,
	}
	for _, c := range aclCommands {
		if _, ok := m[c]; !ok {
			m[c] = kPass
		}
	}
	return m
}()

// aclCommands are granted to every tenant's ACL user. Administrative,
// dangerous, blocking, transaction and cross-database commands are not.
var aclCommands = strings.Fields(`
APPEND DECR DECRBY GET GETDEL GETEX GETRANGE GETSET INCR INCRBY INCRBYFLOAT LCS
MGET MSET MSETNX PSETEX SET SETEX SETNX SETRANGE STRLEN SUBSTR
COPY DEL DUMP EXISTS EXPIRE EXPIREAT EXPIRETIME OBJECT PEXPIRE PEXPIREAT
PEXPIRETIME PERSIST PTTL RENAME RENAMENX SORT SORT_RO TOUCH TTL TYPE UNLINK
HDEL HEXISTS HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET
HRANDFIELD HSCAN HSET HSETNX HSTRLEN HVALS
LINDEX LINSERT LLEN LMOVE LMPOP LPOP LPOS LPUSH LPUSHX LRANGE LREM LSET LTRIM
RPOP RPOPLPUSH RPUSH RPUSHX
SADD SCARD SDIFF SDIFFSTORE SINTER SINTERCARD SINTERSTORE SISMEMBER SMEMBERS
SMISMEMBER SMOVE SPOP SRANDMEMBER SREM SSCAN SUNION SUNIONSTORE
ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE ZINCRBY ZINTER ZINTERCARD ZINTERSTORE
ZLEXCOUNT ZMPOP ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX
ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK
ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN
ZSCORE ZUNION ZUNIONSTORE
XACK XADD XAUTOCLAIM XCLAIM XDEL XGROUP XINFO XLEN XPENDING XRANGE XREAD
XREADGROUP XREVRANGE XSETID XTRIM
BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS GETBIT SETBIT
PFADD PFCOUNT PFMERGE
GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER
GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE
EVAL EVALSHA EVAL_RO EVALSHA_RO
PUBLISH SUBSCRIBE PSUBSCRIBE
PING ECHO TIME
`)

// Refusal reasons, as logged and counted.
const (
	reasonUnknownCert = "unknown certificate"
	reasonNotAllowed  = "command not allowed"
	reasonDisabled    = "command disabled"
	reasonBadDB       = "other database"
	reasonChannel     = "channel outside the tenant's"
	reasonOption      = "option not allowed"
	reasonStreams     = "too many open streams"
	reasonNoCommand   = "no command"
	reasonBody        = "body too large"
	reasonACL         = "refused by the tenant's ACL user"
)

// check says whether tenant t may run c, and why not. kind is how to
// serve it.
func (t *tenant) check(c *command) (kind, string) {
	name := c.name()
	k, ok := allowed[name]
	if !ok {
		return 0, reasonNotAllowed
	}
	if t.g.disabled[name] {
		return 0, reasonDisabled
	}
	args := c.args[1:]
	switch name {
	case "COPY":
		for _, a := range args {
			if equalFold(a, "DB") {
				return 0, reasonOption
			}
		}
	case "SORT", "SORT_RO":
		for i := 1; i < len(args); i++ {
			switch {
			case equalFold(args[i], "BY"), equalFold(args[i], "GET"):
				return 0, reasonOption
			case equalFold(args[i], "LIMIT"):
				i += 2
			case equalFold(args[i], "STORE"):
				i++
			}
		}
	case "XREAD", "XREADGROUP":
		for _, a := range args {
			if equalFold(a, "STREAMS") {
				break
			}
			if equalFold(a, "BLOCK") {
				return 0, reasonOption
			}
		}
	case "SUBSCRIBE", "PSUBSCRIBE":
		if len(args) == 0 {
			return k, "" // Redis answers the arity error
		}
		for _, ch := range args {
			if !t.channelAllowed(ch, name == "PSUBSCRIBE") {
				return 0, reasonChannel
			}
		}
	case "CONFIG": // only what a link reads to see that keyspace events are on
		if len(args) != 2 || !equalFold(args[0], "GET") || !equalFold(args[1], "NOTIFY-KEYSPACE-EVENTS") {
			return 0, reasonNotAllowed
		}
	case "INFO":
		if len(args) > 1 || len(args) == 1 && !equalFold(args[0], "SERVER") {
			return 0, reasonOption
		}
	case "MEMORY": // MEMORY USAGE of a key, which Redis checks as the tenant's
		if len(args) < 2 || !equalFold(args[0], "USAGE") {
			return 0, reasonNotAllowed
		}
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO":
		if t.checkScript(c) == scriptRefused {
			return 0, reasonScript
		}
	}
	return k, ""
}

// channelAllowed: a channel (or, for PSUBSCRIBE, a pattern) must start with
// the keyspace channel of one of the tenant's prefixes, or with one of its
// namespaces; a pattern's literal part must, so "*" or "__keyspace@0__:*"
// never passes.
func (t *tenant) channelAllowed(ch []byte, pattern bool) bool {
	lit := ch
	if pattern {
		lit = literalPrefix(ch)
	}
	_, ok := t.grantFor(lit)
	return ok
}

// grantFor is the narrowest of the tenant's channel grants whose literal
// part starts lit.
func (t *tenant) grantFor(lit []byte) (grant, bool) {
	var best grant
	found := false
	for _, g := range t.grants {
		if bytes.HasPrefix(lit, g.lit) && (!found || len(g.lit) > len(best.lit)) {
			best, found = g, true
		}
	}
	return best, found
}

// literalPrefix is the part of a glob pattern before its first wildcard,
// with escapes removed.
func literalPrefix(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*', '?', '[':
			return out
		case '\\':
			if i+1 < len(p) {
				i++
			}
		}
		out = append(out, p[i])
	}
	return out
}

// globEscape escapes the glob characters of a prefix, as redisrepl's link
// does in its SCAN MATCH and PSUBSCRIBE patterns.
func globEscape(prefix string) string {
	var b strings.Builder
	for i := 0; i < len(prefix); i++ {
		switch prefix[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(prefix[i])
	}
	return b.String()
}

// readable says whether key is under one of the tenant's prefixes.
func (t *tenant) readable(key []byte) bool {
	for _, p := range t.readPrefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
