package webdis

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// parseNoPanic calls ParseReply and turns a panic into a test failure.
func parseNoPanic(t testing.TB, in string) (v any, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("ParseReply(%.80q) panicked: %v", in, r)
			v, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return ParseReply([]byte(in))
}

func TestParseReplyValid(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want any
	}{
		{"simple", "+OK\r\n", "OK"},
		{"empty simple", "+\r\n", ""},
		{"simple with spaces", "+hello world\r\n", "hello world"},
		{"error", "-ERR value is not an integer or out of range\r\n", redis.Error("ERR value is not an integer or out of range")},
		{"wrongtype", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value")},
		{"integer", ":42\r\n", int64(42)},
		{"zero", ":0\r\n", int64(0)},
		{"negative", ":-12345\r\n", int64(-12345)},
		{"int64 max", ":9223372036854775807\r\n", int64(9223372036854775807)},
		{"int64 min", ":-9223372036854775808\r\n", int64(-9223372036854775808)},
		{"bulk", "$5\r\nhello\r\n", []byte("hello")},
		{"bulk with NUL", "$3\r\na\x00b\r\n", []byte("a\x00b")},
		{"bulk with CRLF", "$6\r\n\r\na\r\nb\r\n", []byte("\r\na\r\nb")},
		{"bulk CRLF only", "$2\r\n\r\n\r\n", []byte("\r\n")},
		{"bulk high bytes", "$3\r\n\xff\xfe\x80\r\n", []byte("\xff\xfe\x80")},
		{"bulk looks like RESP", "$5\r\n+OK\r\n\r\n", []byte("+OK\r\n")},
		{"empty bulk", "$0\r\n\r\n", []byte{}},
		{"nil bulk", "$-1\r\n", nil},
		{"nil array", "*-1\r\n", nil},
		{"empty array", "*0\r\n", []any{}},
		{"array", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n", []any{[]byte("f"), []byte("v")}},
		{"mixed array", "*5\r\n+OK\r\n:7\r\n$-1\r\n$0\r\n\r\n-ERR x\r\n",
			[]any{"OK", int64(7), nil, []byte{}, redis.Error("ERR x")}},
		{"nested", "*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$1\r\nx\r\n", []any{[]any{int64(1), int64(2)}, []any{[]byte("x")}}},
		{"nil array inside", "*2\r\n*-1\r\n*0\r\n", []any{nil, []any{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseNoPanic(t, c.in)
			if err != nil {
				t.Fatalf("ParseReply(%q): %v", c.in, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParseReply(%q) = %#v, want %#v", c.in, got, c.want)
			}
		})
	}
}

// The types are those of redigo, so its helpers read them.
func TestParseReplyRedigoHelpers(t *testing.T) {
	v, _ := ParseReply([]byte("*3\r\n$1\r\na\r\n$-1\r\n$1\r\nc\r\n"))
	ss, err := redis.Strings(v, nil)
	if err != nil || !reflect.DeepEqual(ss, []string{"a", "", "c"}) {
		t.Errorf("redis.Strings = %q, %v", ss, err)
	}
	v, _ = ParseReply([]byte(":5\r\n"))
	if n, err := redis.Int(v, nil); n != 5 || err != nil {
		t.Errorf("redis.Int = %d, %v", n, err)
	}
	v, _ = ParseReply([]byte("$-1\r\n"))
	if _, err := redis.Bytes(v, nil); err != redis.ErrNil {
		t.Errorf("redis.Bytes(nil bulk) error = %v, want ErrNil", err)
	}
	v, _ = ParseReply([]byte("-ERR boom\r\n"))
	if _, ok := v.(redis.Error); !ok {
		t.Errorf("error reply is %T, want redis.Error", v)
	}
	if _, ok := v.(error); !ok {
		t.Errorf("error reply does not implement error")
	}
}

// A bulk reply must not alias past its end: appending to it must not
// overwrite the bytes that follow in the input.
func TestParseReplyBulkCapacity(t *testing.T) {
	in := []byte("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
	v, err := ParseReply(in)
	if err != nil {
		t.Fatal(err)
	}
	a := v.([]any)[0].([]byte)
	_ = append(a, 'X', 'X', 'X')
	if string(in) != "*2\r\n$1\r\na\r\n$1\r\nb\r\n" {
		t.Fatalf("append to a parsed bulk overwrote the input: %q", in)
	}
}

func TestParseReplyMalformed(t *testing.T) {
	cases := []string{
		"",
		"+",
		"+OK",
		"+OK\r",
		"+OK\n",
		"-ERR",
		":",
		":\r\n",
		":12",
		":abc\r\n",
		":1.5\r\n",
		":99999999999999999999\r\n", // overflows int64
		"$",
		"$5",
		"$5\r\n",
		"$5\r\nhel",
		"$5\r\nhello",
		"$5\r\nhello\r",
		"$5\r\nhelloXY",
		"$5\r\nhello world\r\n", // longer than announced
		"$3\r\nhello\r\n",       // shorter than announced
		"$-2\r\n",
		"$-100\r\n",
		"$x\r\n",
		"$\r\n",
		"$ 1\r\na\r\n",
		"$1 \r\na\r\n",
		"$0x1\r\na\r\n",
		"$9223372036854775807\r\n",
		"$9223372036854775806\r\n",
		"$9223372036854775805\r\nab\r\n",
		"$9223372036854775808\r\n",
		"$-9223372036854775808\r\n",
		"$18446744073709551615\r\n",
		"$4294967295\r\nx\r\n",
		"*",
		"*1",
		"*1\r\n",
		"*2\r\n$1\r\na\r\n", // count stays, element missing (what Webdis sends for nested arrays)
		"*2\r\n$1\r\n1\r\n",
		"*3\r\n$1\r\nx\r\n$1\r\ny\r\n",
		"*-2\r\n",
		"*x\r\n",
		"*\r\n",
		"*1000000000\r\n",
		"*1000000000\r\n:1\r\n:2\r\n",
		"*9223372036854775807\r\n:1\r\n",
		"*2147483647\r\n+\r\n+\r\n+\r\n",
		"*3\r\n+\r\n+\r\n", // exactly too short for the 3-bytes-per-element bound
		"*1\r\n*1\r\n*1\r\n",
		strings.Repeat("*1\r\n", 100) + ":1\r\n", // nested too deeply
		strings.Repeat("*1\r\n", 100000),
		"+OK\r\nX",
		"+OK\r\n+OK\r\n",
		"$1\r\na\r\n\r\n",
		":1\r\n ",
		"*0\r\n*0\r\n",
		"$-1\r\n$-1\r\n",
		"!3\r\nabc\r\n",
		"%1\r\n+a\r\n+b\r\n", // RESP3 map
		"_\r\n",              // RESP3 null
		",1.5\r\n",           // RESP3 double
		"#t\r\n",             // RESP3 boolean
		"OK\r\n",
		"\r\n",
		"\x00",
		"{\"GET\":\"x\"}",
		"<html>502 Bad Gateway</html>",
	}
	for _, in := range cases {
		v, err := parseNoPanic(t, in)
		if err == nil {
			t.Errorf("ParseReply(%.60q) = %#v, want an error", in, v)
		}
	}
}

func TestParseReplyDepth(t *testing.T) {
	// maxDepth levels of arrays are fine, one more is not
	ok := strings.Repeat("*1\r\n", maxDepth) + ":1\r\n"
	if _, err := parseNoPanic(t, ok); err != nil {
		t.Errorf("%d nested arrays: %v", maxDepth, err)
	}
	bad := strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n"
	if _, err := parseNoPanic(t, bad); err == nil {
		t.Errorf("%d nested arrays accepted", maxDepth+1)
	}
}

// Every prefix of a valid reply is an error, never a panic or a success.
func TestParseReplyEveryTruncation(t *testing.T) {
	full := "*6\r\n+OK\r\n-ERR x\r\n:-7\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n$0\r\n\r\n*-1\r\n"
	if _, err := parseNoPanic(t, full); err != nil {
		t.Fatalf("full reply: %v", err)
	}
	for i := 0; i < len(full); i++ {
		if v, err := parseNoPanic(t, full[:i]); err == nil {
			t.Errorf("prefix %q parsed as %#v", full[:i], v)
		}
	}
}

// A huge array count with a tiny body must not allocate the announced size.
func TestParseReplyHugeCountNoAlloc(t *testing.T) {
	in := []byte("*100000000\r\n:1\r\n")
	allocs := testing.AllocsPerRun(10, func() { ParseReply(in) })
	if allocs > 5 {
		t.Errorf("%v allocations for a refused huge array", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		ParseReply(in)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated by 10 refused huge arrays", n)
	}
}

func BenchmarkParseReplyArray(b *testing.B) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", 1000)
	for i := 0; i < 1000; i++ {
		v := fmt.Sprintf("value-%d", i)
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(v), v)
	}
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseReply(in); err != nil {
			b.Fatal(err)
		}
	}
}
