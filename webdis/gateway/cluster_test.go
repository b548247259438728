package gateway_test

import (
	"bytes"
	"context"
	"fmt"
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
				webdistest.WaitFor(t, 15*time.Second, "the hub's changes locally", func() bool {
					v, _ := redis.String(local.Do("GET", "lab1:from-hub"))
					n, _ := redis.Int(local.Do("EXISTS", "lab1:l", "lab1:h2"))
					return v == "back" && n == 1
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
