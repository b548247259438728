package webdistest

import (
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// WEBDISTEST_REDIS=valkey-server runs Valkey as the local and the hub Redis.
func TestRedisEnvRunsValkey(t *testing.T) {
	RequireProgram(t, "valkey-server", "valkey-server (bookworm-backports)")
	t.Setenv(RedisEnv, "valkey-server")
	for _, front := range []Front{FrontNginx, FrontGateway} {
		h := New(t, Options{Front: front})
		for side, addr := range map[string]string{"local": h.LocalAddr, "hub": h.RemoteAddr} {
			c, err := dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			info, err := redis.String(c.Do("INFO", "server"))
			c.Close()
			if err != nil || !strings.Contains(info, "valkey_version:") {
				t.Errorf("front %v, %s Redis is not Valkey: %v\n%.300s", front, side, err, info)
			}
		}
	}
}
