package webdistest

import (
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Conns returns connections to the hub's local and remote Redis, closed
// when t ends.
func (h *Hub) Conns(t testing.TB) (local, remote redis.Conn) {
	t.Helper()
	l, err := h.Local()
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Remote()
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); r.Close() })
	return l, r
}

// WaitFor polls cond every 20 ms and fails t if it is not true within d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitEqual waits until both sides of the hub hold the same keys under
// prefix (but those skip, if not nil, leaves out), byte for byte, expiry
// times within 1.5 s, and fails t with the differences if they do not
// within d. It returns the local side's dump.
func (h *Hub) WaitEqual(t testing.TB, prefix string, d time.Duration, skip func(key string) bool) map[string]Key {
	t.Helper()
	local, remote := h.Conns(t)
	l, _ := waitEqual(t, local, remote, prefix, d, skip, [3]string{"sides", "locally", "remotely"})
	return l
}

// waitEqual is WaitEqual on two connections; it also returns the time it
// took. names are the two together, then where each is, for the failure.
func waitEqual(t testing.TB, a, b redis.Conn, prefix string, d time.Duration, skip func(key string) bool, names [3]string) (map[string]Key, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		l, err := Dump(a, prefix)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Dump(b, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if skip != nil {
			for _, m := range []map[string]Key{l, r} {
				for k := range m {
					if skip(k) {
						delete(m, k)
					}
				}
			}
		}
		diff := Diff(l, r, 1500)
		if len(diff) == 0 {
			return l, time.Since(start)
		}
		if time.Since(start) > d {
			if len(diff) > 20 {
				diff = append(diff[:20], "...")
			}
			t.Fatalf("%s differ after %v (%d keys %s, %d %s):\n%s", names[0], d, len(l), names[1], len(r), names[2], strings.Join(diff, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
