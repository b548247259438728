package webdistest

import "os"

// RedisEnv names the environment variable that picks the Redis server the
// harness runs wherever it runs "redis-server" (the local Redis, the hub
// Redis, and any test's own through StartProcess): e.g.
//
//	WEBDISTEST_REDIS=valkey-server go test ./link/...
//
// runs them all on Valkey, for the compatibility matrix (README).
const RedisEnv = "WEBDISTEST_REDIS"

// redisServer is the program run for "redis-server".
func redisServer() string {
	if s := os.Getenv(RedisEnv); s != "" {
		return s
	}
	return "redis-server"
}
