package gateway

import (
	"bytes"
	"io"
	"runtime"
	"strconv"
	"unicode/utf8"

	"github.com/gomodule/redigo/redis"
)

// Replies are redigo values (string for a status, []byte for a bulk
// string, int64, nil, []any, redis.Error) written in Webdis's formats.
//
// .raw is RESP as Redis sent it, with one rule of Webdis kept because
// clients rely on it: an integer inside an array is written as a bulk
// string (the link reads subscription messages as arrays of strings). Where
// Webdis's raw format is broken (it drops nested arrays, nils, statuses and
// errors inside an array while keeping the count, and cuts integers beyond
// 32 bits), the gateway writes correct RESP instead.
//
// .json is Webdis's JSON: {"VERB":value} with the verb as sent; a status or
// an error is [true,"OK"] or [false,"ERR ..."]; HGETALL is an object; INFO
// is an object of its lines. Strings are written whole (Webdis cuts them at
// a NUL byte and gives {} for invalid UTF-8; invalid bytes become U+FFFD
// here), and nested arrays are arrays (Webdis writes null).

// out is a reply being written: b, spilled to w (if any) whenever it
// holds spillAt bytes, so that a reply of any size needs O(spillAt) memory
// to encode (a NUL byte is 6 bytes of JSON).
type out struct {
	b   []byte
	w   io.Writer // nil: everything stays in b
	n   int       // bytes written to w
	err error     // the first error of w
	// pace, if set, is told of each part written to w (a tenant's rate).
	pace func(n int)
}

const spillAt = 32 << 10

func (o *out) spill() {
	if o.w == nil || len(o.b) < spillAt {
		return
	}
	o.flush()
	// A large reply gives way after each buffer: other tenants' small
	// requests then wait for a buffer's encoding, not for a time slice
	// of the scheduler (10 ms) behind every large reply in progress.
	runtime.Gosched()
}

func (o *out) flush() {
	if o.w == nil || len(o.b) == 0 {
		return
	}
	if o.err == nil {
		n, err := o.w.Write(o.b)
		o.n += n
		o.err = err
		if o.pace != nil {
			o.pace(n)
		}
	}
	o.b = o.b[:0]
}

// appendRaw appends v in RESP; inArray applies Webdis's integer rule.
func appendRaw(b []byte, v any, inArray bool) []byte {
	o := out{b: b}
	o.raw(v, inArray)
	return o.b
}

func (o *out) raw(v any, inArray bool) {
	switch v := v.(type) {
	case string:
		o.b = append(o.b, '+')
		o.b = append(o.b, v...)
		o.b = append(o.b, '\r', '\n')
	case redis.Error:
		o.b = append(o.b, '-')
		o.b = append(o.b, v...)
		o.b = append(o.b, '\r', '\n')
	case []byte:
		o.bulk(v)
	case int64:
		if inArray {
			var tmp [24]byte
			o.bulk(strconv.AppendInt(tmp[:0], v, 10))
			return
		}
		o.b = append(o.b, ':')
		o.b = strconv.AppendInt(o.b, v, 10)
		o.b = append(o.b, '\r', '\n')
	case []any:
		o.b = append(o.b, '*')
		o.b = strconv.AppendInt(o.b, int64(len(v)), 10)
		o.b = append(o.b, '\r', '\n')
		for _, e := range v {
			o.raw(e, true)
			o.spill()
		}
	default:
		o.b = append(o.b, "$-1\r\n"...)
	}
}

func (o *out) bulk(s []byte) {
	o.b = append(o.b, '$')
	o.b = strconv.AppendInt(o.b, int64(len(s)), 10)
	o.b = append(o.b, '\r', '\n')
	o.bytes(s)
	o.b = append(o.b, '\r', '\n')
}

// bytes appends s as it is, spilling on the way.
func (o *out) bytes(s []byte) {
	for len(s) > 0 {
		n := min(len(s), spillAt)
		o.b = append(o.b, s[:n]...)
		s = s[n:]
		o.spill()
	}
}

// appendJSON appends Webdis's JSON object for the reply v to the command
// named verb (as sent).
func appendJSON(b []byte, verb []byte, v any) []byte {
	o := out{b: b}
	o.json(verb, v)
	return o.b
}

func (o *out) json(verb []byte, v any) {
	o.b = append(o.b, '{')
	o.str(verb)
	o.b = append(o.b, ':')
	switch v := v.(type) {
	case string:
		o.b = append(o.b, "[true,"...)
		o.str([]byte(v))
		o.b = append(o.b, ']')
	case redis.Error:
		o.b = append(o.b, "[false,"...)
		o.str([]byte(v))
		o.b = append(o.b, ']')
	case []byte:
		if equalFold(verb, "INFO") {
			o.b = appendInfo(o.b, v)
		} else {
			o.str(v)
		}
	case int64:
		o.b = strconv.AppendInt(o.b, v, 10)
	case []any:
		if equalFold(verb, "HGETALL") && o.hash(v) {
			break
		}
		o.array(v)
	default:
		o.b = append(o.b, "null"...)
	}
	o.b = append(o.b, '}')
}

func (o *out) array(v []any) {
	o.b = append(o.b, '[')
	for i, e := range v {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		switch e := e.(type) {
		case []byte:
			o.str(e)
		case int64:
			o.b = strconv.AppendInt(o.b, e, 10)
		case []any:
			o.array(e)
		default: // nil, and statuses and errors inside an array, as Webdis
			o.b = append(o.b, "null"...)
		}
		o.spill()
	}
	o.b = append(o.b, ']')
}

// hash writes HGETALL's field/value pairs as an object, a field written
// again keeping its first place (as Webdis's JSON library does); false if
// v is not pairs of strings.
func (o *out) hash(v []any) bool {
	if len(v)%2 != 0 {
		return false
	}
	for _, e := range v {
		if _, ok := e.([]byte); !ok {
			return false
		}
	}
	order := make([]int, 0, len(v)/2) // index in v of each distinct field's last value
	first := make(map[string]int, len(v)/2)
	for i := 0; i < len(v); i += 2 {
		k := string(v[i].([]byte))
		if j, ok := first[k]; ok {
			order[j] = i
			continue
		}
		first[k] = len(order)
		order = append(order, i)
	}
	o.b = append(o.b, '{')
	for n, i := range order {
		if n > 0 {
			o.b = append(o.b, ',')
		}
		o.str(v[i].([]byte))
		o.b = append(o.b, ':')
		o.str(v[i+1].([]byte))
		o.spill()
	}
	o.b = append(o.b, '}')
	return true
}

// str appends s as a JSON string, spilling every spillAt bytes of s (cut
// at the start of a UTF-8 sequence, so that no character is split).
func (o *out) str(s []byte) {
	o.b = append(o.b, '"')
	for len(s) > 0 {
		n := len(s)
		if o.w != nil && n > spillAt {
			n = spillAt
			for k := 0; k < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); k++ {
				n--
			}
		}
		o.b = appendJSONChars(o.b, s[:n])
		s = s[n:]
		o.spill()
	}
	o.b = append(o.b, '"')
}

// appendInfo parses INFO's text as Webdis does: "key:value\r\n" pairs,
// where a key runs from the end of the previous line to the next ":"
// (comment lines stick to the key that follows them, as in Webdis).
func appendInfo(b []byte, s []byte) []byte {
	type kv struct{ k, v []byte }
	var pairs []kv
	idx := map[string]int{}
	for len(s) > 0 {
		colon := bytes.IndexByte(s, ':')
		if colon < 0 {
			break
		}
		k := s[:colon]
		s = s[colon+1:]
		nl := bytes.IndexByte(s, '\r')
		if nl < 0 {
			break
		}
		v := s[:nl]
		s = s[nl+1:]
		if len(s) > 0 && s[0] == '\n' {
			s = s[1:]
		}
		if i, ok := idx[string(k)]; ok {
			pairs[i].v = v
			continue
		}
		idx[string(k)] = len(pairs)
		pairs = append(pairs, kv{k, v})
	}
	b = append(b, '{')
	for i, p := range pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.k)
		b = append(b, ':')
		b = appendJSONString(b, p.v)
	}
	return append(b, '}')
}

const hexUpper = "0123456789ABCDEF"

// appendJSONString escapes as Webdis's JSON library does: \" \\ \b \f \n
// \r \t, other control characters as \u00XX, everything else as UTF-8.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	b = appendJSONChars(b, s)
	return append(b, '"')
}

// appendJSONChars is appendJSONString without the quotes.
func appendJSONChars(b []byte, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexUpper[c>>4], hexUpper[c&15])
		}
		i++
	}
	return b
}

// appendCustom is a reply for .txt, .bin and the other custom types: the
// bytes of a string, "+"/"-" and the text of a status or error, the digits
// of an integer. ok = false for nil (Webdis: 404) and arrays (here: 400).
func appendCustom(b []byte, v any) (out []byte, status int) {
	switch v := v.(type) {
	case []byte:
		return append(b, v...), 200
	case string:
		return append(append(b, '+'), v...), 200
	case redis.Error:
		return append(append(b, '-'), v...), 200
	case int64:
		return strconv.AppendInt(b, v, 10), 200
	case nil:
		return b, 404
	}
	return b, 400
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
