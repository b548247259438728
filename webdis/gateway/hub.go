package gateway

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Settings of the hub the gateway's limits rely on (docs/ARCHITECTURE.md,
// "The hub gateway").

// ensureScriptThreshold lowers the hub's busy-reply-threshold to the
// shortest script_time of the tenants allowed their own scripts: before it,
// Redis serves nobody while a script runs, SCRIPT KILL included, so the
// watchdog (scripts.go) could not kill on time. A lower value set by the
// operator is kept.
func (g *Gateway) ensureScriptThreshold(ctx context.Context) {
	want := g.state.Load().scriptThreshold()
	if want == 0 {
		return
	}
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	vs, err := redis.Strings(c.Do("CONFIG", "GET", "busy-reply-threshold"))
	if err != nil || len(vs) != 2 {
		g.log.Error().Err(err).Msg("cannot read the hub's busy-reply-threshold: scripts of tenants with eval = true are killed only after it")
		return
	}
	cur, _ := strconv.ParseInt(vs[1], 10, 64)
	ms := max(want.Milliseconds(), 1)
	if cur > 0 && cur <= ms {
		return
	}
	if _, err := c.Do("CONFIG", "SET", "busy-reply-threshold", ms); err != nil {
		g.log.Error().Err(err).Msg("cannot set the hub's busy-reply-threshold")
		return
	}
	g.log.Info().Dur("busy-reply-threshold", time.Duration(ms)*time.Millisecond).
		Msg("the hub's busy-reply-threshold lowered to the shortest script_time")
}

// warnEviction warns when the hub evicts keys of any tenant to make room
// (maxmemory-policy allkeys-*): one tenant filling the hub would then
// empty the others' namespaces.
func (g *Gateway) warnEviction(ctx context.Context) {
	c, err := g.admin.GetContext(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	vs, err := redis.Strings(c.Do("CONFIG", "GET", "maxmemory-policy"))
	if err != nil || len(vs) != 2 {
		return
	}
	if strings.HasPrefix(vs[1], "allkeys-") {
		g.log.Warn().Str("maxmemory-policy", vs[1]).
			Msg("the hub evicts any tenant's keys when full: one tenant's writes can empty another's namespace; use noeviction (or volatile-*) on a shared hub")
	}
}

// infoKept are the INFO server fields a tenant sees: what a link reads
// (run_id, to notice a restart) and the version, not the host's details.
var infoKept = []string{"redis_version", "redis_mode", "run_id", "uptime_in_seconds"}

// filterInfo keeps infoKept of INFO's text.
func filterInfo(info []byte) []byte {
	var b strings.Builder
	b.WriteString("# Server\r\n")
	for _, line := range strings.Split(string(info), "\n") {
		line = strings.TrimRight(line, "\r")
		k, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range infoKept {
			if k == f {
				b.WriteString(line)
				b.WriteString("\r\n")
			}
		}
	}
	return []byte(b.String())
}
