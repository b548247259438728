package gateway

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"
)

// Routing on a cluster hub (docs/ARCHITECTURE.md, "A cluster hub"). A
// command goes whole to its slot's node through the tenant's
// ClusterClient. A multi-key command whose keys span slots would be
// refused by Redis (CROSSSLOT), so the gateway splits those it knows the
// meaning of, per slot, runs the parts at once and merges their replies:
// MGET, DEL, EXISTS, UNLINK, TOUCH, MSET, and the link's batch scripts
// (linkScriptRoles). Each part is atomic on its slot; MSET and the link's
// writes replace whole keys, so a part that failed leaves keys whole and
// the client's retry (the link copies the keys again) completes it. Any
// other command spanning slots gets Redis's CROSSSLOT refusal, applied
// nowhere.

// clusterConn runs commands as a tenant on the cluster, with the redigo
// Conn interface the single-Redis path uses (Send/Flush/Receive pipeline
// the guards' size checks).
type clusterConn struct {
	ctx     context.Context
	h       *clusterHub
	t       *tenant
	cc      *goredis.ClusterClient
	pending [][]any
	results []clusterResult
}

type clusterResult struct {
	v   any
	err error
}

func (c *clusterConn) Close() error { return nil }
func (c *clusterConn) Err() error   { return nil }

func (c *clusterConn) Send(name string, args ...any) error {
	c.pending = append(c.pending, append([]any{name}, args...))
	return nil
}

func (c *clusterConn) Flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	pipe := c.cc.Pipeline()
	cmds := make([]*goredis.Cmd, len(c.pending))
	for i, a := range c.pending {
		cmds[i] = pipe.Do(c.ctx, a...)
	}
	_, _ = pipe.Exec(c.ctx)
	for i, cmd := range cmds {
		v, err := fromGoRedis(c.pending[i][0].(string), c.pending[i][1:], cmd)
		if err == nil {
			if re, ok := v.(redis.Error); ok {
				v, err = nil, re
			}
		}
		c.results = append(c.results, clusterResult{v, err})
	}
	c.pending = c.pending[:0]
	return nil
}

func (c *clusterConn) Receive() (any, error) {
	if len(c.results) == 0 {
		return nil, errors.New("gateway: Receive without a command sent")
	}
	r := c.results[0]
	c.results = c.results[1:]
	return r.v, r.err
}

// Do runs one command: an error reply is returned as a redis.Error error,
// as redigo does.
func (c *clusterConn) Do(name string, args ...any) (any, error) {
	if name == "" {
		return nil, c.Flush()
	}
	v, err := c.route(name, args)
	if re, ok := v.(redis.Error); ok && err == nil {
		return nil, re
	}
	return v, err
}

func (c *clusterConn) route(name string, args []any) (any, error) {
	switch strings.ToUpper(name) {
	case "MGET", "DEL", "EXISTS", "UNLINK", "TOUCH":
		return c.multiKey(name, args, 1)
	case "MSET":
		return c.multiKey(name, args, 2)
	case "EVALSHA", "EVAL":
		if len(args) >= 2 {
			if role, ok := linkScriptRoles[scriptSHA([][]byte{[]byte(name), argBytes(args[0])})]; ok {
				return c.linkScript(role, name, args)
			}
		}
	}
	return c.one(name, args)
}

// one sends a command whole to its slot's node. A node that does not know
// the tenant's user (it joined, or restarted without it) has it set again,
// and the command is sent once more.
func (c *clusterConn) one(name string, args []any) (any, error) {
	a := append([]any{name}, args...)
	v, err := fromGoRedis(name, args, c.cc.Do(c.ctx, a...))
	if isUnknownUser(v, err) {
		c.h.g.log.Warn().Str("tenant", c.t.cfg.Name).Msg("a cluster node does not know this tenant's ACL user: setting it on every node again")
		if c.t.setUser(c.ctx) == nil {
			v, err = fromGoRedis(name, args, c.cc.Do(c.ctx, a...))
		}
	}
	return v, err
}

func isUnknownUser(v any, err error) bool {
	s := ""
	if re, ok := v.(redis.Error); ok {
		s = string(re)
	} else if err != nil {
		s = err.Error()
	}
	return strings.Contains(s, "WRONGPASS") || strings.Contains(s, "invalid username-password")
}

// slotGroups groups the keys of args (every step-th argument from the
// first) by slot, in the order of their first key; each group holds the
// indexes of its keys' first arguments.
func slotGroups(keys []any, step int) [][]int {
	var groups [][]int
	bySlot := map[int]int{}
	for i := 0; i < len(keys); i += step {
		s := keySlot(argBytes(keys[i]))
		g, ok := bySlot[s]
		if !ok {
			g = len(groups)
			bySlot[s] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// parts runs n commands in one go-redis pipeline, which sends each
// node's share in one round trip (and follows MOVED and ASK per command):
// a batch split into hundreds of slots is still one request per node. err
// is the first failure to reach the cluster; a part's error reply is
// returned as refused when no part failed so.
func (c *clusterConn) parts(n int, part func(i int) (string, []any)) (replies []any, refused any, err error) {
	run := func() ([]any, bool, error) {
		pipe := c.cc.Pipeline()
		names := make([]string, n)
		argss := make([][]any, n)
		cmds := make([]*goredis.Cmd, n)
		for i := range n {
			names[i], argss[i] = part(i)
			cmds[i] = pipe.Do(c.ctx, append([]any{names[i]}, argss[i]...)...)
		}
		_, _ = pipe.Exec(c.ctx)
		out := make([]any, n)
		unknown := false
		var first error
		for i, cmd := range cmds {
			v, err := fromGoRedis(names[i], argss[i], cmd)
			unknown = unknown || isUnknownUser(v, err)
			if err != nil && first == nil {
				first = err
			}
			out[i] = v
		}
		return out, unknown, first
	}
	replies, unknown, err := run()
	if unknown {
		c.h.g.log.Warn().Str("tenant", c.t.cfg.Name).Msg("a cluster node does not know this tenant's ACL user: setting it on every node again")
		if c.t.setUser(c.ctx) == nil {
			replies, _, err = run()
		}
	}
	if err != nil {
		return nil, nil, err
	}
	for _, r := range replies {
		if re, ok := r.(redis.Error); ok {
			return nil, re, nil
		}
	}
	return replies, nil, nil
}

// multiKey splits MGET, DEL, EXISTS, UNLINK, TOUCH (step 1) and MSET
// (step 2) per slot.
func (c *clusterConn) multiKey(name string, args []any, step int) (any, error) {
	if len(args) == 0 || len(args)%step != 0 {
		return c.one(name, args) // Redis answers the arity error
	}
	groups := slotGroups(args, step)
	if len(groups) == 1 {
		return c.one(name, args)
	}
	replies, refused, err := c.parts(len(groups), func(i int) (string, []any) {
		var a []any
		for _, k := range groups[i] {
			a = append(a, args[k:k+step]...)
		}
		return name, a
	})
	if err != nil || refused != nil {
		return refused, err
	}
	switch strings.ToUpper(name) {
	case "MSET":
		return "OK", nil
	case "MGET":
		out := make([]any, len(args))
		for i, g := range groups {
			vs, ok := replies[i].([]any)
			if !ok || len(vs) != len(g) {
				return nil, errors.New("gateway: a part of MGET answered another shape")
			}
			for j, k := range g {
				out[k] = vs[j]
			}
		}
		return out, nil
	}
	var n int64
	for _, r := range replies {
		v, _ := r.(int64)
		n += v
	}
	return n, nil
}

// scriptRole is how a link script's keys and arguments are laid out
// (link/store/scripts.go, scripts_bigkey.go), which says how it splits.
type scriptRole uint8

const (
	roleOneKey   scriptRole = iota // one key, or keys that must share a slot (finish: staging key and key)
	roleRead                       // KEYS, ARGV fixed; reply per key: "type exp n [size]" then n elements
	roleDigest                     // KEYS, ARGV fixed; reply: 3 per key
	roleExists                     // KEYS; reply: 1 per key
	roleApply                      // KEYS; ARGV: namespace, mark, then per key: type, exp, n, n elements; reply {marked}
	roleCasApply                   // as roleApply with #KEYS conditions after the mark; reply {marked, skipped indexes...}
)

// linkScriptRoles are the roles of link/store.Scripts() by SHA1 (checked
// against link/store by TestGatewayKnowsLinkScriptRoles, cmd/redisrepl).
var linkScriptRoles = map[string]scriptRole{
	"73cb6c08c6e6083543a87547b726d7c347105310": roleRead,     // readScript
	"3c94ab92c221d857b34611ed430ec28a5c2e7ce4": roleDigest,   // digestScript
	"58cfabc7236a802eaba299d9dab9d9d777da0b3d": roleApply,    // applyScript
	"d38b2099dc27e81dbf304b6e08c0b005192b596f": roleCasApply, // casApplyScript
	"e8ece4dd2e95ce091ba4639fb831da691b998c19": roleExists,   // existsScript
	"5e9af38fd9db0a7637b3e40a242b0dc754dc440b": roleOneKey,   // stageScript
	"30bfdbbd1a3e0120341a87ba543079c13afe4825": roleOneKey,   // finishScript
	"0fbeb4c82a0b3f24e4eee0737bd01db687d343c3": roleOneKey,   // chunkScript
	"b49b8662adf5b7acb01b912aaa1373ad9850fc58": roleOneKey,   // hashChunkScript
	"b8fe0f534074ba647c8875c1b1d4c7436724fefa": roleOneKey,   // stringHashScript
}

// LinkScriptRoles names the role of each link script by SHA1, for
// TestGatewayKnowsLinkScriptRoles.
func LinkScriptRoles() map[string]string {
	names := map[scriptRole]string{roleOneKey: "one-key", roleRead: "read", roleDigest: "digest", roleExists: "exists",
		roleApply: "apply", roleCasApply: "cas-apply"}
	out := map[string]string{}
	for sha, r := range linkScriptRoles {
		out[sha] = names[r]
	}
	return out
}

// linkScript runs a link script on the cluster. Write marks are never
// published on a cluster: a mark goes to every node's subscribers through
// the cluster bus, with no order against the keyspace events of the node
// that wrote, so the link's read-back decides echoes instead
// (docs/ARCHITECTURE.md, "No echo loops").
func (c *clusterConn) linkScript(role scriptRole, name string, args []any) (any, error) {
	n, err := strconv.Atoi(string(argBytes(args[1])))
	if err != nil || n <= 0 || 2+n > len(args) {
		return c.one(name, args)
	}
	keys, argv := args[2:2+n], slices.Clone(args[2+n:])
	if (role == roleApply || role == roleCasApply) && len(argv) >= 2 {
		argv[1] = []byte{}
	}
	groups := slotGroups(keys, 1)
	if len(groups) == 1 || role == roleOneKey {
		return c.one(name, append(append([]any{args[0], args[1]}, keys...), argv...))
	}
	var states [][]any // per key, its state's arguments (apply roles)
	fixed := argv
	switch role {
	case roleApply, roleCasApply:
		at := 2
		if role == roleCasApply {
			at = 2 + n
		}
		if len(argv) < at {
			return c.one(name, args) // the script answers
		}
		if states, err = splitStates(argv[at:], n); err != nil {
			return redis.Error("ERR gateway: " + err.Error()), nil
		}
		fixed = argv[:2]
	}
	replies, refused, err := c.parts(len(groups), func(i int) (string, []any) {
		g := groups[i]
		a := []any{args[0], strconv.Itoa(len(g))}
		for _, k := range g {
			a = append(a, keys[k])
		}
		a = append(a, fixed...)
		if role == roleCasApply {
			for _, k := range g {
				a = append(a, argv[2+k])
			}
		}
		for _, k := range g {
			if states != nil {
				a = append(a, states[k]...)
			}
		}
		return name, a
	})
	if err != nil || refused != nil {
		return refused, err
	}
	switch role {
	case roleApply:
		return []any{[]byte("0")}, nil
	case roleCasApply:
		var skipped []int
		for i, g := range groups {
			vs, _ := replies[i].([]any)
			for _, v := range vs[min(1, len(vs)):] {
				j, err := strconv.Atoi(string(argBytes(v)))
				if err != nil || j < 1 || j > len(g) {
					return nil, errors.New("gateway: a part of a conditional write answered another shape")
				}
				skipped = append(skipped, g[j-1]+1)
			}
		}
		slices.Sort(skipped)
		out := []any{[]byte("0")}
		for _, k := range skipped {
			out = append(out, []byte(strconv.Itoa(k)))
		}
		return out, nil
	}
	perKey := make([][]any, n)
	for i, g := range groups {
		vs, _ := replies[i].([]any)
		segs, err := splitReply(role, vs, len(g))
		if err != nil {
			return nil, err
		}
		for j, k := range g {
			perKey[k] = segs[j]
		}
	}
	if role == roleRead {
		capRead(perKey, argv)
	}
	out := make([]any, 0, len(perKey)*3)
	for _, s := range perKey {
		out = append(out, s...)
	}
	return out, nil
}

// splitStates cuts the states of n keys (type, exp, count, count elements
// each) apart.
func splitStates(a []any, n int) ([][]any, error) {
	out := make([][]any, 0, n)
	i := 0
	for range n {
		if i+3 > len(a) {
			return nil, errors.New("a write script's states are cut short")
		}
		cnt, err := strconv.Atoi(string(argBytes(a[i+2])))
		if err != nil || cnt < 0 || i+3+cnt > len(a) {
			return nil, errors.New("a write script's element count is wrong")
		}
		out = append(out, a[i:i+3+cnt])
		i += 3 + cnt
	}
	return out, nil
}

// splitReply cuts a read, digest or exists reply into one segment per key.
func splitReply(role scriptRole, vs []any, n int) ([][]any, error) {
	out := make([][]any, 0, n)
	bad := errors.New("gateway: a part of a link script answered another shape")
	i := 0
	for range n {
		switch role {
		case roleDigest:
			if i+3 > len(vs) {
				return nil, bad
			}
			out, i = append(out, vs[i:i+3]), i+3
		case roleExists:
			if i >= len(vs) {
				return nil, bad
			}
			out, i = append(out, vs[i:i+1]), i+1
		default:
			if i >= len(vs) {
				return nil, bad
			}
			f := bytes.Fields(argBytes(vs[i]))
			if len(f) < 3 {
				return nil, bad
			}
			cnt, err := strconv.Atoi(string(f[2]))
			if err != nil || cnt < -2 || i+1+max(cnt, 0) > len(vs) {
				return nil, bad
			}
			out, i = append(out, vs[i:i+1+max(cnt, 0)]), i+1+max(cnt, 0)
		}
	}
	if i != len(vs) {
		return nil, bad
	}
	return out, nil
}

// capRead keeps the read script's whole-reply budget (ARGV[3]) over the
// merged keys: past it, the keys after are "not read" (n = -2), as the
// script answers on one Redis.
func capRead(perKey [][]any, argv []any) {
	if len(argv) < 3 {
		return
	}
	budget, err := strconv.ParseInt(string(argBytes(argv[2])), 10, 64)
	if err != nil {
		return
	}
	var total int64
	for k, s := range perKey {
		if total > budget {
			f := bytes.Fields(argBytes(s[0]))
			perKey[k] = []any{[]byte(string(f[0]) + " " + string(f[1]) + " -2")}
			continue
		}
		for _, e := range s[1:] {
			total += int64(len(argBytes(e)))
		}
	}
}

// fromGoRedis turns a go-redis reply into redigo's shapes, which the
// reply code renders: a bulk string []byte, a status string, an integer
// int64, an array []any, nil, an error reply redis.Error (returned as the
// reply). err is a failure to reach the cluster, or a cluster that cannot
// serve now (CLUSTERDOWN, TRYAGAIN past the retries, MASTERDOWN): the
// client then gets 503, as for a Redis that is down, not an error of its
// keys.
func fromGoRedis(name string, args []any, cmd *goredis.Cmd) (any, error) {
	v, err := cmd.Result()
	if err != nil {
		if errors.Is(err, goredis.Nil) {
			return nil, nil
		}
		var re goredis.Error
		if errors.As(err, &re) {
			s := err.Error()
			if strings.HasPrefix(s, "CLUSTERDOWN") || strings.HasPrefix(s, "TRYAGAIN") || strings.HasPrefix(s, "MASTERDOWN") ||
				strings.HasPrefix(s, "MOVED") || strings.HasPrefix(s, "ASK") {
				return nil, err
			}
			return redis.Error(s), nil
		}
		return nil, err
	}
	if s, ok := v.(string); ok && statusReply(name, args) {
		return s, nil
	}
	return redigoShape(v), nil
}

func redigoShape(v any) any {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []any:
		for i, e := range v {
			v[i] = redigoShape(e)
		}
		return v
	case goredis.Error:
		return redis.Error(v.Error())
	}
	return v
}

// statusReply: the command answers a status (+OK, +PONG, +string), which
// go-redis reads as a string like a bulk one.
func statusReply(name string, args []any) bool {
	switch strings.ToUpper(name) {
	case "SET":
		for _, a := range args {
			if strings.EqualFold(string(argBytes(a)), "GET") {
				return false
			}
		}
		return true
	case "PING":
		return len(args) == 0
	case "MSET", "RENAME", "TYPE", "RESTORE", "SETEX", "PSETEX", "LSET", "LTRIM", "HMSET", "XSETID",
		"PFMERGE", "SELECT", "FLUSHDB", "FLUSHALL", "SWAPDB", "MIGRATE", "QUIT", "RESET", "AUTH":
		return true
	case "XGROUP", "SCRIPT", "CONFIG", "CLIENT":
		return len(args) > 0 && !strings.EqualFold(string(argBytes(args[0])), "LOAD") &&
			!strings.EqualFold(string(argBytes(args[0])), "GET")
	}
	return false
}

// keySlot is Redis Cluster's slot of key: CRC16 (XMODEM) of its hash tag
// (the content of the first {...} when not empty) or of the whole key,
// modulo 16384. It groups keys per slot; routing is go-redis's.
func keySlot(key []byte) int {
	if s := bytes.IndexByte(key, '{'); s >= 0 {
		if e := bytes.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for _, b := range key {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc & 16383)
}

// ownScriptOnCluster answers a tenant's own script on a cluster hub: the
// watchdog that bounds them (scripts.go) kills on one Redis.
var ownScriptOnCluster = redis.Error("ERR gateway: a tenant's own scripts are not served on a cluster hub")
