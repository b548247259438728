package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The cluster hub's tests (docs/ARCHITECTURE.md, "A cluster hub") start a
// Redis Cluster of 3 masters and 3 replicas each; they do not depend on
// WEBDISTEST_FRONT, so CI runs them once (make test-cluster: -run
// TestCluster).

func clusterLinkConfig(hub *webdistest.ClusterHub, ns, direction string) config.Link {
	return config.Link{Name: "cluster-" + direction, Local: hub.LocalAddr, LocalAddr: hub.LocalAddr, Namespace: ns,
		Remote: hub.URL, Cert: hub.Cert, Key: hub.Key, CA: hub.CA, Direction: config.Direction(direction),
		StateFile: hub.Dir + "/link-" + direction + ".state"}.WithDefaults()
}

// clusterClient writes to the hub cluster directly, as the hub's other
// labs' writes would land there.
func clusterClient(t *testing.T, hub *webdistest.ClusterHub) *goredis.ClusterClient {
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: hub.Cluster.Seeds(), Protocol: 2, MaxRedirects: 16})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterLinkEveryType replicates every type, binary keys, TTLs, a
// big value and big collections (chunked copies through staging keys),
// and deletes, through the gateway to a cluster, in push and in both.
func TestClusterLinkEveryType(t *testing.T) {
	for _, direction := range []string{"push", "both"} {
		t.Run(direction, func(t *testing.T) {
			hub := webdistest.NewClusterHub(t, webdistest.Options{Namespaces: []string{"lab1:"}})
			local := hub.Local(t)
			cc := clusterClient(t, hub)
			ctx := context.Background()
			cc.Set(ctx, "lab2:other", "not mine", 0)
			local.Do("SET", "lab1:before", "start")
			runLink(t, clusterLinkConfig(hub, "lab1:", direction))
			bigHash := []any{"lab1:bighash"}
			for i := range 30000 {
				bigHash = append(bigHash, fmt.Sprintf("f%d", i), fmt.Sprintf("v%d", i))
			}
			cmds := [][]any{
				{"SET", "lab1:s", "v"}, {"HSET", "lab1:h", "f", "v", "", "e"}, {"RPUSH", "lab1:l", "a", "b"},
				{"SADD", "lab1:set", "x"}, {"ZADD", "lab1:z", 1.5, "m"}, {"XADD", "lab1:x", "1-1", "f", "v"},
				{"SET", "lab1:bin\x00/+%.raw\n\xff", "v\x00\xff"}, {"SET", "lab1:ttl", "t", "PX", 60000},
				{"SET", "lab1:big", bytes.Repeat([]byte("0123456789"), 150_000)},
				append([]any{"HSET"}, bigHash...),
				{"SET", "lab1:{tag}a", "1"}, {"SET", "lab1:{tag}b", "2"},
			}
			for i := range 200 { // a burst over every slot of the cluster
				cmds = append(cmds, []any{"SET", fmt.Sprintf("lab1:burst:%d", i), i})
			}
			for _, cmd := range cmds {
				if _, err := local.Do(cmd[0].(string), cmd[1:]...); err != nil {
					t.Fatal(err)
				}
			}
			dump := hub.WaitEqual(t, "lab1:", 30*time.Second)
			if len(dump) != len(cmds)+1 {
				t.Errorf("%d keys, want %d", len(dump), len(cmds)+1)
			}
			for i := range 100 {
				local.Do("DEL", fmt.Sprintf("lab1:burst:%d", i))
			}
			local.Do("DEL", "lab1:bighash", "lab1:s")
			local.Do("PEXPIRE", "lab1:h", 120000)
			hub.WaitEqual(t, "lab1:", 20*time.Second)
			if direction == "both" {
				cc.Set(ctx, "lab1:from-hub", "back", 0)
				cc.Del(ctx, "lab1:l")
				cc.HSet(ctx, "lab1:h2", "a", "b")
				cc.PExpire(ctx, "lab1:z", 90*time.Second)
				cc.ZAdd(ctx, "lab1:z2", goredis.Z{Score: 2, Member: "n"})
				webdistest.WaitFor(t, 15*time.Second, "the hub's changes locally", func() bool {
					v, _ := redis.String(local.Do("GET", "lab1:from-hub"))
					n, _ := redis.Int(local.Do("EXISTS", "lab1:l", "lab1:h2", "lab1:z2"))
					ttl, _ := redis.Int(local.Do("PTTL", "lab1:z"))
					return v == "back" && n == 2 && ttl > 0
				})
				hub.WaitEqual(t, "lab1:", 10*time.Second)
			}
			if v, _ := cc.Get(ctx, "lab2:other").Result(); v != "not mine" {
				t.Errorf("another namespace was touched: %q", v)
			}
			if n, _ := redis.Int(local.Do("EXISTS", "lab2:other")); n != 0 {
				t.Error("another namespace was copied locally")
			}
		})
	}
}

// TestClusterCommandsSplitPerSlot: multi-key commands across slots are
// split and merged into one reply; one that cannot be split is refused
// whole (CROSSSLOT), applied nowhere; SCAN and KEYS cover every master
// and only the tenant's keys.
func TestClusterCommandsSplitPerSlot(t *testing.T) {
	hub := webdistest.NewClusterHub(t, webdistest.Options{Namespaces: []string{"lab1:"},
		Tenants: []config.Tenant{{Name: "other", Client: "other lab", Namespaces: []string{"lab2:"}}}})
	c := webdisClient(t, hub.URL, hub.Cert, hub.Key, hub.CA)
	cc := clusterClient(t, hub)
	ctx := context.Background()
	do := func(args ...string) (any, error) {
		b := make([][]byte, len(args))
		for i, a := range args {
			b[i] = []byte(a)
		}
		return c.Do(ctx, b...)
	}
	const n = 300
	mset := []string{"MSET"}
	mget := []string{"MGET"}
	for i := range n {
		mset = append(mset, fmt.Sprintf("lab1:k%d", i), fmt.Sprint(i))
		mget = append(mget, fmt.Sprintf("lab1:k%d", i))
		cc.Set(ctx, fmt.Sprintf("lab2:k%d", i), "other", 0)
	}
	if v, err := redis.String(do(mset...)); err != nil || v != "OK" {
		t.Fatalf("MSET across slots: %q %v", v, err)
	}
	vs, err := redis.Strings(do(append(mget, "lab1:none")...))
	if err != nil || len(vs) != n+1 {
		t.Fatalf("MGET across slots: %d values, %v", len(vs), err)
	}
	for i := range n {
		if vs[i] != fmt.Sprint(i) {
			t.Fatalf("MGET: value %d is %q", i, vs[i])
		}
	}
	if vs[n] != "" {
		t.Errorf("MGET of a missing key: %q", vs[n])
	}
	if e, err := redis.Int(do(append([]string{"EXISTS"}, mget[1:]...)...)); err != nil || e != n {
		t.Errorf("EXISTS across slots: %d %v", e, err)
	}
	if _, err := do("RENAME", "lab1:k1", "lab1:k2"); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("RENAME across slots: %v, want Redis's CROSSSLOT", err)
	}
	if v, _ := cc.Get(ctx, "lab1:k1").Result(); v != "1" {
		t.Errorf("a refused RENAME touched its key: %q", v)
	}
	if _, err := do("MGET", "lab1:k1", "lab2:k1"); err == nil {
		t.Error("MGET of another tenant's key across slots was served")
	}
	// SCAN: a cursor through every master; only the tenant's keys.
	seen := map[string]bool{}
	nodes := map[uint64]bool{}
	for cursor, steps := "0", 0; ; steps++ {
		v, err := redis.Values(do("SCAN", cursor, "COUNT", "50"))
		if err != nil || len(v) != 2 || steps > 10000 {
			t.Fatalf("SCAN: %v %v", v, err)
		}
		cursor, _ = redis.String(v[0], nil)
		keys, _ := redis.Strings(v[1], nil)
		for _, k := range keys {
			if !strings.HasPrefix(k, "lab1:") {
				t.Fatalf("SCAN listed %q", k)
			}
			seen[k] = true
		}
		cur, _ := strconv.ParseUint(cursor, 10, 64)
		nodes[cur&0xff] = true
		if cursor == "0" {
			break
		}
	}
	if len(seen) != n {
		t.Errorf("SCAN listed %d of the tenant's %d keys", len(seen), n)
	}
	if len(nodes) < 3 {
		t.Errorf("SCAN's cursors named %d nodes, want every master's", len(nodes))
	}
	keys, err := redis.Strings(do("KEYS", "lab1:k*"))
	if err != nil || len(keys) != n {
		t.Errorf("KEYS: %d keys, %v", len(keys), err)
	}
	if d, err := redis.Int(do(append([]string{"DEL"}, mget[1:]...)...)); err != nil || d != n {
		t.Errorf("DEL across slots: %d %v", d, err)
	}
	for i := range n {
		if v, err := cc.Get(ctx, fmt.Sprintf("lab2:k%d", i)).Result(); v != "other" {
			t.Fatalf("the other tenant's lab2:k%d: %q %v", i, v, err)
		}
	}
}
