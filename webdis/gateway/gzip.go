package gateway

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Compression (docs/ARCHITECTURE.md, "Compression"). Every response says
// "Accept-Encoding: gzip" (RFC 7694: the codings the server takes in
// requests), so a link gzips its large request bodies; a reply of
// gzipMinBytes or more goes gzipped to a client that asks for it. Across a
// WAN whose bandwidth is the limit, a batch of text-like values then takes
// a fraction of the time on the wire.
//
// A gzipped body is bounded after decompression by max_body_bytes, as a
// plain one is: a small body that inflates past it is refused (413) as
// soon as it does, never held whole.

// gzipMinBytes is the reply size from which a reply is compressed: below
// it, the bytes saved are not worth the work (webdis.GzipMinBytes is the
// client's threshold for bodies).
const gzipMinBytes = 16 << 10

// errEncoding: a request body in a coding the gateway does not take.
var errEncoding = errors.New("unsupported Content-Encoding")

// bodyReader is r's body, decoded.
func bodyReader(r *http.Request) (io.Reader, func(), error) {
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
		return r.Body, func() {}, nil
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	}
	return nil, nil, errEncoding
}

func acceptsGzip(r *http.Request) bool {
	for _, c := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(c), ";"); strings.EqualFold(name, "gzip") {
			return true
		}
	}
	return false
}

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // BestSpeed: the WAN is the bottleneck, not the gateway's CPU
	return zw
}}

// gzipResponse is a ResponseWriter that compresses what is written to it;
// Close ends the compressed stream.
type gzipResponse struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func newGzipResponse(w http.ResponseWriter) *gzipResponse {
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(w)
	return &gzipResponse{ResponseWriter: w, zw: zw}
}

// WriteHeader drops a Content-Length set for the uncompressed reply.
func (g *gzipResponse) WriteHeader(code int) {
	h := g.Header()
	h.Del("Content-Length")
	h.Set("Content-Encoding", "gzip")
	h.Add("Vary", "Accept-Encoding")
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipResponse) Write(p []byte) (int, error) { return g.zw.Write(p) }

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (g *gzipResponse) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *gzipResponse) Close() error {
	err := g.zw.Close()
	g.zw.Reset(io.Discard)
	gzipWriters.Put(g.zw)
	return err
}
