// Package webdis is the client side of the Webdis HTTP protocol, spoken
// through a TLS proxy that demands a client certificate.
//
// Every command travels in a POST body with each argument percent-encoded and
// the ".raw" suffix, so arguments and replies are binary-safe; GET paths are
// not, because nginx decodes %2F before proxying (docs/ARCHITECTURE.md, "Facts about Webdis").
package webdis

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/redisrepl/redisrepl/webdis/pki"
)

// Options configure a Client.
type Options struct {
	URL      string // https://host[:port]/path of Webdis behind the proxy
	CertFile string // client certificate (PEM)
	KeyFile  string // its private key (PEM)
	CAFile   string // CA(s) that must have signed the proxy's certificate (PEM)

	MaxConns      int           // HTTPS connections of requests, a spare among them (event streams have their own); default 8
	Timeout       time.Duration // per request; default 60s
	MaxReplyBytes int64         // larger replies are refused; default 1 GiB
}

// Client sends Redis commands to Webdis. It is safe for concurrent use; each
// request in flight takes one of MaxConns keep-alive connections.
type Client struct {
	url     string // ends with "/"
	display string // url without credentials, for messages
	// reqs carries the requests; over HTTP/2 it is replaced after
	// h2RotateAfter requests (rotate).
	reqs    atomic.Pointer[requests]
	newReqs func() *requests
	// streams carries the event streams (Subscribe): each holds its
	// connection for as long as it lasts, so they are kept apart from the
	// MaxConns connections of requests, which they would otherwise starve
	// (a Client shared by many links holds many streams).
	streams  *http.Client
	timeout  time.Duration
	maxReply int64
	bufs     sync.Pool
	win      *window     // requests in flight (window.go)
	gzip     atomic.Bool // the hub takes gzipped bodies (gzip.go)
	answered atomic.Bool // the hub has answered a request over HTTP at least once
	dial     *dialer     // the requests' connections, and a spare (dialer.go)
}

// New checks the options and loads the certificates; the error names the file
// at fault. It does not contact the server.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("remote URL %q: %v", o.URL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("remote URL %q: must be https://host[:port]/path", o.URL)
	}
	tlsConf, err := pki.ClientConfig(o.CertFile, o.KeyFile, o.CAFile, u.Hostname())
	if err != nil {
		return nil, err
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.MaxReplyBytes <= 0 {
		o.MaxReplyBytes = 1 << 30
	}
	// The spare connection (dialer.go) is one of MaxConns.
	conns := o.MaxConns
	if conns > 1 {
		conns--
	}
	reqTLS := tlsConf.Clone()
	reqTLS.NextProtos = []string{"h2", "http/1.1"}
	dial := newDialer(reqTLS, 10*time.Second)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DialTLSContext:      dial.DialTLSContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     50 * time.Second,
		// A batch is tens of KiB: written through net/http's default 4 KiB
		// buffer it became a TLS record and a syscall per 4 KiB.
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        64 << 10,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		// HTTP/2 where the front offers it (the gateway; nginx with
		// "http2" on its listen): many requests in flight share one
		// connection, so connections stop bounding what is in flight.
		// net/http needs it asked for with a TLSClientConfig of our own.
		ForceAttemptHTTP2: true,
	}
	// A stream sends one small request and reads small messages: net/http's
	// default buffers (4 KiB) rather than a batch's, as a process may hold
	// hundreds of streams.
	st := tr.Clone()
	st.MaxConnsPerHost, st.MaxIdleConns, st.MaxIdleConnsPerHost = 0, 2, 2
	st.WriteBufferSize, st.ReadBufferSize = 0, 0
	// Streams stay on HTTP/1.1, a connection each, as Webdis serves them:
	// a stream lasts for hours and must not share the fate (or the flow
	// control) of a connection of requests.
	st.ForceAttemptHTTP2 = false
	st.DialTLSContext = nil // no spare: a stream is dialled once and kept
	st.TLSClientConfig.NextProtos = nil
	st.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	path := u.String()
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	u.User = nil
	display := u.String()
	c := &Client{
		url:     path,
		display: display,
		newReqs: func() *requests {
			t := tr.Clone() // tr itself is never used: each clone sets up its own HTTP/2
			return &requests{http: &http.Client{Transport: t}, tr: t}
		},
		streams:  &http.Client{Transport: st},
		timeout:  o.Timeout,
		maxReply: o.MaxReplyBytes,
		win:      newWindow(conns),
		dial:     dial,
	}
	c.reqs.Store(c.newReqs())
	return c, nil
}

// requests is one transport of a Client's requests, and how many it sent.
type requests struct {
	http *http.Client
	tr   *http.Transport
	n    atomic.Int64
}

// h2RotateAfter: an HTTP/2 connection gets no more requests after this
// many. nginx ends one after keepalive_requests (1,000 by default) with a
// GOAWAY, and the requests sent meanwhile, refused, are sent again a round
// trip later on a new connection: the client moves to a new one first, on
// the spare connection (dialer.go), while the old one finishes what it
// carries.
const h2RotateAfter = 900

// transport is the requests' transport, replaced by a new one when the
// current one, over HTTP/2, has carried h2RotateAfter requests.
func (c *Client) transport() *requests {
	r := c.reqs.Load()
	if !c.Multiplexed() || r.n.Add(1) <= h2RotateAfter {
		return r
	}
	if next := c.newReqs(); c.reqs.CompareAndSwap(r, next) {
		// What it carries ends within the request timeout.
		time.AfterFunc(c.timeout, r.tr.CloseIdleConnections)
		return next
	}
	return c.reqs.Load()
}

// URL is the remote's address without credentials, for messages.
func (c *Client) URL() string { return c.display }

// Close drops the idle connections.
func (c *Client) Close() {
	c.dial.close()
	c.reqs.Load().tr.CloseIdleConnections()
	c.streams.CloseIdleConnections()
}

// Do sends one command and returns its reply as redigo would: an error reply
// of Redis comes back as a redis.Error error, a failure of the request as an
// *Error.
func (c *Client) Do(ctx context.Context, args ...[]byte) (any, error) {
	body := c.getBuf()
	defer c.putBuf(body)
	*body = AppendCommand((*body)[:0], args...)
	data, err := c.post(ctx, *body)
	if err != nil {
		return nil, err
	}
	v, err := ParseReply(data)
	if err != nil {
		return nil, &Error{Kind: KindBadReply, Status: 200, URL: c.display, Msg: "reply to " + commandName(args) + " is not RESP", Err: err}
	}
	if e, ok := v.(redis.Error); ok {
		return nil, e
	}
	return v, nil
}

func commandName(args [][]byte) string {
	if len(args) == 0 {
		return "(empty command)"
	}
	return strings.ToUpper(string(args[0]))
}

func (c *Client) post(parent context.Context, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	gz := c.gzip.Load()
	var zipped []byte
	if gz && len(body) >= GzipMinBytes {
		var zbuf bytes.Buffer
		if zipped = gzipped(&zbuf, body); zipped != nil {
			body = zipped
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Kind: KindUnknown, URL: c.display, Msg: "cannot build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	if zipped != nil {
		req.Header.Set("Content-Encoding", "gzip")
	}
	// Every command redisrepl sends writes a whole state or only reads, so it
	// is safe to resend when a keep-alive connection turns out to be closed
	// (nginx closes one after keepalive_requests); this header, present but
	// not sent, lets net/http retry the POST.
	if !notIdempotent(parent) {
		req.Header["X-Idempotency-Key"] = nil
	}
	c.dial.used.Store(time.Now().UnixNano())
	resp, err := c.transport().http.Do(req)
	if err != nil && c.answered.Load() && closedByPeer(err) && !notIdempotent(parent) && ctx.Err() == nil {
		// A connection the front closed while it sat ready (the spare of
		// a restarted front, over HTTP/2: dialer.go cannot test one
		// without reading the server's first frames): once more, on a
		// new one, as net/http does itself for a reused connection.
		req.Body = io.NopCloser(bytes.NewReader(body))
		resp, err = c.transport().http.Do(req)
	}
	if err != nil {
		switch {
		case errors.Is(parent.Err(), context.DeadlineExceeded):
			// The caller's deadline (a health probe's, say): no answer in time.
			return nil, &Error{Kind: KindTimeout, URL: c.display, Msg: "no answer within the caller's deadline", Err: err}
		case parent.Err() != nil:
			return nil, &Error{Kind: KindUnknown, URL: c.display, Msg: "request abandoned", Err: parent.Err()}
		case ctx.Err() == context.DeadlineExceeded:
			return nil, &Error{Kind: KindTimeout, URL: c.display, Msg: fmt.Sprintf("no answer within %v", c.timeout), Err: err}
		}
		if !c.answered.Load() && closedByPeer(err) {
			// Over TLS 1.3 a server that refuses the client certificate
			// does so after the client's handshake is done: a request
			// written at once meets the closed connection, before the
			// alert is read.
			return nil, &Error{Kind: KindCertRefused, URL: c.display, Msg: "the server closed the connection right after the TLS handshake, before answering any request: it refused the client certificate (missing, expired, or not signed by the CA it trusts)", Err: err}
		}
		return nil, classifyTransport(c.display, err)
	}
	c.answered.Store(true)
	defer resp.Body.Close()
	if resp.ProtoMajor == 2 {
		c.win.multiplexed()
	}
	if !gz && takesGzip(resp.Header) {
		c.gzip.Store(true)
	}
	rb, err := replyBody(resp)
	if err != nil {
		return nil, &Error{Kind: KindBadReply, Status: resp.StatusCode, URL: c.display, Msg: "gzipped reply does not decode", Err: err}
	}
	data, err := io.ReadAll(io.LimitReader(rb, c.maxReply+1))
	if err != nil {
		return nil, classifyTransport(c.display, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(c.display, resp.StatusCode, data)
	}
	if int64(len(data)) > c.maxReply {
		return nil, &Error{Kind: KindBadReply, Status: 200, URL: c.display, Msg: fmt.Sprintf("reply larger than %d bytes", c.maxReply)}
	}
	return data, nil
}

func statusError(url string, status int, body []byte) *Error {
	e := &Error{Status: status, URL: url, Msg: fmt.Sprintf("HTTP %d", status)}
	text := string(body)
	switch {
	case status == http.StatusBadRequest && strings.Contains(text, "SSL certificate"):
		// nginx answers 400 ("No required SSL certificate was sent" or "The SSL
		// certificate error") rather than failing the handshake.
		e.Kind, e.Msg = KindCertRefused, "the proxy refused the client certificate (HTTP 400): it is missing, expired, or not signed by the CA the proxy trusts"
	case status == http.StatusForbidden && len(bytes.TrimSpace(body)) == 0:
		// Webdis's ACL answers 403 with an empty body; a 403 page comes
		// from the proxy (a rule of its own), which is no reason to stop
		// using a command.
		e.Kind, e.Msg = KindForbidden, "Webdis refused the command (HTTP 403): check its ACL"
	case status == http.StatusServiceUnavailable:
		e.Kind, e.Msg = KindUnavailable, "Webdis cannot reach its Redis (HTTP 503)"
	case status == http.StatusBadGateway || status == http.StatusGatewayTimeout:
		e.Kind, e.Msg = KindUnavailable, fmt.Sprintf("the proxy cannot reach Webdis (HTTP %d)", status)
	case status == http.StatusRequestEntityTooLarge:
		e.Kind, e.Msg = KindTooLarge, "request body over the proxy's limit (HTTP 413): lower max_request_bytes or raise client_max_body_size"
	default:
		e.Kind = KindHTTP
		if t := strings.TrimSpace(text); t != "" && len(t) < 200 {
			e.Msg += " (" + t + ")"
		}
	}
	return e
}

func (c *Client) getBuf() *[]byte {
	if b, ok := c.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (c *Client) putBuf(b *[]byte) {
	if cap(*b) <= 4<<20 {
		c.bufs.Put(b)
	}
}

type notIdempotentKey struct{}

// NotIdempotent marks ctx's requests as unsafe to resend: by default a
// request is resent when its keep-alive connection turns out to be closed,
// which is right for whole-state writes and reads, but not for a command
// that appends (a chunk staged by APPEND or RPUSH).
func NotIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, notIdempotentKey{}, true)
}

func notIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(notIdempotentKey{}).(bool)
	return v
}
