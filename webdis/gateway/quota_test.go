package gateway_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

const quotaTenants = `
[[tenant]]
name       = "labA"
client     = "labA"
namespaces = ["labA:"]
max_memory = 1048576

[[tenant]]
name       = "labB"
client     = "labB"
namespaces = ["labB:"]
`

// memoryMetric is tenant's redisrepl_gateway_tenant_memory_bytes, -1 if absent.
func memoryMetric(t *testing.T, e *env, tenant string) int64 {
	t.Helper()
	m := regexp.MustCompile(`redisrepl_gateway_tenant_memory_bytes\{tenant="` + tenant + `"\} (\S+)`).FindStringSubmatch(e.metrics(t))
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

// TestMemoryQuotaRefusesGrowingWritesUntilTenantDeletes: a tenant past its
// max_memory gets its growing writes refused with an error naming the
// quota, while its reads, deletes and shrinking writes pass and another
// tenant writes as before; once it has deleted, it writes again. The
// background walk measures what its keys hold.
func TestMemoryQuotaRefusesGrowingWritesUntilTenantDeletes(t *testing.T) {
	e := newEnvWith(t, `memory_scan_interval = "200ms"`, quotaTenants)
	a, b := e.client(t, "labA"), e.client(t, "labB")
	val := strings.Repeat("v", 64<<10)
	refusedAt := -1
	for i := range 40 {
		st, body, err := tryPost(a, e.url, enc("SET", fmt.Sprintf("labA:k%d", i), val))
		if err != nil || st != 200 {
			t.Fatalf("SET %d: %d %v", i, st, err)
		}
		if strings.HasPrefix(body, "-ERR gateway: over the tenant's max_memory (1048576 bytes") {
			refusedAt = i
			break
		}
		if body != "+OK\r\n" {
			t.Fatalf("SET %d: %q", i, body)
		}
	}
	if refusedAt < 10 || refusedAt > 17 {
		t.Fatalf("labA (1 MiB quota) was refused at its write %d of 64 KiB (-1: never)", refusedAt)
	}
	// The walk sees what the keys hold: at least their values.
	hub := e.direct(t)
	var held int64
	for i := range refusedAt {
		n, _ := redis.Int64(hub.Do("MEMORY", "USAGE", fmt.Sprintf("labA:k%d", i)))
		held += n
	}
	walks := func() string {
		return regexp.MustCompile(`redisrepl_gateway_memory_walks_total (\S+)`).FindString(e.metrics(t))
	}
	w0 := walks()
	deadline := time.Now().Add(5 * time.Second)
	for walks() == w0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a walk that began after the writes
	if got := memoryMetric(t, e, "labA"); got < held || got > held+held/4+4096 {
		t.Errorf("labA's estimate %d, its keys hold %d (MEMORY USAGE)", got, held)
	}
	if !strings.Contains(e.metrics(t), `redisrepl_gateway_tenant_memory_quota_bytes{tenant="labA"} 1.048576e+06`) {
		t.Error("/metrics lacks labA's quota")
	}
	for _, ts := range e.g.Status().Tenants {
		if ts.Name == "labA" && (ts.MaxMemory != 1<<20 || ts.MemoryBytes < held) {
			t.Errorf("/status of labA: memory %d, max %d", ts.MemoryBytes, ts.MaxMemory)
		}
	}

	// Over quota: what adds is refused, the rest passes.
	for _, cmd := range [][]string{
		{"SET", "labA:new", "x"},
		{"HSET", "labA:h", "f", "v"},
		{"APPEND", "labA:k0", "more"},
		{"SET", "labA:k0", val + val},
		{"MSET", "labA:k1", val + val, "labA:new", "y"},
	} {
		wantPrefix(t, a, e.url, enc(cmd...), "-ERR gateway: over the tenant's max_memory")
	}
	wantPrefix(t, a, e.url, enc("GET", "labA:k1"), "$65536\r\n")
	wantPrefix(t, a, e.url, enc("SET", "labA:k1", "short"), "+OK")
	wantPrefix(t, a, e.url, enc("EXPIRE", "labA:k2", "1000"), ":1")
	// Another tenant is not held back.
	for i := range 30 {
		wantPrefix(t, b, e.url, enc("SET", fmt.Sprintf("labB:k%d", i), val), "+OK")
	}
	// Deleting brings labA back under.
	for i := range refusedAt {
		wantPrefix(t, a, e.url, enc("DEL", fmt.Sprintf("labA:k%d", i)), ":1")
	}
	wantPrefix(t, a, e.url, enc("SET", "labA:new", val), "+OK")
	wantPrefix(t, a, e.url, enc("HSET", "labA:h", "f", "v"), ":1")
	// Adding to a key counts too, near the quota as far from it.
	added := 0
	for i := range 40 {
		_, body, _ := tryPost(a, e.url, enc("HSET", "labA:h", fmt.Sprint("f", i), val))
		if !strings.HasPrefix(body, ":1") {
			break
		}
		added++
	}
	if added < 10 || added > 16 {
		t.Errorf("labA added %d fields of 64 KiB to a hash under a 1 MiB quota", added)
	}
	if !strings.Contains(e.metrics(t), `redisrepl_gateway_refusals_total{reason="over memory quota",tenant="labA"} 7`) {
		t.Errorf("/metrics lacks labA's 7 quota refusals:\n%s", grepLines(e.metrics(t), "quota"))
	}
	if strings.Contains(e.metrics(t), `reason="over memory quota",tenant="labB"`) {
		t.Error("labB was refused for a quota it does not have")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
