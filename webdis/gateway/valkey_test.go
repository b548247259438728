package gateway

import (
	"testing"

	"github.com/gomodule/redigo/redis"
)

// Valkey 8 words a script's ACL failure differently from Redis 7.0; both
// count as the tenant's refusal (metrics, log). The strings are the servers'
// replies to a user without the key or the command (redis-cli, ACL SETUSER).
func TestScriptACLFailuresOfRedisAndValkeyAreRefusals(t *testing.T) {
	for _, e := range []string{
		// Redis 7.0.15
		"NOPERM this user has no permissions to access one of the keys used as arguments",
		"ERR The user executing the script can't access at least one of the keys mentioned in the command arguments script: a6435f8bc0284559435b42e79c5e60efcc3c1801, on @user_script:1.",
		"ERR The user executing the script can't run this command or subcommand script: 08ff1a5b4abfbbd0584ad348bea95f12acf85454, on @user_script:1.",
		// Valkey 8.0.1
		"NOPERM No permissions to access a key",
		"ERR ACL failure in script: No permissions to access a key script: a6435f8bc0284559435b42e79c5e60efcc3c1801, on @user_script:1.",
		"ERR ACL failure in script: User u has no permissions to run the 'keys' command script: 08ff1a5b4abfbbd0584ad348bea95f12acf85454, on @user_script:1.",
	} {
		if !isACLRefusal(redis.Error(e)) {
			t.Errorf("%q is not taken for an ACL refusal", e)
		}
	}
	if isACLRefusal(redis.Error("ERR wrong number of arguments for 'get' command")) {
		t.Error("a plain error taken for an ACL refusal")
	}
}
