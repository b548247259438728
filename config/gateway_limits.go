package config

import "time"

// The gateway's limits against a hostile tenant (docs/ARCHITECTURE.md,
// "The hub gateway"). Per-tenant limits have their default in [gateway]
// and may be overridden in a [[tenant]]; the connection and memory limits
// of the whole gateway are in [gateway] only.

// Limits are what one tenant's requests may cost the hub and the gateway.
// Zero means no limit where the field says so.
type Limits struct {
	// MaxValueBytes caps the size a request can make a string grow to:
	// SETRANGE and SETBIT/BITFIELD offsets, APPEND's result.
	MaxValueBytes int64
	// MaxReplyBytes caps one reply: MGET and the other multi-key reads are
	// checked before they run, every reply while it is sent.
	MaxReplyBytes int64
	// MaxElements caps the elements one request may ask for: counts of
	// SRANDMEMBER/ZRANDMEMBER/HRANDFIELD, spans of LRANGE/ZRANGE...
	MaxElements int64
	// MaxLCSBytes caps the product of the lengths of LCS's two strings
	// (LCS is quadratic).
	MaxLCSBytes int64
	// ScanCount caps SCAN's COUNT; KeysBudget the keys one KEYS may walk.
	ScanCount  int64
	KeysBudget int64
	// CommandsPerSecond and BytesPerSecond (request plus reply) are token
	// buckets holding one second's worth; 0 = no limit.
	CommandsPerSecond int64
	BytesPerSecond    int64
	// ScriptTime is how long a tenant's own read-only script may run before
	// the gateway kills it (tenants with eval = true).
	ScriptTime time.Duration
	// MaxConnections caps the tenant's open connections to the gateway.
	MaxConnections int64
	// MaxMemory is the tenant's memory quota on the hub, in bytes (0 = none):
	// over it, its writes that could grow are refused (gateway_quota.go).
	MaxMemory int64
	// MaxRequests caps the tenant's requests in flight to the hub (streams
	// excluded); more wait in its queue. 0: an eighth of the gateway's
	// max_total_requests (TenantMaxRequests).
	MaxRequests int64
}

// Defaults of the limits. They leave room for a link's biggest requests
// (a chunk of a big key is at most max_body_bytes; a 20 MB string or a
// million-member set is copied in such chunks).
var DefaultLimits = Limits{
	MaxValueBytes:     64 << 20,
	MaxReplyBytes:     64 << 20,
	MaxElements:       1_000_000,
	MaxLCSBytes:       4 << 20,
	ScanCount:         1000,
	KeysBudget:        1_000_000,
	CommandsPerSecond: 0,
	BytesPerSecond:    0,
	ScriptTime:        200 * time.Millisecond,
	MaxConnections:    256,
	MaxMemory:         0,
}

// Defaults of the gateway-wide limits.
const (
	DefaultGatewayMaxConnections = 2048
	DefaultGatewayBodyTimeout    = 60 * time.Second
	// DefaultGatewayMaxBodyMemory bounds the request bodies held at once.
	DefaultGatewayMaxBodyMemory = 512 << 20
	// DefaultGatewayMaxRequests bounds the requests in flight to the hub:
	// Redis runs one command at a time, so more in flight only lengthen
	// every tenant's wait in its event loop.
	DefaultGatewayMaxRequests = 64
)

// TenantMaxRequests is a tenant's max_requests: its own, or an eighth of
// the gateway's total (at least 1), so that no tenant holds all the slots.
func TenantMaxRequests(l Limits, total int) int {
	if l.MaxRequests > 0 {
		return int(l.MaxRequests)
	}
	return max(1, total/8)
}

// limitField reads one limit field k of [gateway] or a [[tenant]] into l;
// known = false if k is not a limit.
func limitField(fail func(string, ...any), k string, v any, l *Limits) (known bool) {
	ints := map[string]struct {
		dst    *int64
		lo, hi int64
	}{
		"max_value_bytes":     {&l.MaxValueBytes, 1024, 512 << 20},
		"max_reply_bytes":     {&l.MaxReplyBytes, 1024, 4 << 30},
		"max_elements":        {&l.MaxElements, 1, 1 << 40},
		"max_lcs_bytes":       {&l.MaxLCSBytes, 1, 1 << 40},
		"scan_count":          {&l.ScanCount, 1, 1 << 30},
		"keys_budget":         {&l.KeysBudget, 1, 1 << 40},
		"commands_per_second": {&l.CommandsPerSecond, 0, 1 << 30},
		"bytes_per_second":    {&l.BytesPerSecond, 0, 1 << 40},
		"max_connections":     {&l.MaxConnections, 1, 1 << 20},
		"max_memory":          {&l.MaxMemory, 0, 1 << 50},
		"max_requests":        {&l.MaxRequests, 1, 100000},
	}
	if f, ok := ints[k]; ok {
		if n, ok := gwInt(fail, v, f.lo, f.hi); ok {
			*f.dst = n
		}
		return true
	}
	if k == "script_time" {
		if d, ok := gwDuration(fail, v, 10*time.Millisecond, time.Minute); ok {
			l.ScriptTime = d
		}
		return true
	}
	return false
}

// gatewayWide reads a [gateway]-only limit; known = false if k is none.
func gatewayWide(fail func(string, ...any), k string, v any, g *Gateway) (known bool) {
	switch k {
	case "max_total_requests":
		if n, ok := gwInt(fail, v, 1, 100000); ok {
			g.MaxRequests = int(n)
		}
	case "max_total_connections":
		if n, ok := gwInt(fail, v, 1, 1<<20); ok {
			g.MaxConnections = int(n)
		}
	case "max_body_memory":
		if n, ok := gwInt(fail, v, 1<<20, 1<<40); ok {
			g.MaxBodyMemory = n
		}
	case "body_timeout":
		if d, ok := gwDuration(fail, v, 100*time.Millisecond, time.Hour); ok {
			g.BodyTimeout = d
		}
	default:
		return quotaWide(fail, k, v, g)
	}
	return true
}

// tenantLimitField reads a [[tenant]] field that is a limit or eval.
func tenantLimitField(fail func(string, ...any), k string, v any, tn *Tenant) (known bool) {
	if k == "eval" {
		b, ok := v.(bool)
		if !ok {
			fail("must be true or false, not %s", typeName(v))
		}
		tn.Eval = b
		return true
	}
	return limitField(fail, k, v, &tn.Limits)
}

// WithDefaults is l with each zero field taken from d (a Limits built in
// code rather than read from a file leaves fields out).
func (l Limits) WithDefaults(d Limits) Limits {
	pick := func(v *int64, dv int64) {
		if *v == 0 {
			*v = dv
		}
	}
	pick(&l.MaxValueBytes, d.MaxValueBytes)
	pick(&l.MaxReplyBytes, d.MaxReplyBytes)
	pick(&l.MaxElements, d.MaxElements)
	pick(&l.MaxLCSBytes, d.MaxLCSBytes)
	pick(&l.ScanCount, d.ScanCount)
	pick(&l.KeysBudget, d.KeysBudget)
	pick(&l.CommandsPerSecond, d.CommandsPerSecond)
	pick(&l.BytesPerSecond, d.BytesPerSecond)
	pick(&l.MaxConnections, d.MaxConnections)
	pick(&l.MaxMemory, d.MaxMemory)
	pick(&l.MaxRequests, d.MaxRequests)
	if l.ScriptTime == 0 {
		l.ScriptTime = d.ScriptTime
	}
	return l
}
