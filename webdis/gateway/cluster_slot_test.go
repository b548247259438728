package gateway_test

import (
	"fmt"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestClusterKeySlotIsRedisSlot: the gateway groups keys by the slot
// Redis computes (CLUSTER KEYSLOT), hash tags included.
func TestClusterKeySlotIsRedisSlot(t *testing.T) {
	cl := webdistest.NewCluster(t, 3, 0)
	c := cl.ConnT(t, cl.Seeds()[0])
	keys := []string{"", "a", "lab1:x", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}x",
		"lab1:\x00redisrepl-staging\x00{lab1:big}0123", "\xff\x00/+%", "x}y{z"}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("lab1:burst:%d", i))
	}
	for _, k := range keys {
		want, err := redis.Int(c.Do("CLUSTER", "KEYSLOT", k))
		if err != nil {
			t.Fatal(err)
		}
		if got := gateway.KeySlot([]byte(k)); got != want {
			t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}
