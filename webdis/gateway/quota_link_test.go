package gateway_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestLinkOverMemoryQuotaStillDeletes: a link pushing more than its
// tenant's max_memory fills the hub up to about the quota and no further;
// the keys it could not copy are retried, and once the lab deletes keys
// the link's deletes pass (its whole-key writes are replacing ones), the
// tenant gets back under, and the hub ends equal to the lab.
func TestLinkOverMemoryQuotaStillDeletes(t *testing.T) {
	const quota = 2 << 20
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"lab1:"},
		Limits: config.Limits{MaxMemory: quota}, Log: t.Logf})
	local, remote := hub.Conns(t)
	runLink(t, linkConfig(hub, "lab1:", "push"))
	val := strings.Repeat("v", 100<<10)
	for i := range 40 { // 4 MB, twice the quota
		if _, err := local.Do("SET", fmt.Sprintf("lab1:k%d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	metrics := func() string {
		rec := httptest.NewRecorder()
		hub.Gateway.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	webdistest.WaitFor(t, 20*time.Second, "writes over the quota refused", func() bool {
		return strings.Contains(metrics(), `reason="over memory quota",tenant="test"`)
	})
	time.Sleep(2 * time.Second) // the link's retries
	held := func() (n int64, keys int) {
		ks, _ := redis.Strings(remote.Do("KEYS", "lab1:*"))
		for _, k := range ks {
			m, _ := redis.Int64(remote.Do("MEMORY", "USAGE", k))
			n += m
		}
		return n, len(ks)
	}
	n, keys := held()
	t.Logf("the hub holds %d keys of lab1, %d bytes (quota %d)", keys, n, quota)
	if keys == 0 || keys >= 40 || n > quota+quota/4 {
		t.Errorf("the hub holds %d of lab1's 40 keys, %d bytes: the quota is %d", keys, n, quota)
	}
	for i := 5; i < 40; i++ {
		local.Do("DEL", fmt.Sprintf("lab1:k%d", i))
	}
	hub.WaitEqual(t, "lab1:", 60*time.Second, nil)
	if n, keys := held(); keys != 5 || n > quota {
		t.Errorf("after the lab deleted: the hub holds %d keys, %d bytes", keys, n)
	}
}
