package store

import (
	"crypto/sha1"
	"encoding/hex"

	"github.com/redisrepl/redisrepl/webdis"
)

// The Lua scripts below run on both sides, the local Redis (through redigo)
// and the remote one (through Webdis). Each reads or writes whole keys inside
// one EVAL, which Redis runs atomically: a reader never sees a key half
// rebuilt, and a state is never read half changed.
//
// They return FLAT arrays of strings only: Webdis's raw reply format drops
// nested arrays (docs/ARCHITECTURE.md, "Facts about Webdis"), so every
// record is laid out as a run of fields.

// A Script is Lua source with its SHA1, for EVALSHA.
type Script struct {
	Src string
	SHA string

	srcLen int // webdis.EncodedLen(Src): computed once, it is kilobytes long
}

func newScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{Src: src, SHA: hex.EncodeToString(sum[:]), srcLen: webdis.EncodedLen([]byte(src))}
}

// evalLen is the size of the request EVAL/<source>/<args...>, as sent when
// the side lacks the script (EVALSHA is smaller): requests are packed to
// fit it.
func (sc *Script) evalLen(args ...[]byte) int {
	n := webdis.CommandLen([]byte("EVAL")) + 1 + sc.srcLen
	for _, a := range args {
		n += argLen(a)
	}
	return n
}

// luaSum is the order-independent combination of the element hashes of a
// hash or a set (elemSum in digest.go): each element's SHA-1 read as five
// 32-bit words, added word by word modulo 2^32, and a count. A partial sum
// stays below 2^33, exact in Lua's doubles; string.format's %x takes a C
// long, 64 bits where Redis runs.
const luaSum = `
local function field(s) return #s .. ':' .. s end

local function sum_new() return {0, 0, 0, 0, 0, n = 0} end

local sub, tonum = string.sub, tonumber

local function sum_add(s, h)
  s[1] = (s[1] + tonum(sub(h, 1, 8), 16)) % 4294967296
  s[2] = (s[2] + tonum(sub(h, 9, 16), 16)) % 4294967296
  s[3] = (s[3] + tonum(sub(h, 17, 24), 16)) % 4294967296
  s[4] = (s[4] + tonum(sub(h, 25, 32), 16)) % 4294967296
  s[5] = (s[5] + tonum(sub(h, 33, 40), 16)) % 4294967296
  s.n = s.n + 1
end

-- sum_elems adds the elements v (laid out as in State) of a hash or a set.
local function sum_elems(s, ty, v)
  if ty == 'hash' then
    for i = 1, #v, 2 do sum_add(s, redis.sha1hex(field(v[i]) .. field(v[i + 1]))) end
  else
    for i = 1, #v do sum_add(s, redis.sha1hex(field(v[i]))) end
  end
end

local function sum_str(s)
  return s.n .. ':' .. string.format('%08x%08x%08x%08x%08x', s[1], s[2], s[3], s[4], s[5])
end
`

// luaLib holds the functions shared by the reading scripts: the canonical
// digest of a key's contents and its absolute expiry.
//
// The digest covers the type and the contents, not the TTL. Unordered types
// (hash, set) add up their element hashes (luaSum, elemSum in digest.go), so
// that a key too big for one script is digested a chunk at a time with
// nothing held per element.
const luaLib = luaSum + `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function expire_at(k, now)
  local pttl = redis.call('PTTL', k)
  if pttl >= 0 then return now + pttl end
  return 0
end

-- contents returns the key's elements as a flat list (see State in state.go),
-- or nil when it has more than max_elems elements or max_bytes bytes.
local function contents(k, ty, max_elems, max_bytes)
  local v
  if ty == 'string' then
    if redis.call('STRLEN', k) > max_bytes then return nil end
    return {redis.call('GET', k)}
  elseif ty == 'hash' then
    if redis.call('HLEN', k) * 2 > max_elems then return nil end
    v = redis.call('HGETALL', k)
  elseif ty == 'list' then
    if redis.call('LLEN', k) > max_elems then return nil end
    v = redis.call('LRANGE', k, 0, -1)
  elseif ty == 'set' then
    if redis.call('SCARD', k) > max_elems then return nil end
    v = redis.call('SMEMBERS', k)
  elseif ty == 'zset' then
    if redis.call('ZCARD', k) * 2 > max_elems then return nil end
    v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif ty == 'stream' then
    if redis.call('XLEN', k) > max_elems then return nil end
    local info = redis.call('XINFO', 'STREAM', k)
    local last = '0-0'
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
    v = {last}
    for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
      v[#v + 1] = e[1]
      v[#v + 1] = tostring(#e[2])
      for _, f in ipairs(e[2]) do v[#v + 1] = f end
    end
  else
    return {}
  end
  local n = 0
  for i = 1, #v do n = n + #v[i] end
  if n > max_bytes then return nil end
  return v
end

-- digest hashes each element (a hash's field with its value). Ordered
-- types hash their element hashes in order with the type; unordered ones
-- (hash, set) hash the type with the sum of their element hashes (sum_add).
-- Being built from per-element hashes, it can also be computed a chunk at a
-- time for a key too big for one script (BigDigest in bigkey.go).
local function digest(ty, v)
  if ty == 'hash' or ty == 'set' then
    local s = sum_new()
    sum_elems(s, ty, v)
    return redis.sha1hex(ty .. '|' .. sum_str(s))
  end
  local parts = {}
  for i = 1, #v do parts[#parts + 1] = redis.sha1hex(field(v[i])) end
  return redis.sha1hex(ty .. '|' .. table.concat(parts, ','))
end

-- size is a key's size in bytes: exact for a string, estimated otherwise.
local function size(k, ty)
  if ty == 'string' then return redis.call('STRLEN', k) end
  return redis.call('MEMORY', 'USAGE', k) or 0
end
`

// readScript reads whole keys. KEYS: the keys; ARGV: max elements and max
// bytes of one key, max bytes of the whole reply (past it, the remaining keys
// are not read, and the caller asks again later).
// Reply, per key, a header "type expire-at n" (expire-at in unix ms, 0 =
// none), then n elements; n is -2 for a key not read, and -1 for a key too
// big to read in one go, which is then copied in chunks: its header is
// "type expire-at -1 size", the size in bytes (estimated for collections).
//
// It computes no digest: the reader does, from the elements it receives
// (digestOf), which keeps SHA-1 off the single-threaded Redis; and one
// header field per key instead of three costs less on both ends
// (docs/ARCHITECTURE.md, "The path of a change").
var readScript = newScript(luaLib + `
local max_elems, max_bytes, batch_bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local total = 0
for _, k in ipairs(KEYS) do
  local ty = redis.call('TYPE', k)['ok']
  local exp = 0
  if ty ~= 'none' then exp = expire_at(k, now) end
  local v = nil
  if total <= batch_bytes then v = contents(k, ty, max_elems, max_bytes) end
  if total > batch_bytes then
    out[#out + 1] = ty .. ' ' .. exp .. ' -2'
  elseif v == nil then
    out[#out + 1] = ty .. ' ' .. exp .. ' -1 ' .. size(k, ty)
  else
    out[#out + 1] = ty .. ' ' .. exp .. ' ' .. #v
    for i = 1, #v do
      out[#out + 1] = v[i]
      total = total + #v[i]
    end
  end
end
return out
`)

// digestScript is readScript without the contents, for comparing sides.
// KEYS: the keys; ARGV: max elements, max bytes. Reply, per key: type,
// expire-at, digest (” when the key is too big to digest in one go).
var digestScript = newScript(luaLib + `
local max_elems, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local out = {}
for _, k in ipairs(KEYS) do
  local ty = redis.call('TYPE', k)['ok']
  local exp, d, v = 0, '', {}
  if ty ~= 'none' then
    exp = expire_at(k, now)
    v = contents(k, ty, max_elems, max_bytes)
  end
  if v ~= nil then d = digest(ty, v) end
  out[#out + 1] = ty
  out[#out + 1] = tostring(exp)
  out[#out + 1] = d
end
return out
`)

// scanScript is one SCAN step, flattened for Webdis. ARGV: cursor, pattern,
// count. Reply: the next cursor, then the keys.
var scanScript = newScript(webdis.ScanScript)

// stagingTTL (ms) makes an abandoned staging key disappear.
const stagingTTL = "3600000"

// luaWrite holds the functions of the writing scripts.
const luaWrite = `
local function check_namespace(prefix, keys)
  for _, k in ipairs(keys) do
    if string.sub(k, 1, #prefix) ~= prefix then
      return redis.error_reply('ERR redisrepl: key outside the namespace')
    end
  end
end

-- save_groups and restore_groups keep the consumer groups of a stream
-- that is rebuilt: consumers on the far side keep their place (their
-- last-delivered-id and entries-read); pending entries lists are not kept.
local function save_groups(k)
  if redis.call('TYPE', k)['ok'] ~= 'stream' then return nil end
  local gs = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', k)) do
    local name, last, read
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1]
      elseif g[i] == 'last-delivered-id' then last = g[i + 1]
      elseif g[i] == 'entries-read' then read = g[i + 1] end
    end
    gs[#gs + 1] = {name, last, read}
  end
  return gs
end

local function restore_groups(k, gs)
  if gs == nil or redis.call('TYPE', k)['ok'] ~= 'stream' then return end
  for _, g in ipairs(gs) do
    if g[3] then
      redis.pcall('XGROUP', 'CREATE', k, g[1], g[2], 'ENTRIESREAD', g[3])
    else
      redis.pcall('XGROUP', 'CREATE', k, g[1], g[2])
    end
  end
end

-- add adds ARGV[s..e], elements laid out as in State, to key k of type ty,
-- at most 1000 arguments per command (Lua's unpack has a stack limit). For a
-- stream, ARGV[s] is its last-generated-id, applied by the caller.
local function add(k, ty, s, e)
  local function each(cmd, step)
    local chunk = 1000 - (1000 % step)
    for i = s, e, chunk do
      redis.call(cmd, k, unpack(ARGV, i, math.min(i + chunk - 1, e)))
    end
  end
  if ty == 'string' then
    for i = s, e do redis.call('APPEND', k, ARGV[i]) end
  elseif ty == 'hash' then each('HSET', 2)
  elseif ty == 'list' then each('RPUSH', 1)
  elseif ty == 'set' then each('SADD', 1)
  elseif ty == 'zset' then
    local args = {}
    for i = s, e, 2 do
      args[#args + 1] = ARGV[i + 1]
      args[#args + 1] = ARGV[i]
      if #args >= 1000 then redis.call('ZADD', k, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZADD', k, unpack(args)) end
  elseif ty == 'stream' then
    local i = s + 1
    while i <= e do
      local nf = tonumber(ARGV[i + 1])
      redis.call('XADD', k, ARGV[i], unpack(ARGV, i + 2, i + 1 + nf))
      i = i + 2 + nf
    end
  end
end
`

// applyStates (Lua) writes the states laid out from ARGV[a] on, one per
// key of KEYS, except the keys marked in skip.
const luaApplyStates = `
local function apply_states(a, skip)
  for i, k in ipairs(KEYS) do
    local ty, exp, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local s, e = a + 3, a + 2 + n
    a = e + 1
    if not skip[i] then
      local groups = nil
      if ty == 'string' then
        redis.call('SET', k, ARGV[s]) -- replaces a key of any type, and its TTL
      else
        if ty == 'stream' then groups = save_groups(k) end
        redis.call('DEL', k)
        add(k, ty, s, e)
      end
      if ty == 'stream' then
        if redis.call('EXISTS', k) == 0 then
          -- An empty stream: create it with one entry, trimmed away at once.
          local last = ARGV[s]
          redis.call('XADD', k, 'MAXLEN', '0', last == '0-0' and '0-1' or last, 'x', '')
        end
        redis.call('XSETID', k, ARGV[s])
        restore_groups(k, groups)
      end
      if ty ~= 'none' and exp > 0 then redis.call('PEXPIREAT', k, exp) end
    end
  end
end
`

// luaMark publishes the write mark ARGV[2] (WriteMark), if any, after the
// writes: keyspace events and messages reach a subscriber in the order they
// were made, and a script runs alone, so every event the script caused
// comes before the mark and none of another client's between them. It
// returns '1' when the mark was published, '0' when there was none or it
// was refused (an ACL without PUBLISH on that channel).
const luaMark = `
local function mark()
  if ARGV[2] == '' then return '0' end
  local ok = redis.pcall('PUBLISH', ARGV[2], '1')
  if type(ok) == 'table' and ok.err then return '0' end
  return '1'
end
`

// applyScript replaces whole keys by the states given. KEYS: the keys;
// ARGV[1]: the namespace, which every key must start with (checked before
// anything is written, since a script is not rolled back on error);
// ARGV[2]: the write mark to publish after the writes, or empty; then per key:
// type, expire-at, n, n elements, laid out as readScript returns them. A
// type of 'none' deletes the key. Reply: {marked} ('1' or '0').
var applyScript = newScript(luaWrite + luaApplyStates + luaMark + `
local err = check_namespace(ARGV[1], KEYS)
if err then return err end
apply_states(3, {})
return {mark()}
`)

// casApplyScript is applyScript made conditional, for direction both: a
// key is written only if it still holds the state the decision was made on,
// so that a write made on this side between the link's read and its write
// is not lost. ARGV[1]: the namespace; ARGV[2]: the write mark or empty;
// ARGV[3..2+#KEYS]: per key, the first 16 hex digits of the digest the key
// must hold (empty = no condition; a key too big to digest in one go is written
// unconditionally); then the states as for applyScript. Reply: marked ('1'
// or '0'), then the 1-based indexes of the keys not written.
var casApplyScript = newScript(luaLib + luaWrite + luaApplyStates + luaMark + `
local err = check_namespace(ARGV[1], KEYS)
if err then return err end
local skip, out = {}, {''}
for i, k in ipairs(KEYS) do
  local want = ARGV[2 + i]
  if want ~= '' then
    local ty = redis.call('TYPE', k)['ok']
    local v = {}
    if ty ~= 'none' then v = contents(k, ty, 16384, 4194304) end
    if v ~= nil and string.sub(digest(ty, v), 1, 16) ~= want then
      skip[i] = true
      out[#out + 1] = tostring(i)
    end
  end
end
apply_states(3 + #KEYS, skip)
out[1] = mark()
return out
`)

// existsScript says which keys exist. KEYS: the keys. Reply: '1' or '0' per key.
var existsScript = newScript(`
local out = {}
for i, k in ipairs(KEYS) do out[i] = tostring(redis.call('EXISTS', k)) end
return out
`)
