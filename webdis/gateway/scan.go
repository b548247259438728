package gateway

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strings"
)

// Key names listed for a tenant: Redis ACLs check keys a command touches,
// not the names SCAN, KEYS or RANDOMKEY reply with, so tenants' users may
// not run those, and the gateway runs them itself on its own connection,
// keeping only the tenant's keys.

// scan runs SCAN on the gateway's connection, with MATCH set to the
// tenant's prefix when it has only one and the client gave none, and keeps
// only the tenant's keys in the reply. The cursor is Redis's.
func (g *Gateway) scan(r *http.Request, t *tenant, c *command) (any, error) {
	args := make([]any, 0, len(c.args)+2)
	match := false
	for i, a := range c.args[1:] {
		args = append(args, a)
		if i > 0 && equalFold(a, "MATCH") {
			match = true
		}
	}
	if !match && len(t.readPrefixes) == 1 && len(args) > 0 {
		args = append(args, "MATCH", globEscape(string(t.readPrefixes[0]))+"*")
	}
	reply, err := g.adminDo(r, "SCAN", args...)
	if err != nil {
		return nil, err
	}
	if v, ok := reply.([]any); ok && len(v) == 2 {
		if keys, ok := v[1].([]any); ok {
			v[1] = t.filter(keys)
		}
	}
	return reply, nil
}

// keys runs KEYS on the gateway's connection and keeps the tenant's keys.
func (g *Gateway) keys(r *http.Request, t *tenant, c *command) (any, error) {
	args := make([]any, 0, len(c.args)-1)
	for _, a := range c.args[1:] {
		args = append(args, a)
	}
	reply, err := g.adminDo(r, "KEYS", args...)
	if err != nil {
		return nil, err
	}
	if keys, ok := reply.([]any); ok {
		return t.filter(keys), nil
	}
	return reply, nil
}

func (t *tenant) filter(keys []any) []any {
	out := keys[:0]
	for _, k := range keys {
		if kb, ok := k.([]byte); ok && t.readable(kb) {
			out = append(out, k)
		}
	}
	return out
}

// scanScriptSource is redisrepl's own scan step (the link's scanScript,
// under link/): the link lists a namespace with it through EVALSHA. Tenants'
// users may not run SCAN (inside a script it would show every key name), so
// the gateway runs this one script itself, filtered like SCAN.
// TestScanScriptMatchesLink keeps the copy equal to the link's.
const scanScriptSource = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {r[1]}
for _, k in ipairs(r[2]) do out[#out + 1] = k end
return out
`

var scanScriptSHA = func() string {
	s := sha1.Sum([]byte(scanScriptSource))
	return hex.EncodeToString(s[:])
}()

// isScanScript: EVALSHA of the scan script's SHA1 or EVAL of its source,
// with no keys and three arguments.
func isScanScript(args [][]byte) bool {
	if len(args) != 6 || string(args[2]) != "0" {
		return false
	}
	switch {
	case equalFold(args[0], "EVALSHA"):
		return strings.EqualFold(string(args[1]), scanScriptSHA)
	case equalFold(args[0], "EVAL"):
		return bytes.Equal(args[1], []byte(scanScriptSource))
	}
	return false
}

func (g *Gateway) scanScript(r *http.Request, t *tenant, c *command) (any, error) {
	a := c.args[3:]
	reply, err := g.adminDo(r, "SCAN", a[0], "MATCH", a[1], "COUNT", a[2])
	if err != nil {
		return nil, err
	}
	v, ok := reply.([]any)
	if !ok || len(v) != 2 {
		return reply, nil
	}
	keys, _ := v[1].([]any)
	out := append([]any{v[0]}, t.filter(keys)...)
	return out, nil
}
