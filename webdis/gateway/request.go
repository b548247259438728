package gateway

import (
	"errors"
)

// A command arrives as Webdis reads it: "/"-separated arguments, in the URL
// path (GET, PUT) or the body (POST), with an optional reply format suffix
// (".json", ".raw", ...) on the last argument and an optional numeric first
// segment naming the database. The command name is taken as sent; every
// other argument is percent-decoded, "+" decoded as a space (Webdis does so
// in paths and bodies alike). PUT adds its body, untouched, as the last
// argument.
//
// Unlike nginx in front of Webdis, nothing is decoded before the split: a
// "%2F" in a GET path is a "/" inside one argument.

// format is a reply format.
type format uint8

const (
	fmtJSON   format = iota // the default
	fmtRaw                  // RESP
	fmtCustom               // .txt, .bin, .html ...: the bytes of a string reply
)

// formats are the suffixes Webdis knows, with their content types.
var formats = map[string]struct {
	f    format
	mime string
}{
	"json":  {fmtJSON, "application/json"},
	"js":    {fmtJSON, "application/javascript"},
	"raw":   {fmtRaw, "binary/octet-stream"},
	"bin":   {fmtCustom, "binary/octet-stream"},
	"txt":   {fmtCustom, "text/plain"},
	"html":  {fmtCustom, "text/html"},
	"xhtml": {fmtCustom, "application/xhtml+xml"},
	"xml":   {fmtCustom, "text/xml"},
	"png":   {fmtCustom, "image/png"},
	"jpg":   {fmtCustom, "image/jpeg"},
	"jpeg":  {fmtCustom, "image/jpeg"},
	"css":   {fmtCustom, "text/css"},
}

// command is a parsed request.
type command struct {
	args   [][]byte // args[0] is the command name as sent
	format format
	mime   string
	db     int // -1 = not given
}

// name is the command name, upper-cased, for policy and logs; cut at 40
// bytes (no command is longer), so that whatever a client sends in its
// place never reaches the logs whole.
func (c *command) name() string {
	n := c.args[0]
	if len(n) > 40 {
		return upper(n[:40]) + "..."
	}
	return upper(n)
}

var errNoCommand = errors.New("no command")

// parseCommand reads a command from uri (a GET or PUT path after the
// prefix, without its leading "/", or a POST body) and, for PUT, body.
// args reuse dst's storage.
func parseCommand(dst [][]byte, uri, body []byte) (command, error) {
	c := command{args: dst[:0], db: -1, mime: "application/json"}
	// A "?" ends the command, in a body too (Webdis does the same).
	for i, b := range uri {
		if b == '?' {
			uri = uri[:i]
			break
		}
	}
	if len(uri) == 0 && len(body) == 0 {
		return c, errNoCommand
	}
	// The format: a known suffix after the last "." of the last segment.
	for i := len(uri) - 1; i > 0 && uri[i] != '/'; i-- {
		if uri[i] == '.' {
			if f, ok := formats[string(uri[i+1:])]; ok {
				c.format, c.mime = f.f, f.mime
				uri = uri[:i]
			}
			break
		}
	}
	// The database: a first segment made of digits only (an empty one
	// counts, as in Webdis: "/SET/k/v" in a body is db 0).
	if slash := indexByte(uri, '/'); slash >= 0 {
		db, digits := 0, true
		for _, b := range uri[:slash] {
			if b < '0' || b > '9' {
				digits = false
				break
			}
			if db < 1<<24 {
				db = db*10 + int(b-'0')
			}
		}
		if digits {
			c.db = db
			uri = uri[slash+1:]
		}
	}
	first := true
	for {
		slash := indexByte(uri, '/')
		seg := uri
		if slash >= 0 {
			seg = uri[:slash]
		}
		if first {
			c.args = append(c.args, seg)
			first = false
		} else {
			c.args = append(c.args, decodeArg(seg))
		}
		if slash < 0 {
			break
		}
		uri = uri[slash+1:]
	}
	if len(body) > 0 {
		c.args = append(c.args, body)
	}
	return c, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// decodeArg percent-decodes seg in place when it holds something to
// decode: "%XX" with two hex digits is a byte, "+" a space; a "%" not
// followed by two hex digits stays as it is.
func decodeArg(seg []byte) []byte {
	need := false
	for _, b := range seg {
		if b == '%' || b == '+' {
			need = true
			break
		}
	}
	if !need {
		return seg
	}
	out := seg[:0:len(seg)]
	// Decoding only ever shrinks: writing into seg's own storage is safe.
	j := 0
	for i := 0; i < len(seg); i++ {
		b := seg[i]
		switch {
		case b == '+':
			b = ' '
		case b == '%' && i+2 < len(seg) && isHex(seg[i+1]) && isHex(seg[i+2]):
			b = unhex(seg[i+1])<<4 | unhex(seg[i+2])
			i += 2
		}
		seg[j] = b
		j++
	}
	return out[:j]
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b <= 'F':
		return b - 'A' + 10
	}
	return b - 'a' + 10
}

// upper is b in upper case as a string, without allocating for the short
// names of Redis commands already in upper case.
func upper(b []byte) string {
	for _, c := range b {
		if 'a' <= c && c <= 'z' {
			u := make([]byte, len(b))
			for i, c := range b {
				if 'a' <= c && c <= 'z' {
					c -= 'a' - 'A'
				}
				u[i] = c
			}
			return string(u)
		}
	}
	return string(b)
}
