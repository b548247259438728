package gateway

import (
	"bytes"
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

// appendRaw appends v in RESP; inArray applies Webdis's integer rule.
func appendRaw(b []byte, v any, inArray bool) []byte {
	switch v := v.(type) {
	case string:
		b = append(b, '+')
		b = append(b, v...)
		return append(b, '\r', '\n')
	case redis.Error:
		b = append(b, '-')
		b = append(b, v...)
		return append(b, '\r', '\n')
	case []byte:
		return appendBulk(b, v)
	case int64:
		if inArray {
			var tmp [24]byte
			return appendBulk(b, strconv.AppendInt(tmp[:0], v, 10))
		}
		b = append(b, ':')
		b = strconv.AppendInt(b, v, 10)
		return append(b, '\r', '\n')
	case []any:
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, '\r', '\n')
		for _, e := range v {
			b = appendRaw(b, e, true)
		}
		return b
	}
	return append(b, "$-1\r\n"...)
}

func appendBulk(b, s []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendJSON appends Webdis's JSON object for the reply v to the command
// named verb (as sent).
func appendJSON(b []byte, verb []byte, v any) []byte {
	b = append(b, '{')
	b = appendJSONString(b, verb)
	b = append(b, ':')
	switch v := v.(type) {
	case string:
		b = append(b, "[true,"...)
		b = appendJSONString(b, []byte(v))
		b = append(b, ']')
	case redis.Error:
		b = append(b, "[false,"...)
		b = appendJSONString(b, []byte(v))
		b = append(b, ']')
	case []byte:
		if equalFold(verb, "INFO") {
			b = appendInfo(b, v)
		} else {
			b = appendJSONString(b, v)
		}
	case int64:
		b = strconv.AppendInt(b, v, 10)
	case []any:
		if equalFold(verb, "HGETALL") {
			if obj, ok := appendHash(b, v); ok {
				b = obj
				break
			}
		}
		b = appendJSONArray(b, v)
	default:
		b = append(b, "null"...)
	}
	return append(b, '}')
}

func appendJSONArray(b []byte, v []any) []byte {
	b = append(b, '[')
	for i, e := range v {
		if i > 0 {
			b = append(b, ',')
		}
		switch e := e.(type) {
		case []byte:
			b = appendJSONString(b, e)
		case int64:
			b = strconv.AppendInt(b, e, 10)
		case []any:
			b = appendJSONArray(b, e)
		default: // nil, and statuses and errors inside an array, as Webdis
			b = append(b, "null"...)
		}
	}
	return append(b, ']')
}

// appendHash writes HGETALL's field/value pairs as an object, a field
// written again keeping its first place (as Webdis's JSON library does).
func appendHash(b []byte, v []any) ([]byte, bool) {
	if len(v)%2 != 0 {
		return b, false
	}
	for _, e := range v {
		if _, ok := e.([]byte); !ok {
			return b, false
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
	b = append(b, '{')
	for n, i := range order {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v[i].([]byte))
		b = append(b, ':')
		b = appendJSONString(b, v[i+1].([]byte))
	}
	return append(b, '}'), true
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
	return append(b, '"')
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
