package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayLimitsOverriddenPerTenant: a limit in [gateway] is every
// tenant's default, a [[tenant]] may override it, and eval is per tenant.
func TestGatewayLimitsOverriddenPerTenant(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	text := gwHead + "max_value_bytes = 1048576\nscript_time = \"50ms\"\nmax_total_connections = 10\nbody_timeout = \"5s\"\n" + gwTenants +
		"max_value_bytes = 2048\ncommands_per_second = 100\neval = true\n"
	g, err := ParseGateway(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a, b := g.Tenants[0], g.Tenants[1]
	if a.Limits.MaxValueBytes != 1<<20 || a.Limits.ScriptTime != 50*time.Millisecond || a.Eval ||
		a.Limits.MaxReplyBytes != DefaultLimits.MaxReplyBytes || a.Limits.CommandsPerSecond != 0 {
		t.Errorf("labA: %+v", a)
	}
	if b.Limits.MaxValueBytes != 2048 || b.Limits.CommandsPerSecond != 100 || !b.Eval || b.Limits.ScriptTime != 50*time.Millisecond {
		t.Errorf("labB: %+v", b)
	}
	if g.MaxConnections != 10 || g.BodyTimeout != 5*time.Second || g.MaxBodyMemory != DefaultGatewayMaxBodyMemory {
		t.Errorf("gateway: %d %v %d", g.MaxConnections, g.BodyTimeout, g.MaxBodyMemory)
	}
	if a.Equal(Tenant{Name: a.Name, Client: a.Client, Namespaces: a.Namespaces, Read: a.Read, Limits: DefaultLimits}) {
		t.Error("tenants with other limits compare equal: a reload would not apply them")
	}
	_, err = ParseGateway(path, []byte(gwHead+"max_value_bytes = 10\n"+gwTenants+"eval = \"yes\"\nscript_time = \"2h\"\n"))
	for _, want := range []string{"gateway.max_value_bytes: 10: must be from 1024", `tenant "labB": eval: must be true or false`, `tenant "labB": script_time: 2h: must be from`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
