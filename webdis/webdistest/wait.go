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
	deadline := time.Now().Add(d)
	for {
		l, err := Dump(local, prefix)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Dump(remote, prefix)
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
			return l
		}
		if time.Now().After(deadline) {
			if len(diff) > 20 {
				diff = append(diff[:20], "...")
			}
			t.Fatalf("sides differ after %v (%d keys locally, %d remotely):\n%s", d, len(l), len(r), strings.Join(diff, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
