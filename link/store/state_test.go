package store

import (
	"bytes"
	"math"
	"strconv"
	"testing"

	"github.com/redisrepl/redisrepl/webdis"
)

// The apply request is packed by arithmetic (applyOverhead, markReserve,
// applyLen), without building it: the sum must be exactly the size of the
// request sent when the side lacks the script, EVAL with casApplyScript's
// source and the longest write mark.
func TestApplySizeIsTheEncodedRequestSize(t *testing.T) {
	prefix := []byte("ns/ \x00:")
	states := []State{
		{Key: []byte("ns/ \x00:a"), Type: "string", ExpireAt: 1764000000123, Elems: [][]byte{[]byte("v a/l%u\x00e")}, Expect: "0123456789abcdef"},
		{Key: []byte("ns/ \x00:b"), Type: "none", Elems: [][]byte{}},
		{Key: []byte("ns/ \x00:c"), Type: "hash", ExpireAt: -1, Elems: [][]byte{[]byte("f"), []byte(""), []byte("g"), []byte("\xff")}},
		{Key: []byte("ns/ \x00:d"), Type: "odd type?", Elems: nil},
	}
	for n := 1; n <= len(states); n++ {
		part := states[:n]
		args := [][]byte{[]byte("EVAL"), []byte(casApplyScript.Src), []byte(strconv.Itoa(n))}
		for _, st := range part {
			args = append(args, st.Key)
		}
		args = append(args, prefix, WriteMark(math.MaxInt32, prefix, math.MaxUint64))
		for _, st := range part {
			args = append(args, []byte(st.Expect))
		}
		want := 0
		for _, st := range part {
			args = append(args, []byte(st.Type), []byte(strconv.FormatInt(st.ExpireAt, 10)), []byte(strconv.Itoa(len(st.Elems))))
			args = append(args, st.Elems...)
		}
		want = webdis.CommandLen(args...)
		got := New("t", nil, prefix, Limits{}).applyOverhead(n)
		for i := range part {
			got += part[i].applyLen()
		}
		if got != want {
			t.Errorf("%d keys: packing counts %d bytes, the request is %d", n, got, want)
		}
	}
}

func TestIntLenIsTheDecimalLength(t *testing.T) {
	for _, n := range []int64{0, 9, 10, 99, 100, -1, -9, -10, 1764000000123, math.MaxInt64, math.MinInt64} {
		if got, want := intLen(n), len(strconv.FormatInt(n, 10)); got != want {
			t.Errorf("intLen(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestParseIntAgreesWithStrconv(t *testing.T) {
	for _, s := range []string{"0", "-2", "-1", "42", "1764000000123", "9223372036854775807", "-9223372036854775808", "99999999999999999999", "", "-", "1a", " 1", "+1"} {
		got, gerr := parseInt([]byte(s))
		want, werr := strconv.ParseInt(s, 10, 64)
		if (gerr != nil) != (werr != nil) || gerr == nil && got != want {
			t.Errorf("parseInt(%q) = %d, %v; strconv says %d, %v", s, got, gerr, want, werr)
		}
	}
}

// BenchmarkParseStates is the cost per key of decoding a read of 256
// strings of 100 bytes (as a burst reads them), digests included.
func BenchmarkParseStates(b *testing.B) {
	const n = 256
	keys := make([][]byte, n)
	var reply []any
	for i := range keys {
		keys[i] = []byte("bench:" + strconv.Itoa(i))
		reply = append(reply, []byte("string 0 1"), make([]byte, 100))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseStates(keys, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
}

func TestWriteMarkParsesBack(t *testing.T) {
	prefix := []byte("lab/1:\x00*")
	for _, tok := range []uint64{0, 7, math.MaxUint64} {
		m := WriteMark(3, prefix, tok)
		key, ok := bytes.CutPrefix(m, []byte("__keyspace@3__:"))
		if !ok {
			t.Fatalf("%q is not a keyspace channel of db 3", m)
		}
		if got, ok := ParseWriteMark(prefix, key); !ok || got != tok {
			t.Errorf("ParseWriteMark(%q) = %d, %v; want %d", key, got, ok, tok)
		}
		if !IsStaging(prefix, key) {
			t.Errorf("%q is not a staging name: links that know no marks would replicate it", key)
		}
	}
	for _, key := range []string{"lab/1:\x00*x", "other:\x00redisrepl-staging\x00written:1", "lab/1:\x00*\x00redisrepl-staging\x00canary", "lab/1:\x00*\x00redisrepl-staging\x00written:x"} {
		if _, ok := ParseWriteMark(prefix, []byte(key)); ok {
			t.Errorf("%q parsed as a write mark", key)
		}
	}
}
