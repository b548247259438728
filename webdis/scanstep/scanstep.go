// Package scanstep holds the one SCAN step both sides of redisrepl run: the
// link (link/store, through webdis.ScanScript) lists namespaces with it, and
// the gateway (webdis/gateway) recognises it and runs it confined to the
// tenant's namespaces. It is a package of its own so that the gateway can
// use it without importing webdis, whose tests start a gateway.
package scanstep

import (
	"crypto/sha1"
	"encoding/hex"
)

// Script is one SCAN step as a Lua script whose reply is flat (the next
// cursor, then the keys): Webdis's raw format drops SCAN's nested reply, so
// a namespace is listed with it (EVAL/EVALSHA, no keys; ARGV: cursor,
// pattern, count). Tenants of the gateway may not run SCAN themselves
// (inside a script it would show every key name), so the gateway
// recognises this script by text or SHA-1.
const Script = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {r[1]}
for _, k in ipairs(r[2]) do out[#out + 1] = k end
return out
`

// SHA1 is the hex SHA-1 of Script, the name EVALSHA runs it by.
func SHA1() string {
	sum := sha1.Sum([]byte(Script))
	return hex.EncodeToString(sum[:])
}
