package link

import (
	"context"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// A conditional write (direction both) is made only over the state the
// decision was made on: a key changed on that side meanwhile is left alone
// and reported Skipped.
func TestConditionalApply(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	pool := NewPool(RedisAddr{Addr: hub.LocalAddr}, 2)
	defer pool.Close()
	s := &Store{Name: "local", Do: pool, Prefix: []byte("c:"), MaxElems: 1000, MaxBytes: 1 << 20, MaxBatchBytes: 1 << 20}
	ctx := context.Background()
	c, err := hub.Local()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Do("SET", "c:a", "read")
	c.Do("SET", "c:b", "read")
	read, err := s.Read(ctx, [][]byte{[]byte("c:a"), []byte("c:b")})
	if err != nil {
		t.Fatal(err)
	}
	c.Do("SET", "c:b", "written meanwhile") // after the read, before the write
	states := []State{
		{Key: []byte("c:a"), Type: "string", Elems: [][]byte{[]byte("new")}, Expect: digestPrefix(read[0].Digest)},
		{Key: []byte("c:b"), Type: "string", Elems: [][]byte{[]byte("new")}, Expect: digestPrefix(read[1].Digest)},
		{Key: []byte("c:c"), Type: "string", Elems: [][]byte{[]byte("new")}}, // no condition
	}
	if _, err := s.Apply(ctx, states); err != nil {
		t.Fatal(err)
	}
	if states[0].Skipped || !states[1].Skipped || states[2].Skipped {
		t.Fatalf("skipped: %v %v %v, want false true false", states[0].Skipped, states[1].Skipped, states[2].Skipped)
	}
	for k, want := range map[string]string{"c:a": "new", "c:b": "written meanwhile", "c:c": "new"} {
		if v, _ := redis.String(c.Do("GET", k)); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
}
