package webdis

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Compression (docs/ARCHITECTURE.md, "Compression"). A hub that says
// "Accept-Encoding: gzip" in its responses (RFC 7694; the gateway does)
// gets request bodies of GzipMinBytes or more gzipped, when that saves at
// least an eighth, and is asked for gzipped replies. Any other hub
// (nginx+Webdis: nginx passes a gzipped body to Webdis as it is) gets
// plain bodies, as before it said so.

// GzipMinBytes is the body size from which a request is compressed: the
// size of a batch of a few hundred small keys, below which the bytes
// saved are not worth the work.
const GzipMinBytes = 16 << 10

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // the WAN is the bottleneck, not the CPU
	return zw
}}

// takesGzip says whether a response's hub takes gzipped request bodies.
func takesGzip(h http.Header) bool {
	for _, c := range strings.Split(h.Get("Accept-Encoding"), ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(c), ";"); strings.EqualFold(name, "gzip") {
			return true
		}
	}
	return false
}

// gzipped returns body compressed into buf, or nil when that would not
// save an eighth of it (values already compressed, random bytes).
func gzipped(buf *bytes.Buffer, body []byte) []byte {
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	buf.Reset()
	zw.Reset(buf)
	if _, err := zw.Write(body); err != nil {
		return nil
	}
	if err := zw.Close(); err != nil || buf.Len() > len(body)-len(body)/8 {
		return nil
	}
	return buf.Bytes()
}

// replyBody is a response's body, decoded.
func replyBody(resp *http.Response) (io.Reader, error) {
	if !strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		return resp.Body, nil
	}
	return gzip.NewReader(resp.Body)
}
