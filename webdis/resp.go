package webdis

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/gomodule/redigo/redis"
)

// ParseReply decodes one RESP value that fills data exactly, into the same Go
// types redigo returns (string, int64, []byte, []any, nil, redis.Error), so the
// helpers of package redis (redis.Values, redis.Bytes, ...) work on both sides.
//
// Webdis's raw format flattens nested arrays (an inner array is dropped while
// the outer count stays), which this parser reports as a truncated reply: the
// scripts redisrepl runs through Webdis return flat arrays only.
func ParseReply(data []byte) (any, error) {
	p := parser{data: data}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(data) {
		return nil, fmt.Errorf("%d unexpected bytes after the reply", len(data)-p.pos)
	}
	return v, nil
}

var errTruncated = errors.New("truncated reply")

const maxDepth = 32

type parser struct {
	data []byte
	pos  int
}

// line returns the bytes up to the next CRLF and moves past it.
func (p *parser) line() ([]byte, error) {
	for i := p.pos; i+1 < len(p.data); i++ {
		if p.data[i] == '\r' && p.data[i+1] == '\n' {
			l := p.data[p.pos:i]
			p.pos = i + 2
			return l, nil
		}
	}
	return nil, errTruncated
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("reply nested too deeply")
	}
	if p.pos >= len(p.data) {
		return nil, errTruncated
	}
	kind := p.data[p.pos]
	p.pos++
	l, err := p.line()
	if err != nil {
		return nil, err
	}
	switch kind {
	case '+':
		return string(l), nil
	case '-':
		return redis.Error(l), nil
	case ':':
		n, err := strconv.ParseInt(string(l), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %q", l)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(string(l))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bad bulk length %q", l)
		}
		if n == -1 {
			return nil, nil
		}
		if n > len(p.data)-p.pos-2 {
			return nil, errTruncated
		}
		if p.data[p.pos+n] != '\r' || p.data[p.pos+n+1] != '\n' {
			return nil, errors.New("bulk string not followed by CRLF")
		}
		b := p.data[p.pos : p.pos+n : p.pos+n]
		p.pos += n + 2
		return b, nil
	case '*':
		n, err := strconv.Atoi(string(l))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bad array length %q", l)
		}
		if n == -1 {
			return nil, nil
		}
		// Every element takes at least 3 bytes: do not trust n before allocating.
		if n > (len(p.data)-p.pos)/3 {
			return nil, errTruncated
		}
		vs := make([]any, n)
		for i := range vs {
			if vs[i], err = p.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return vs, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", kind)
}
