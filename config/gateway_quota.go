package config

import "time"

// The tenants' memory quotas (docs/ARCHITECTURE.md, "The hub gateway"):
// Redis has no per-user quota, so the gateway measures each tenant's keys
// itself, in the background, at a bounded cost, and refuses a tenant's
// growing writes while it is over its max_memory (a per-tenant limit of
// gateway_limits.go).

// QuotaScan is how the gateway measures its tenants' memory: one walk of
// the hub's keyspace (SCAN, then MEMORY USAGE of each tenant's key) every
// Interval, walking at most KeysPerSecond keys a second, so that a walk
// of a hub of N keys costs N/KeysPerSecond seconds of short steps.
type QuotaScan struct {
	Interval      time.Duration // pause between two walks
	KeysPerSecond int64         // keys walked per second at most
}

// DefaultQuotaScan: a walk every 10 s, at 20,000 keys/s (a step of 1,000
// keys holds the hub's thread about a millisecond).
var DefaultQuotaScan = QuotaScan{Interval: 10 * time.Second, KeysPerSecond: 20_000}

// quotaWide reads a [gateway]-only field of the quota walk; known = false
// if k is none.
func quotaWide(fail func(string, ...any), k string, v any, g *Gateway) (known bool) {
	switch k {
	case "memory_scan_interval":
		if d, ok := gwDuration(fail, v, 100*time.Millisecond, time.Hour); ok {
			g.Quota.Interval = d
		}
	case "memory_scan_keys_per_second":
		if n, ok := gwInt(fail, v, 100, 10_000_000); ok {
			g.Quota.KeysPerSecond = n
		}
	default:
		return false
	}
	return true
}
