package gateway

import (
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/redisrepl/redisrepl/webdis/scanstep"
)

// Key names listed for a tenant: Redis ACLs check keys a command touches,
// not the names SCAN, KEYS or RANDOMKEY reply with, so tenants' users may
// not run those, and the gateway runs them itself on its own connection,
// keeping only the tenant's keys.
//
// Their cost is bounded: SCAN's COUNT is at most the tenant's scan_count
// (guard.go lowers it), so that one call walks O(scan_count) of the hub's
// keyspace whatever MATCH says; KEYS is a walk of SCAN steps of that
// COUNT, each a short turn of the hub's thread, and gives up past
// keys_budget keys walked.

// scan runs SCAN on the gateway's connection, with MATCH set to the
// tenant's prefix when it has only one and the client gave none, and keeps
// only the tenant's keys in the reply. The cursor is Redis's.
func (g *Gateway) scan(r *http.Request, t *tenant, c *command) (any, error) {
	args := make([]any, 0, len(c.args)+4)
	match, count := false, false
	for i, a := range c.args[1:] {
		args = append(args, a)
		if i > 0 && equalFold(a, "MATCH") {
			match = true
		}
		if i > 0 && equalFold(a, "COUNT") {
			count = true
		}
	}
	if !match && len(t.readPrefixes) == 1 && len(args) > 0 {
		args = append(args, "MATCH", globEscape(string(t.readPrefixes[0]))+"*")
	}
	if !count && len(args) > 0 {
		args = append(args, "COUNT", min(t.cfg.Limits.ScanCount, 10))
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

// keys answers KEYS pattern with a walk of SCAN steps on the gateway's
// connection, keeping the tenant's keys; past keys_budget keys walked it
// answers an error naming the limit (the client should SCAN).
func (g *Gateway) keys(r *http.Request, t *tenant, c *command) (any, error) {
	if len(c.args) != 2 {
		return g.adminDo(r, "KEYS") // Redis answers the arity error
	}
	pattern := c.args[1]
	step := t.cfg.Limits.ScanCount
	var walked int64
	out := []any{}
	for cursor := []byte("0"); ; {
		if walked >= t.cfg.Limits.KeysBudget {
			return limitError("keys_budget: use SCAN", t.cfg.Limits.KeysBudget), nil
		}
		reply, err := g.adminDo(r, "SCAN", cursor, "MATCH", pattern, "COUNT", step)
		if err != nil {
			return nil, err
		}
		v, ok := reply.([]any)
		if !ok || len(v) != 2 {
			return reply, nil // an error reply
		}
		keys, _ := v[1].([]any)
		out = append(out, t.filter(keys)...)
		walked += step
		next, _ := v[0].([]byte)
		if string(next) == "0" || next == nil {
			return out, nil
		}
		cursor = next
	}
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

// scanScriptSHA is the SHA1 of scanstep.Script, the link's scan step.
var scanScriptSHA = scanstep.SHA1()

// isScanScript: EVALSHA of the link's scan step (scanstep.Script) or
// EVAL of its source, with no keys and three arguments. Tenants' users may
// not run SCAN (inside a script it would show every key name), so the
// gateway runs this one script itself, filtered like SCAN.
func isScanScript(args [][]byte) bool {
	if len(args) != 6 || string(args[2]) != "0" {
		return false
	}
	switch {
	case equalFold(args[0], "EVALSHA"):
		return strings.EqualFold(string(args[1]), scanScriptSHA)
	case equalFold(args[0], "EVAL"):
		sum := sha1.Sum(args[1])
		return hex.EncodeToString(sum[:]) == scanScriptSHA
	}
	return false
}

func (g *Gateway) scanScript(r *http.Request, t *tenant, c *command) (any, error) {
	a := c.args[3:]
	count := a[2]
	if n, err := strconv.ParseInt(string(count), 10, 64); err == nil && n > t.cfg.Limits.ScanCount {
		count = strconv.AppendInt(nil, t.cfg.Limits.ScanCount, 10)
	}
	reply, err := g.adminDo(r, "SCAN", a[0], "MATCH", a[1], "COUNT", count)
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
