package gateway

import "testing"

func cmdOf(args ...string) *command {
	c := &command{}
	for _, a := range args {
		c.args = append(c.args, []byte(a))
	}
	return c
}

// TestGrowthOfCommands: what a command may do to memory, as the quota
// sorts it: removals and reads pass, replacing writes carry their keys and
// the bytes they write, the link's scripts are sorted by their SHA1.
func TestGrowthOfCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want growth
		keys int
		size int64
	}{
		{[]string{"GET", "k"}, growNone, 0, 0},
		{[]string{"HDEL", "k", "f"}, growNone, 0, 0},
		{[]string{"EXPIRE", "k", "10"}, growNone, 0, 0},
		{[]string{"DEL", "a", "b"}, growDelete, 2, 0},
		{[]string{"SET", "k", "12345", "PX", "100"}, growReplace, 1, 5},
		{[]string{"MSET", "a", "1", "b", "22"}, growReplace, 2, 3},
		{[]string{"HSET", "k", "f", "v"}, growAdd, 0, 0},
		{[]string{"SORT", "k", "STORE", "d"}, growAdd, 0, 0},
		{[]string{"SORT", "k"}, growNone, 0, 0},
		{[]string{"EVALSHA", linkReplacingSHAs[0], "2", "a", "b", "ns", "", "none"}, growReplace, 2, 6},
		{[]string{"EVALSHA", linkReplacingSHAs[0]}, growAdd, 0, 0},
		{[]string{"EVALSHA", linkReplacingSHAs[0], "9", "a"}, growAdd, 0, 0},
		{[]string{"EVALSHA", linkGrowingSHAs[0], "1", "a", "x"}, growAdd, 0, 0},
		{[]string{"EVALSHA", scanScriptSHA, "0", "0", "*", "10"}, growNone, 0, 0},
	} {
		g, keys, size := growthOf(cmdOf(tc.args...))
		if g != tc.want || len(keys) != tc.keys || size != tc.size {
			t.Errorf("%q: growth %d, %d keys, %d bytes; want %d, %d, %d", tc.args, g, len(keys), size, tc.want, tc.keys, tc.size)
		}
	}
}
