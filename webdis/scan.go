package webdis

// ScanScript is one SCAN step as a Lua script whose reply is flat (the next
// cursor, then the keys): Webdis's raw format drops SCAN's nested reply, so
// a namespace is listed with it (EVAL/EVALSHA, no keys; ARGV: cursor,
// pattern, count). It is part of the protocol both sides of redisrepl speak:
// the link (link/store) lists namespaces with it, and the gateway
// (webdis/gateway), whose tenants may not run SCAN themselves (inside a
// script it would show every key name), recognises it by text or SHA-1 and
// runs it confined to the tenant's namespaces.
const ScanScript = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {r[1]}
for _, k in ipairs(r[2]) do out[#out + 1] = k end
return out
`
