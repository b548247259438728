package webdis

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/url"
	"testing"
)

// unhex is the value of a hex digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// pctDecode undoes percent-encoding the way Webdis does for a POST body
// argument (url.PathUnescape-style: "%XX" is one byte, everything else is
// itself). '+' is refused because Webdis would read it as a space, and an
// escaped byte that the encoder sends as itself is refused too, so that the
// check is strict about the encoder's output.
func pctDecode(enc []byte) ([]byte, error) {
	out := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		switch {
		case c == '%':
			if i+2 >= len(enc) {
				return nil, fmt.Errorf("truncated escape at %d in %q", i, enc)
			}
			hi, lo := unhex(enc[i+1]), unhex(enc[i+2])
			if hi < 0 || lo < 0 {
				return nil, fmt.Errorf("bad escape %q at %d", enc[i:i+3], i)
			}
			out = append(out, byte(hi<<4|lo))
			i += 2
		case isUnreserved(c):
			out = append(out, c)
		default:
			return nil, fmt.Errorf("byte %q at %d must be escaped in %q", c, i, enc)
		}
	}
	return out, nil
}

// isUnreserved is the set of bytes the encoder may send as themselves:
// [A-Za-z0-9_-], written independently of the package's table.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// checkArg fails t unless arg encodes to [A-Za-z0-9_-] and %XX escapes
// (upper-case hex) that decode back to arg, with EncodedLen matching.
func checkArg(t testing.TB, arg []byte) {
	t.Helper()
	enc := AppendArg(nil, arg)
	if n := EncodedLen(arg); n != len(enc) {
		t.Fatalf("EncodedLen(%q) = %d, len(AppendArg) = %d", arg, n, len(enc))
	}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c == '%' {
			if i+2 >= len(enc) || !isUpperHex(enc[i+1]) || !isUpperHex(enc[i+2]) {
				t.Fatalf("AppendArg(%q) = %q: bad escape at %d", arg, enc, i)
			}
			i += 2
			continue
		}
		if !isUnreserved(c) {
			t.Fatalf("AppendArg(%q) = %q: unescaped %q at %d", arg, enc, c, i)
		}
	}
	dec, err := pctDecode(enc)
	if err != nil {
		t.Fatalf("AppendArg(%q) = %q: %v", arg, enc, err)
	}
	if !bytes.Equal(dec, arg) {
		t.Fatalf("AppendArg(%q) = %q decodes to %q", arg, enc, dec)
	}
	if u, err := url.PathUnescape(string(enc)); err != nil || u != string(arg) {
		t.Fatalf("url.PathUnescape(%q) = %q, %v; want %q", enc, u, err, arg)
	}
	if u, err := url.QueryUnescape(string(enc)); err != nil || u != string(arg) {
		t.Fatalf("url.QueryUnescape(%q) = %q, %v; want %q (form decoding, '+' as space)", enc, u, err, arg)
	}
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func TestAppendArgEveryByte(t *testing.T) {
	for b := 0; b < 256; b++ {
		c := byte(b)
		checkArg(t, []byte{c})
		checkArg(t, []byte{'x', c, 'y'})
		checkArg(t, []byte{c, c, c})
		enc := AppendArg(nil, []byte{c})
		if isUnreserved(c) {
			if string(enc) != string(c) {
				t.Errorf("AppendArg(%q) = %q, want it unescaped", c, enc)
			}
		} else if want := fmt.Sprintf("%%%02X", c); string(enc) != want {
			t.Errorf("AppendArg(%q) = %q, want %q", c, enc, want)
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	checkArg(t, all)
	checkArg(t, nil)
	checkArg(t, []byte{})
}

func TestAppendArgSpecialsEscaped(t *testing.T) {
	want := map[byte]string{'.': "%2E", '+': "%2B", '/': "%2F", '%': "%25", ' ': "%20", 0: "%00", 0xff: "%FF",
		'\r': "%0D", '\n': "%0A", '&': "%26", '=': "%3D", '?': "%3F", '#': "%23", '~': "%7E", '*': "%2A"}
	for c, w := range want {
		if got := string(AppendArg(nil, []byte{c})); got != w {
			t.Errorf("AppendArg(%q) = %q, want %q", c, got, w)
		}
	}
	for _, s := range []string{"a.raw", ".raw", "a/b", "1+1", "100%", "%2F", "..", "a.json", "x.txt"} {
		enc := AppendArg(nil, []byte(s))
		if bytes.ContainsAny(enc, "./+") {
			t.Errorf("AppendArg(%q) = %q: a '.', '/' or '+' left unescaped", s, enc)
		}
		checkArg(t, []byte(s)) // every '%' starts an escape
	}
}

func TestAppendArgAppends(t *testing.T) {
	buf := []byte("prefix/")
	got := AppendArg(buf, []byte("a b"))
	if string(got) != "prefix/a%20b" {
		t.Errorf("AppendArg kept %q", got)
	}
}

func TestAppendArgRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		b := make([]byte, r.Intn(64))
		r.Read(b)
		checkArg(t, b)
	}
}

// splitCommand undoes AppendCommand: strip ".raw", split on '/', decode.
func splitCommand(t testing.TB, body []byte) [][]byte {
	t.Helper()
	rest, ok := bytes.CutSuffix(body, []byte(".raw"))
	if !ok {
		t.Fatalf("command %q does not end with .raw", body)
	}
	if bytes.Contains(rest, []byte(".")) {
		t.Fatalf("command %q has a '.' before the suffix", body)
	}
	var args [][]byte
	for _, p := range bytes.Split(rest, []byte("/")) {
		d, err := pctDecode(p)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, d)
	}
	return args
}

func TestAppendCommand(t *testing.T) {
	cases := []struct {
		args [][]byte
		want string
	}{
		{[][]byte{[]byte("PING")}, "PING.raw"},
		{[][]byte{[]byte("SET"), []byte("k"), []byte("")}, "SET/k/.raw"},
		{[][]byte{[]byte("SET"), []byte(""), []byte("v")}, "SET//v.raw"},
		{[][]byte{[]byte("SET"), []byte("a/b"), []byte("x.raw")}, "SET/a%2Fb/x%2Eraw.raw"},
		{[][]byte{[]byte("ECHO"), []byte("1+1 %")}, "ECHO/1%2B1%20%25.raw"},
		{[][]byte{[]byte("ECHO"), {0, '\r', '\n', 0xff}}, "ECHO/%00%0D%0A%FF.raw"},
		{nil, ".raw"},
	}
	for _, c := range cases {
		got := AppendCommand(nil, c.args...)
		if string(got) != c.want {
			t.Errorf("AppendCommand(%q) = %q, want %q", c.args, got, c.want)
		}
		if n := CommandLen(c.args...); n != len(got) {
			t.Errorf("CommandLen(%q) = %d, want %d", c.args, n, len(got))
		}
		if got := AppendCommand([]byte("old"), c.args...); string(got) != "old"+c.want {
			t.Errorf("AppendCommand on a non-empty buffer = %q", got)
		}
	}
}

func TestCommandLenRandom(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 1000; i++ {
		args := make([][]byte, 1+r.Intn(6))
		for j := range args {
			args[j] = make([]byte, r.Intn(40))
			r.Read(args[j])
		}
		enc := AppendCommand(nil, args...)
		if n := CommandLen(args...); n != len(enc) {
			t.Fatalf("CommandLen = %d, len(AppendCommand) = %d for %q", n, len(enc), args)
		}
		got := splitCommand(t, enc)
		if len(got) != len(args) {
			t.Fatalf("%q split into %d args, want %d", enc, len(got), len(args))
		}
		for j := range args {
			if !bytes.Equal(got[j], args[j]) {
				t.Fatalf("arg %d: %q, want %q", j, got[j], args[j])
			}
		}
	}
}

func BenchmarkAppendCommand(b *testing.B) {
	val := make([]byte, 1024)
	rand.New(rand.NewSource(3)).Read(val)
	args := [][]byte{[]byte("SET"), []byte("some:key:1234"), val}
	buf := make([]byte, 0, CommandLen(args...))
	b.SetBytes(int64(len(val)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendCommand(buf[:0], args...)
	}
}
