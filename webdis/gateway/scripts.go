package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Scripts (docs/ARCHITECTURE.md, "The hub gateway"). A Lua script holds
// the hub's single thread for as long as it runs, and one that has written
// cannot be stopped short of SHUTDOWN NOSAVE; its heap is not bounded by
// maxmemory. So:
//   - every tenant may run the link's own scripts (linkscripts.go), known
//     by SHA1 (EVALSHA) or by the SHA1 of the source sent (EVAL): they are
//     reviewed, bounded by the size of their arguments, and the link needs
//     them; any other script is refused with 403;
//   - a tenant with eval = true may also run its own scripts, read-only
//     only (EVAL_RO, EVALSHA_RO, or EVAL of a source whose shebang says
//     flags=no-writes), which Redis can always kill; the gateway kills
//     one that runs past the tenant's script_time (SCRIPT KILL) and then
//     empties the scripting engine (SCRIPT FLUSH), giving back the Lua heap
//     it grew. For the kill to be possible before Redis's default 5 s, the
//     gateway lowers the hub's busy-reply-threshold to the shortest
//     script_time (hub.go), and a request that meets BUSY is tried again.
//
// What remains: within script_time a read-only script can still grow the
// Lua heap (hundreds of megabytes in a second of string doubling) and
// hold the hub for that long; SCRIPT KILL kills whatever script runs, so
// a kill sent as the tenant's script ends may stop another tenant's
// read-only script instead (its request fails, a link retries it).

// linkScriptSet is linkScriptSHAs as a set.
var linkScriptSet = func() map[string]bool {
	m := make(map[string]bool, len(linkScriptSHAs))
	for _, s := range linkScriptSHAs {
		m[s] = true
	}
	return m
}()

// LinkScripts are the SHA1s of the link's scripts, sorted.
func LinkScripts() []string { return slices.Sorted(slices.Values(linkScriptSHAs)) }

// ScanScriptSHA is the SHA1 of the link's scan step, which the gateway runs
// itself (scan.go).
func ScanScriptSHA() string { return scanScriptSHA }

const (
	reasonScript = "script not allowed"
	reasonKilled = "script killed"
)

// scriptSHA is the SHA1 of the script of an EVAL-family command: the one
// named, or that of the source sent.
func scriptSHA(args [][]byte) string {
	if len(args) < 2 {
		return ""
	}
	if equalFold(args[0], "EVALSHA") || equalFold(args[0], "EVALSHA_RO") {
		return strings.ToLower(string(args[1]))
	}
	s := sha1.Sum(args[1])
	return hex.EncodeToString(s[:])
}

// scriptUse is how a script request of a tenant is served.
type scriptUse uint8

const (
	scriptRefused scriptUse = iota
	scriptLink              // one of the link's scripts
	scriptOwn               // the tenant's own read-only script, under the watchdog
)

// checkScript says whether t may run the script of c.
func (t *tenant) checkScript(c *command) scriptUse {
	if len(c.args) < 2 {
		return scriptLink // Redis answers the arity error
	}
	if linkScriptSet[scriptSHA(c.args)] {
		return scriptLink
	}
	if !t.cfg.Eval {
		return scriptRefused
	}
	switch {
	case equalFold(c.args[0], "EVAL_RO"), equalFold(c.args[0], "EVALSHA_RO"):
		return scriptOwn
	case equalFold(c.args[0], "EVAL") && noWrites(c.args[1]):
		return scriptOwn
	}
	return scriptRefused
}

// noWrites: the source starts with a shebang line whose flags hold
// no-writes ("#!lua flags=no-writes,allow-stale").
func noWrites(src []byte) bool {
	if !bytes.HasPrefix(src, []byte("#!lua")) {
		return false
	}
	line, _, _ := bytes.Cut(src, []byte("\n"))
	for _, f := range bytes.Fields(line[len("#!lua"):]) {
		if v, ok := bytes.CutPrefix(f, []byte("flags=")); ok {
			for _, fl := range bytes.Split(v, []byte(",")) {
				if string(fl) == "no-writes" {
					return true
				}
			}
		}
	}
	return false
}

// watchScript kills the hub's running script if done is not closed within
// limit, and then empties the scripting engine (its heap). It reports
// whether it killed.
func (g *Gateway) watchScript(limit time.Duration, done <-chan struct{}) bool {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-done:
		return false
	case <-timer.C:
	}
	killed := false
	for {
		// A fresh connection: the pool's may be the ones waiting on BUSY.
		c, err := g.dialAdminTimeout(2 * time.Second)
		if err == nil {
			_, err = c.Do("SCRIPT", "KILL")
			if err == nil {
				killed = true
				_, _ = c.Do("SCRIPT", "FLUSH", "ASYNC")
			}
			c.Close()
		}
		if killed {
			return true
		}
		select {
		case <-done:
			return killed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isBusy: the hub runs a script past busy-reply-threshold; the command was
// not run.
func isBusy(err error) bool {
	re, ok := err.(redis.Error)
	return ok && strings.HasPrefix(string(re), "BUSY")
}

// busyRetry is the pause before a command that met BUSY is sent again.
const busyRetry = 5 * time.Millisecond

// doRetryBusy runs cmd on c, again while the hub answers BUSY (a script
// the watchdog will kill, or a link's script that will end), until ctx
// ends.
func doRetryBusy(ctx context.Context, c redis.Conn, cmd string, args ...any) (any, error) {
	for {
		reply, err := c.Do(cmd, args...)
		if !isBusy(err) {
			return reply, err
		}
		select {
		case <-ctx.Done():
			return reply, err
		case <-time.After(busyRetry):
		}
	}
}

// scriptThreshold is the busy-reply-threshold the hub needs: the shortest
// script_time of the tenants allowed their own scripts, 0 if none is.
func (s *state) scriptThreshold() time.Duration {
	var d time.Duration
	for _, t := range s.byName {
		if t.cfg.Eval && (d == 0 || t.cfg.Limits.ScriptTime < d) {
			d = t.cfg.Limits.ScriptTime
		}
	}
	return d
}
