package config

import "strings"

// The hub's topology in [gateway]: one Redis (`redis`) or a Redis Cluster
// (`redis_cluster`, the seed nodes the gateway discovers the cluster from;
// docs/ARCHITECTURE.md, "A cluster hub").
//
//	redis_cluster = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
//
// A seed is host:port or redis://[user:password@]host:port (rediss:// for
// TLS); the user and password are the gateway's own Redis user on every
// node, so every seed must name the same ones. A cluster has database 0
// only.

// hubField reads a [gateway] field of the hub's topology.
func hubField(fail func(string, ...any), k string, v any, g *Gateway) (known bool) {
	if k != "redis_cluster" {
		return false
	}
	seeds, ok := gwStrings(fail, v)
	if !ok {
		return true
	}
	if len(seeds) == 0 {
		fail("must name at least one seed node (host:port)")
		return true
	}
	g.RedisCluster = nil
	for i, s := range seeds {
		var d draft
		if err := parseLocal(s, &d); err != nil {
			fail("seed %q: %v", redactURL(s), err)
			return true
		}
		if d.urlDB > 0 {
			fail("seed %q: a cluster has database 0 only", redactURL(s))
			return true
		}
		if i == 0 {
			g.RedisUser, g.RedisPassword, g.RedisTLS = d.LocalUser, d.LocalPassword, d.LocalTLS
		} else if d.LocalUser != g.RedisUser || d.LocalPassword != g.RedisPassword || d.LocalTLS != g.RedisTLS {
			fail("seed %q: every seed must name the same user, password and scheme", redactURL(s))
			return true
		}
		g.RedisCluster = append(g.RedisCluster, d.LocalAddr)
	}
	g.RedisAddr, g.RedisDB = g.RedisCluster[0], 0
	redacted := make([]string, len(seeds))
	for i, s := range seeds {
		redacted[i] = redactURL(s)
	}
	g.Redis = strings.Join(redacted, ",") // for messages only: the seeds are RedisCluster
	return true
}

// hubRequired checks that [gateway] names its hub exactly once.
func (p *gwParser) hubRequired(t map[string]any) {
	_, single := t["redis"]
	_, cluster := t["redis_cluster"]
	_, sentinels := t["redis_sentinels"]
	_, master := t["redis_master"]
	switch {
	case single && cluster:
		p.failG("redis_cluster", "name the hub by redis or by redis_cluster, not both")
	case cluster && (sentinels || master):
		p.failG("redis_cluster", "a Redis Cluster hub is not managed by Sentinel: drop redis_sentinels and redis_master")
	case sentinels && !master:
		p.failG("redis_sentinels", "needs redis_master, the name the Sentinels monitor the hub under")
	case master && !sentinels:
		p.failG("redis_master", "needs redis_sentinels, the Sentinels that know the master")
	case !single && !cluster && !sentinels:
		p.failG("redis", "required (or redis_cluster, for a Redis Cluster hub, or redis_sentinels and redis_master, for a hub managed by Sentinel)")
	}
}
