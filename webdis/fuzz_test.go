package webdis

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// FuzzParseReply: ParseReply never panics, and what it accepts is a well-formed
// tree of the redigo types whose re-encoding is the input itself (ParseReply
// accepts nothing but one value filling the input exactly).
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR boom\r\n", ":42\r\n", ":-1\r\n", "$3\r\na\x00b\r\n", "$0\r\n\r\n", "$-1\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "*2\r\n*1\r\n:1\r\n$-1\r\n",
		"*2\r\n$1\r\n1\r\n", "$5\r\nhel", "*1000000\r\n:1\r\n", "$9223372036854775807\r\n",
		"$-2\r\n", "+OK\r\nX", "%1\r\n", ":17",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		v, err := parseNoPanic(t, string(data)) // a panic fails this input only, not the whole run
		if t.Failed() {
			return
		}
		if v2, err2 := ParseReply(data); !reflect.DeepEqual(v, v2) || (err == nil) != (err2 == nil) {
			t.Fatalf("ParseReply on a []byte and on its copy disagree")
		}
		if !bytes.Equal(in, data) {
			t.Fatalf("ParseReply modified its input")
		}
		if err != nil {
			if v != nil {
				t.Fatalf("ParseReply returned %#v with error %v", v, err)
			}
			return
		}
		var buf bytes.Buffer
		if err := writeRESP(&buf, v, 0); err != nil {
			t.Fatalf("ParseReply(%q) = %#v: %v", data, v, err)
		}
		// Integers and lengths may be spelled in several ways ("+1", "01"),
		// so compare by parsing the canonical form again.
		v2, err := ParseReply(buf.Bytes())
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", buf.Bytes(), data, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("%q parsed as %#v, its canonical form %q as %#v", data, v, buf.Bytes(), v2)
		}
	})
}

// writeRESP encodes v canonically; it fails on any type ParseReply must not
// return.
func writeRESP(buf *bytes.Buffer, v any, depth int) error {
	if depth > maxDepth+1 {
		return fmt.Errorf("nested deeper than %d", maxDepth)
	}
	switch v := v.(type) {
	case nil:
		buf.WriteString("$-1\r\n")
	case string:
		if bytes.Contains([]byte(v), []byte("\r\n")) {
			return fmt.Errorf("simple string %q holds CRLF", v)
		}
		fmt.Fprintf(buf, "+%s\r\n", v)
	case redis.Error:
		if bytes.Contains([]byte(v), []byte("\r\n")) {
			return fmt.Errorf("error %q holds CRLF", string(v))
		}
		fmt.Fprintf(buf, "-%s\r\n", string(v))
	case int64:
		fmt.Fprintf(buf, ":%d\r\n", v)
	case []byte:
		if v == nil {
			return fmt.Errorf("nil []byte (a nil bulk must be an untyped nil)")
		}
		fmt.Fprintf(buf, "$%d\r\n%s\r\n", len(v), v)
	case []any:
		fmt.Fprintf(buf, "*%d\r\n", len(v))
		for _, e := range v {
			if err := writeRESP(buf, e, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected type %T", v)
	}
	return nil
}

// FuzzEncodeArg: AppendArg emits only [A-Za-z0-9_-] and %XX escapes, which
// decode back to the input; EncodedLen and CommandLen agree; a command split
// on '/' after removing ".raw" gives back its arguments.
func FuzzEncodeArg(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "a.b", ".raw", "+", "%", "%2F", "\x00", "\xff", "\r\n", "x y", "é", "SET"} {
		f.Add([]byte(s), []byte("k"))
	}
	f.Fuzz(func(t *testing.T, arg, other []byte) {
		checkArg(t, arg)
		args := [][]byte{[]byte("SET"), other, arg}
		enc := AppendCommand(nil, args...)
		if n := CommandLen(args...); n != len(enc) {
			t.Fatalf("CommandLen = %d, len(AppendCommand) = %d", n, len(enc))
		}
		got := splitCommand(t, enc)
		if len(got) != 3 || !bytes.Equal(got[1], other) || !bytes.Equal(got[2], arg) {
			t.Fatalf("AppendCommand(%q) = %q splits into %q", args, enc, got)
		}
	})
}
