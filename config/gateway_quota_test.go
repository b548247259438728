package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayMemoryQuotaPerTenant: max_memory is a per-tenant limit with
// no quota by default; the walk's settings are [gateway]-only, and bad
// values are named by file, line and field.
func TestGatewayMemoryQuotaPerTenant(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	g, err := ParseGateway(path, []byte(gwHead+"max_memory = 1048576\nmemory_scan_interval = \"2s\"\n"+gwTenants+"max_memory = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := g.Tenants[0], g.Tenants[1]; a.Limits.MaxMemory != 1<<20 || b.Limits.MaxMemory != 0 {
		t.Errorf("max_memory: labA %d, labB %d", a.Limits.MaxMemory, b.Limits.MaxMemory)
	}
	if g.Quota.Interval != 2*time.Second || g.Quota.KeysPerSecond != DefaultQuotaScan.KeysPerSecond {
		t.Errorf("walk: %+v", g.Quota)
	}
	if g, _ := ParseGateway(path, []byte(gwHead+gwTenants)); g.Tenants[0].Limits.MaxMemory != 0 {
		t.Error("a quota by default")
	}
	_, err = ParseGateway(path, []byte(gwHead+"memory_scan_keys_per_second = 1\n"+gwTenants+"max_memory = -5\nmemory_scan_interval = \"1s\"\n"))
	for _, want := range []string{"gateway.toml:", "gateway.memory_scan_keys_per_second: 1: must be from 100", `tenant "labB": max_memory: -5: must be from 0`, `tenant "labB": memory_scan_interval: unknown field`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
