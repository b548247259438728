package webdis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
	r := &ReplyReader{br: bufio.NewReaderSize(bytes.NewReader(data), min(len(data)+2, 64<<10)), maxBytes: int64(len(data))}
	v, err := r.Read()
	if err != nil {
		return nil, err
	}
	if n := r.br.Buffered(); n > 0 {
		return nil, fmt.Errorf("%d unexpected bytes after the reply", n)
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		return nil, errors.New("unexpected bytes after the reply")
	}
	return v, nil
}

var errTruncated = errors.New("truncated reply")

const maxDepth = 32

// ReplyReader reads RESP values one after another from a stream, such as
// the body of a PSUBSCRIBE that Webdis keeps open.
type ReplyReader struct {
	br       *bufio.Reader
	maxBytes int64 // no bulk string or array may claim more
}

// NewReplyReader reads from r; a bulk string or array announcing more than
// maxBytes bytes or elements is an error, so a broken length cannot make it
// allocate without bound.
func NewReplyReader(r io.Reader, maxBytes int64) *ReplyReader {
	return &ReplyReader{br: bufio.NewReaderSize(r, 64<<10), maxBytes: maxBytes}
}

// Read reads the next value. A stream that ends between values is io.EOF;
// one that ends inside a value is a truncated reply.
func (r *ReplyReader) Read() (any, error) {
	if _, err := r.br.Peek(1); err == io.EOF {
		return nil, io.EOF
	}
	return r.value(0)
}

// line reads up to CRLF.
func (r *ReplyReader) line() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("reply line too long")
	}
	if err != nil {
		return nil, errTruncated
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, errors.New("reply line not ended by CRLF")
	}
	return l[:len(l)-2], nil
}

func (r *ReplyReader) length(l []byte, what string) (int64, error) {
	n, err := strconv.ParseInt(string(l), 10, 64)
	if err != nil || n < -1 {
		return 0, fmt.Errorf("bad %s length %q", what, l)
	}
	if n > r.maxBytes {
		return 0, errTruncated
	}
	return n, nil
}

func (r *ReplyReader) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("reply nested too deeply")
	}
	kind, err := r.br.ReadByte()
	if err != nil {
		return nil, errTruncated
	}
	l, err := r.line()
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
		n, err := r.length(l, "bulk")
		if err != nil || n == -1 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, b); err != nil {
			return nil, errTruncated
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, errors.New("bulk string not followed by CRLF")
		}
		return b[:n:n], nil
	case '*':
		n, err := r.length(l, "array")
		if err != nil || n == -1 {
			return nil, err
		}
		vs := make([]any, 0, min(n, 1024))
		for range n {
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		return vs, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", kind)
}
