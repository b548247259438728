package store

import (
	"bytes"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestClusterStagingKeyHashesToItsTargetsSlot: the staging key of a big key's
// copy is in its target's Redis Cluster slot (CLUSTER KEYSLOT), so the
// RENAME into place is not CROSSSLOT, for a target with or without a hash
// tag; and it is still a staging key of the namespace.
func TestClusterStagingKeyHashesToItsTargetsSlot(t *testing.T) {
	cl := webdistest.NewCluster(t, 3, 0)
	c := cl.ConnT(t, cl.Seeds()[0])
	prefix := []byte("lab1:")
	for _, key := range []string{"lab1:big", "lab1:{user7}:h", "lab1:\x00\xff/+%", "lab1:{x}{y}", "lab1:" + string(bytes.Repeat([]byte("z"), 300))} {
		tmp := stagingKeyFor(prefix, []byte(key))
		if !IsStaging(prefix, tmp) {
			t.Errorf("%q: %q is not a staging key of the namespace", key, tmp)
		}
		want, _ := redis.Int(c.Do("CLUSTER", "KEYSLOT", key))
		got, err := redis.Int(c.Do("CLUSTER", "KEYSLOT", tmp))
		if err != nil || got != want {
			t.Errorf("%q: staging key %q in slot %d, the key in %d (%v)", key, tmp, got, want, err)
		}
		if bytes.Equal(tmp, stagingKeyFor(prefix, []byte(key))) {
			t.Errorf("%q: two staging keys are the same", key)
		}
	}
}
