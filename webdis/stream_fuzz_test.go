package webdis

import (
	"bytes"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// chunked serves data in pieces of the sizes given (cycling), as a proxy
// streaming a chunked PSUBSCRIBE reply might.
type chunked struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%64 + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzReplyStream: the reader of the PSUBSCRIBE stream returns the same
// messages however the stream is cut into pieces, and never panics on
// garbage.
func FuzzReplyStream(f *testing.F) {
	f.Add([]byte("*3\r\n$10\r\npsubscribe\r\n$5\r\nlab1*\r\n$1\r\n1\r\n*4\r\n$8\r\npmessage\r\n$5\r\nlab1*\r\n$7\r\nlab1:a\x00\r\n$3\r\nset\r\n"), []byte{0, 3, 7})
	f.Add([]byte("*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$4\r\na/b\xff\r\n$3\r\ndel\r\n*1\r\n"), []byte{1})
	f.Add([]byte("garbage"), []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		whole := readAll(NewReplyReader(bytes.NewReader(data), 1<<20))
		pieces := readAll(NewReplyReader(&chunked{data: data, sizes: sizes}, 1<<20))
		onebyte := readAll(NewReplyReader(iotest.OneByteReader(bytes.NewReader(data)), 1<<20))
		if !reflect.DeepEqual(whole, pieces) || !reflect.DeepEqual(whole, onebyte) {
			t.Fatalf("cutting the stream changed what was read:\nwhole  %#v\npieces %#v\nbytes  %#v", whole, pieces, onebyte)
		}
	})
}

// readAll reads values until an error, and returns them with the error's
// presence (the error text may differ by where the stream was cut).
func readAll(r *ReplyReader) []any {
	var out []any
	for {
		v, err := r.Read()
		if err != nil {
			return append(out, err == io.EOF)
		}
		out = append(out, v)
	}
}
