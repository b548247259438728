package store

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redisrepl/redisrepl/webdis"
)

// FuzzParseStates: whatever a side answers to a read (a RESP reply, as
// Webdis's .raw passes it on), parseStates never panics, and what it
// accepts is one state per key, each either Deferred, Big, or holding as
// many elements as its header said; a well-formed reply built from the
// fuzzer's fields parses back to them.
func FuzzParseStates(f *testing.F) {
	f.Add([]byte("*1\r\n$11\r\nstring 0 -2\r\n"), uint8(1), "hash", int64(5), []byte("f\x00v"), uint8(2))
	f.Add([]byte("*1\r\n$13\r\nlist 0 -1 100\r\n"), uint8(1), "zset", int64(0), []byte{}, uint8(0))
	f.Add([]byte("*2\r\n$10\r\nstring 0 1\r\n$1\r\nv\r\n"), uint8(1), "set", int64(0), []byte{}, uint8(0))
	f.Add([]byte("*1\r\n$-1\r\n"), uint8(3), "none", int64(-1), []byte("x"), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, nkeys uint8, ty string, exp int64, elem []byte, nelems uint8) {
		keys := make([][]byte, nkeys%8)
		for i := range keys {
			keys[i] = []byte(fmt.Sprintf("k%d", i))
		}
		if reply, err := webdis.ParseReply(data); err == nil {
			if states, err := parseStates(keys, reply); err == nil {
				if len(states) != len(keys) {
					t.Fatalf("%d states for %d keys", len(states), len(keys))
				}
				for _, st := range states {
					if (st.Big || st.Deferred) && len(st.Elems) > 0 {
						t.Fatalf("a big or deferred state with elements: %+v", st)
					}
				}
			}
		}
		// A reply laid out as readScript lays it out parses back exactly.
		n := int(nelems % 16)
		if ty == "" || strings.Contains(ty, " ") {
			return // Redis's type names are words
		}
		reply := []any{[]byte(ty + " " + strconv.FormatInt(exp, 10) + " " + strconv.Itoa(n))}
		for range n {
			reply = append(reply, elem)
		}
		states, err := parseStates([][]byte{[]byte("k")}, reply)
		if err != nil {
			t.Fatalf("a well-formed reply refused: %v", err)
		}
		st := states[0]
		if st.Type != ty || st.ExpireAt != exp || st.Digest != digestOf(ty, st.Elems) || len(st.Elems) != n || st.Big || st.Deferred {
			t.Fatalf("parsed %+v from type %q expiry %d, %d elements", st, ty, exp, n)
		}
	})
}
