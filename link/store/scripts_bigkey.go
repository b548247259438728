package store

// The scripts of big keys (bigkey.go): read, hash and stage a key a chunk
// at a time, then move it into place. Like those of scripts.go, they return
// flat arrays of strings only.

// stageScript adds a chunk of elements to a staging key (bigkey.go) and
// keeps it from outliving an abandoned copy. KEYS: the staging key; ARGV:
// namespace, type, elements laid out as in State (a stream's start with its
// last-generated-id).
var stageScript = newScript(luaWrite + `
local err = check_namespace(ARGV[1], KEYS)
if err then return err end
add(KEYS[1], ARGV[2], 3, #ARGV)
redis.call('PEXPIRE', KEYS[1], ` + stagingTTL + `)
return 1
`)

// finishScript moves a key staged in chunks into place in one step.
// KEYS: staging key, key; ARGV: namespace, expire-at, and for a stream its
// last-generated-id.
var finishScript = newScript(luaWrite + `
local err = check_namespace(ARGV[1], KEYS)
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('ERR redisrepl: staging key vanished')
end
local groups = nil
if ARGV[3] and ARGV[3] ~= '' then
  redis.call('XSETID', KEYS[1], ARGV[3])
  groups = save_groups(KEYS[2])
end
redis.call('RENAME', KEYS[1], KEYS[2])
restore_groups(KEYS[2], groups)
local exp = tonumber(ARGV[2])
if exp > 0 then redis.call('PEXPIREAT', KEYS[2], exp) else redis.call('PERSIST', KEYS[2]) end
return 1
`)

// chunkScript reads one chunk of a big key. KEYS: the key; ARGV: type,
// cursor, count. Reply: the next cursor (” at the end), then elements laid
// out as in State (a stream's chunk starts with its last-generated-id).
// Cursors: a byte offset (string), an index (list), a SCAN cursor (hash, set,
// zset), an exclusive entry id (stream, '-' to start).
var chunkScript = newScript(`
local k, ty, cur, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local function scan(cmd)
  local r = redis.call(cmd, k, cur, 'COUNT', count)
  local out = {r[1] == '0' and '' or r[1]}
  for _, e in ipairs(r[2]) do out[#out + 1] = e end
  return out
end
if ty == 'string' then
  local off = tonumber(cur)
  local s = redis.call('GETRANGE', k, off, off + count - 1)
  if #s < count then return {'', s} end
  return {tostring(off + count), s}
elseif ty == 'list' then
  local off = tonumber(cur)
  local v = redis.call('LRANGE', k, off, off + count - 1)
  local out = {#v < count and '' or tostring(off + count)}
  for _, e in ipairs(v) do out[#out + 1] = e end
  return out
elseif ty == 'hash' then return scan('HSCAN')
elseif ty == 'set' then return scan('SSCAN')
elseif ty == 'zset' then return scan('ZSCAN')
elseif ty == 'stream' then
  local info = redis.call('XINFO', 'STREAM', k)
  local last = '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  local start = cur == '-' and '-' or '(' .. cur
  local v = redis.call('XRANGE', k, start, '+', 'COUNT', count)
  local out = {'', last}
  for _, e in ipairs(v) do
    out[#out + 1] = e[1]
    out[#out + 1] = tostring(#e[2])
    for _, f in ipairs(e[2]) do out[#out + 1] = f end
  end
  if #v == count then out[1] = v[#v][1] end
  return out
end
return redis.error_reply('ERR redisrepl: no chunks for type ' .. ty)
`)

// hashChunkScript hashes one chunk of a big key's elements, for BigDigest.
// KEYS: the key; ARGV: type, cursor, count. Reply: the next cursor (” at
// the end), then for a hash or a set (walked with HSCAN/SSCAN) the sum of
// the chunk's element hashes as sum_str writes it, split at its ':' (count,
// words), and the key's element count (HLEN/SCARD) when the chunk was read;
// for the ordered types, one hash per element as digest() makes them, in
// order (a sorted set by rank, not ZSCAN); a stream's chunk starts with the
// hash of its last-generated-id. Strings are not hashed here (see BigDigest).
var hashChunkScript = newScript(luaSum + `
local k, ty, cur, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {''}
if ty == 'hash' or ty == 'set' then
  local r = redis.call(ty == 'hash' and 'HSCAN' or 'SSCAN', k, cur, 'COUNT', count)
  if r[1] ~= '0' then out[1] = r[1] end
  local s = sum_new()
  sum_elems(s, ty, r[2])
  out[2] = tostring(s.n)
  out[3] = string.sub(sum_str(s), #out[2] + 2)
  out[4] = tostring(redis.call(ty == 'hash' and 'HLEN' or 'SCARD', k))
elseif ty == 'list' or ty == 'zset' then
  local off = tonumber(cur)
  local v
  if ty == 'list' then v = redis.call('LRANGE', k, off, off + count - 1)
  else v = redis.call('ZRANGE', k, off, off + count - 1, 'WITHSCORES') end
  for i = 1, #v do out[#out + 1] = redis.sha1hex(field(v[i])) end
  local n = ty == 'list' and #v or #v / 2
  if n == count then out[1] = tostring(off + count) end
elseif ty == 'stream' then
  local info = redis.call('XINFO', 'STREAM', k)
  local last = '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  out[2] = redis.sha1hex(field(last))
  local start = cur == '-' and '-' or '(' .. cur
  local v = redis.call('XRANGE', k, start, '+', 'COUNT', count)
  for _, e in ipairs(v) do
    out[#out + 1] = redis.sha1hex(field(e[1]))
    out[#out + 1] = redis.sha1hex(field(tostring(#e[2])))
    for _, f in ipairs(e[2]) do out[#out + 1] = redis.sha1hex(field(f)) end
  end
  if #v == count then out[1] = v[#v][1] end
else
  return redis.error_reply('ERR redisrepl: no chunk hashes for type ' .. ty)
end
return out
`)

// stringHashScript is digest()'s element hash of a string key, for strings
// too big to read whole but small enough to hash in one short script.
// KEYS: the key; ARGV: max bytes. Reply: the hash, or ” when the string is
// longer than max bytes (BigDigest then hashes it chunk by chunk).
var stringHashScript = newScript(`
if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then return '' end
local v = redis.call('GET', KEYS[1]) or ''
return redis.sha1hex(#v .. ':' .. v)
`)
