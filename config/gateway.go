package config

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// The gateway's file (redisrepl gateway -config FILE) has one [gateway]
// table and one [[tenant]] table per lab. It is validated as strictly as the
// service's file, with every problem named by file, line and field.

// Defaults of the [gateway] settings that have one.
const (
	DefaultGatewayPath       = "/"
	DefaultGatewayMaxBody    = 64 << 20
	DefaultGatewayMaxStreams = 32
	DefaultGatewayHeaderTime = 10 * time.Second
	DefaultGatewayIdleTime   = 120 * time.Second
	DefaultGatewayUserPrefix = "redisrepl-gw-"
	// DefaultGatewayKeyspaceEvents is what a link needs: every key event.
	DefaultGatewayKeyspaceEvents = "KA"
)

// Gateway is a loaded, valid gateway file.
type Gateway struct {
	Path string // the file

	Listen   string // host:port
	URLPath  string // the `path` field: URL prefix served, "/" or "/x/y" (no trailing slash)
	Cert     string // server certificate (absolute path)
	Key      string
	ClientCA string

	Redis         string // as written (may hold a password: see RedisRedacted)
	RedisAddr     string // host:port
	RedisDB       int
	RedisUser     string
	RedisPassword string
	RedisTLS      bool
	// RedisCluster: the seed nodes of a Redis Cluster hub (gateway_hub.go);
	// empty for one Redis.
	RedisCluster []string
	// Sentinel: the hub is the master they name (gateway_sentinel.go);
	// Redis* then give its credentials, database and TLS only.
	Sentinel Sentinel

	MetricsAddr string // "" = off
	LogLevel    string

	MaxBodyBytes  int64         // largest request body
	MaxStreams    int           // open SUBSCRIBE/PSUBSCRIBE streams per tenant
	HeaderTimeout time.Duration // time to read a request's headers
	IdleTimeout   time.Duration // keep-alive connection idle limit
	UserPrefix    string        // ACL user names are UserPrefix + tenant name
	Disabled      []string      // commands refused to every tenant (upper case)
	// KeyspaceEvents are added to the hub's notify-keyspace-events at start
	// and after a restart of the hub ("" = leave it alone).
	KeyspaceEvents string

	Limits         Limits        // per tenant, unless its [[tenant]] says otherwise
	MaxConnections int           // open connections to the gateway, all tenants
	MaxRequests    int           // requests in flight to the hub, all tenants (fairqueue.go)
	MaxBodyMemory  int64         // request bodies held at once, all tenants
	BodyTimeout    time.Duration // time to receive a whole request body
	Quota          QuotaScan     // how tenants' memory is measured (gateway_quota.go)

	Tenants []Tenant
}

// Tenant is one [[tenant]]: a lab, known by its client certificate's name.
type Tenant struct {
	Name       string
	Client     string   // certificate subject CN or DNS SAN
	Namespaces []string // prefixes read and written
	Read       []string // prefixes only read
	Eval       bool     // may run its own read-only scripts (gateway_limits.go)
	Limits     Limits   // [gateway]'s, with the tenant's overrides
}

// RedisRedacted is Redis with any password replaced by "xxxxx" (the
// Sentinels and the master's name for a hub they manage).
func (g *Gateway) RedisRedacted() string {
	if g.Sentinel.Set() {
		return g.Sentinel.String()
	}
	return redactURL(g.Redis)
}

// Equal says whether two tenants have the same settings.
func (t Tenant) Equal(o Tenant) bool {
	return t.Name == o.Name && t.Client == o.Client &&
		slices.Equal(t.Namespaces, o.Namespaces) && slices.Equal(t.Read, o.Read) &&
		t.Eval == o.Eval && t.Limits == o.Limits
}

// LoadGateway reads the file at path and parses it with ParseGateway.
func LoadGateway(path string) (*Gateway, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseGateway(path, data)
}

// WatchGateway is Watch for the gateway's file.
func WatchGateway(ctx context.Context, path string, debounce time.Duration, onChange func(*Gateway, error)) error {
	return watchFile(ctx, path, debounce, ParseGateway, onChange, watchHooks{})
}

// ParseGateway parses and validates data, the contents of the gateway file
// at path. Relative paths are resolved against path's directory, and the
// certificate, key and CA files are read to check them. The error is an
// *Error, or an ErrorList when there are several problems.
func ParseGateway(path string, data []byte) (*Gateway, error) {
	p, raw, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	g := &Gateway{Path: path, URLPath: DefaultGatewayPath, LogLevel: "info",
		MaxBodyBytes: DefaultGatewayMaxBody, MaxStreams: DefaultGatewayMaxStreams,
		HeaderTimeout: DefaultGatewayHeaderTime,
		IdleTimeout:   DefaultGatewayIdleTime, UserPrefix: DefaultGatewayUserPrefix,
		KeyspaceEvents: DefaultGatewayKeyspaceEvents, Limits: DefaultLimits,
		MaxConnections: DefaultGatewayMaxConnections, MaxBodyMemory: DefaultGatewayMaxBodyMemory,
		BodyTimeout: DefaultGatewayBodyTimeout, Quota: DefaultQuotaScan, MaxRequests: DefaultGatewayMaxRequests}
	gp := &gwParser{core: p}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		switch v := raw[k]; k {
		case "gateway":
			if t, ok := v.(map[string]any); ok {
				gp.gateway(t, g)
			} else {
				gp.failG("", "[gateway] must be a table, not %s", typeName(v))
			}
		case "tenant":
			ts, ok := v.([]map[string]any)
			if !ok {
				gp.failG("", "tenant must be written as [[tenant]] tables")
				continue
			}
			for i, t := range ts {
				g.Tenants = append(g.Tenants, gp.tenant(i+1, t, g.Limits))
			}
		default:
			p.unknownTop(k)
		}
	}
	if raw["gateway"] == nil {
		p.record(&Error{File: p.file, Msg: "no [gateway] table"})
	}
	gp.crossCheck(g)
	if err := p.result(); err != nil {
		return nil, err
	}
	return g, nil
}

// gwParser reads the gateway's file, on the parser core (parse.go).
type gwParser struct {
	*core
	names []string // tenant names by index-1, for messages
}

// failG records a problem with field key of [gateway] ("" = the table).
func (p *gwParser) failG(key, format string, args ...any) {
	field := "gateway"
	if key != "" {
		field += "." + key
	}
	p.record(&Error{File: p.file, Line: p.lines.line("gateway", 0, key), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// failT records a problem with field key of the [[tenant]] number index.
func (p *gwParser) failT(index int, key, format string, args ...any) {
	name := ""
	if index-1 < len(p.names) {
		name = p.names[index-1]
	}
	who := fmt.Sprintf("tenant #%d", index)
	if name != "" {
		who = fmt.Sprintf("tenant %q", name)
	}
	if key != "" {
		who += ": " + key
	}
	p.record(&Error{File: p.file, Line: p.lines.line("tenant", index, key), Field: who, Msg: fmt.Sprintf(format, args...)})
}

func (p *gwParser) gateway(t map[string]any, g *Gateway) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		fail := func(format string, args ...any) { p.failG(k, format, args...) }
		switch k {
		case "listen":
			if s, ok := gwAddr(fail, v, false); ok {
				g.Listen = s
			}
		case "path":
			if s, ok := gwStr(fail, v); ok {
				if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?#%") || strings.Contains(s, "//") {
					fail("%q: must start with \"/\" and hold no \"//\", \"?\", \"#\" or \"%%\"", s)
				}
				g.URLPath = s
				if s != "/" {
					g.URLPath = strings.TrimRight(s, "/")
				}
			}
		case "cert", "key", "client_ca":
			if s, ok := p.gwFile(fail, v); ok {
				switch k {
				case "cert":
					g.Cert = s
				case "key":
					g.Key = s
				default:
					g.ClientCA = s
				}
			}
		case "redis":
			if s, ok := gwStr(fail, v); ok {
				g.Redis = s
				var d draft
				if err := parseLocal(s, &d); err != nil {
					fail("%v", err)
				}
				g.RedisAddr, g.RedisDB, g.RedisUser, g.RedisPassword, g.RedisTLS =
					d.LocalAddr, max(d.urlDB, 0), d.LocalUser, d.LocalPassword, d.LocalTLS
			}
		case "metrics_addr":
			if s, ok := gwAddr(fail, v, true); ok && s != "" {
				g.MetricsAddr = s
			}
		case "log_level":
			if s, ok := gwOneOf(fail, v, logLevels...); ok {
				g.LogLevel = s
			}
		case "max_body_bytes":
			if n, ok := gwInt(fail, v, 1024, 1<<30); ok {
				g.MaxBodyBytes = n
			}
		case "max_streams":
			if n, ok := gwInt(fail, v, 1, 100000); ok {
				g.MaxStreams = int(n)
			}
		case "header_timeout":
			if d, ok := gwDuration(fail, v, 100*time.Millisecond, time.Hour); ok {
				g.HeaderTimeout = d
			}
		case "idle_timeout":
			if d, ok := gwDuration(fail, v, time.Second, 24*time.Hour); ok {
				g.IdleTimeout = d
			}
		case "disabled":
			if ss, ok := gwStrings(fail, v); ok {
				g.Disabled = nil
				for _, c := range ss {
					if c == "" || strings.ContainsAny(c, " /") {
						fail("%q is not a command name", c)
					}
					g.Disabled = append(g.Disabled, strings.ToUpper(c))
				}
			}
		case "keyspace_events":
			if s, ok := gwStr(fail, v); ok {
				for _, c := range s {
					if !strings.ContainsRune("KEg$lshzxetmdnA", c) {
						fail("%q: %q is not a class of notify-keyspace-events (KEg$lshzxetmdnA)", s, c)
						break
					}
				}
				g.KeyspaceEvents = s
			}
		case "user_prefix":
			if s, ok := gwStr(fail, v); ok {
				if !validName(s) {
					fail("%q: use 1 to 64 letters, digits, '.', '_' or '-'", s)
				}
				g.UserPrefix = s
			}
		default:
			if !limitField(fail, k, v, &g.Limits) && !gatewayWide(fail, k, v, g) && !hubField(fail, k, v, g) && !sentinelField(fail, k, v, g) {
				fail("unknown field")
			}
		}
	}
	for _, k := range []string{"listen", "cert", "key", "client_ca"} {
		if _, ok := t[k]; !ok {
			p.failG(k, "required")
		}
	}
	p.hubRequired(t) // gateway_hub.go
	p.checkGatewayFiles(g)
}

func (p *gwParser) tenant(index int, t map[string]any, limits Limits) Tenant {
	tn := Tenant{Limits: limits}
	if n, ok := t["name"].(string); ok {
		tn.Name = n
	}
	p.names = append(p.names, tn.Name)
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		fail := func(format string, args ...any) { p.failT(index, k, format, args...) }
		switch k {
		case "name":
			if s, ok := gwStr(fail, v); ok && !validName(s) {
				fail("%q: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'", s)
			}
		case "client":
			if s, ok := gwNonEmpty(fail, v); ok {
				tn.Client = s
			}
		case "namespaces", "read":
			ss, ok := gwStrings(fail, v)
			if !ok {
				continue
			}
			for _, s := range ss {
				if s == "" {
					fail("a prefix must not be empty: it would be every key of the hub")
				}
			}
			if k == "namespaces" {
				if len(ss) == 0 {
					fail("must name at least one prefix")
				}
				tn.Namespaces = ss
			} else {
				tn.Read = ss
			}
		default:
			if !tenantLimitField(fail, k, v, &tn) {
				fail("unknown field")
			}
		}
	}
	for _, k := range []string{"name", "client", "namespaces"} {
		if _, ok := t[k]; !ok {
			p.failT(index, k, "required")
		}
	}
	return tn
}

// crossCheck: names and clients unique, and no two tenants' namespaces
// overlap (one a prefix of the other), which would let one tenant write
// the other's keys.
func (p *gwParser) crossCheck(g *Gateway) {
	for j, b := range g.Tenants {
		for i, a := range g.Tenants[:j] {
			if a.Name != "" && a.Name == b.Name {
				p.failT(j+1, "name", "%q is already the name of the [[tenant]] at line %d", b.Name, p.lines.line("tenant", i+1, ""))
			}
			if a.Client != "" && a.Client == b.Client {
				p.failT(j+1, "client", "%q is already the client of tenant %q", b.Client, a.Name)
			}
			for _, nb := range b.Namespaces {
				for _, na := range a.Namespaces {
					if nb != "" && na != "" && (strings.HasPrefix(na, nb) || strings.HasPrefix(nb, na)) {
						p.failT(j+1, "namespaces", "%q overlaps namespace %q of tenant %q (line %d)", nb, na, a.Name, p.lines.line("tenant", i+1, ""))
					}
				}
			}
		}
	}
}
