package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// A tenant may write the canary keys of its namespaces (outside them:
// redisrepl:canary:<namespace>...) with SET, check and delete them, and
// nothing else: no other command on them, and no canary key of another
// tenant's namespace.
func TestTenantCanaryKeys(t *testing.T) {
	e := newEnv(t, tenantsAB)
	a := e.client(t, "labA")
	own := "redisrepl:canary:labA:link-1"
	for _, args := range [][]string{{"SET", own, "t", "PX", "30000"}, {"EXISTS", own}, {"DEL", own}} {
		if st, body := post(t, a, e.url, enc(args...)); st != http.StatusOK || strings.HasPrefix(body, "-") {
			t.Errorf("%v on its own canary key: %d %q", args, st, body)
		}
	}
	for _, args := range [][]string{
		{"SET", "redisrepl:canary:labB:link-1", "t"}, // another tenant's
		{"SET", "redisrepl:canary:labAx", "t"},       // not under labA:'s
		{"APPEND", own, strings.Repeat("x", 100)},    // not what a canary needs
		{"SETRANGE", own, "0", "a"},                  // not allowed by its ACL whatever the size
		{"HSET", own + "h", "f", "v"},                // not a second namespace
		{"GET", own},                                 // nor readable data
		{"RENAME", own, "labA:moved"},                // nor a way in or out
		{"EVAL", "return redis.call('SET',KEYS[1],'x')", "1", "redisrepl:canary:labB:x"},
	} {
		if st, body := post(t, a, e.url, enc(args...)); !refused(st, body) {
			t.Errorf("%v: %d %q, want refused", args, st, body)
		}
	}
}
