package webdis

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A new HTTPS connection costs round trips (TCP, TLS, then the request):
// across a WAN, tens or hundreds of milliseconds on the path of a change.
// Fronts close connections on their own terms: nginx after
// keepalive_requests requests (1,000 by default, HTTP/2 included: a GOAWAY)
// or keepalive_timeout. So a busy Client keeps one spare connection dialled
// in advance, TLS done: the next connection net/http asks for is that one,
// and a new spare is dialled beside it, off the critical path. A spare is
// replaced after spareMaxAge (a server drops a connection that sends no
// request for long: Go's HTTP/2 server waits 10 s for the preface), and
// none is kept once the Client has been idle that long. Resumed TLS
// sessions (the Client's session cache) make the dial itself a round trip
// shorter.

// spareMaxAge is how long a spare connection is kept unused.
const spareMaxAge = 5 * time.Second

// dialer dials TLS connections for a Client's requests, keeping a spare.
type dialer struct {
	net     net.Dialer
	tls     *tls.Config
	timeout time.Duration // of one dial, TLS included
	used    atomic.Int64  // unix ns of the last request sent (Client.post)

	mu      sync.Mutex
	spare   *tls.Conn
	at      time.Time // when spare was dialled
	addr    string    // what to dial spares to
	dialing bool
	closed  bool
	timer   *time.Timer
}

func newDialer(conf *tls.Config, timeout time.Duration) *dialer {
	return &dialer{net: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}, tls: conf, timeout: timeout}
}

// DialTLSContext is http.Transport's hook: the spare if there is a fresh
// one, else a new connection; either way a spare is dialled next.
func (d *dialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c := d.take(addr)
	if c == nil {
		var err error
		if c, err = d.dial(ctx, network, addr); err != nil {
			return nil, err
		}
	}
	d.refill()
	return c, nil
}

func (d *dialer) dial(ctx context.Context, network, addr string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, d.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// take hands out the spare if it is fresh and for addr.
func (d *dialer) take(addr string) *tls.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addr, d.closed = addr, false // a dial: the Client is in use again
	c := d.spare
	d.spare = nil
	if c != nil && (time.Since(d.at) > spareMaxAge || !alive(c)) {
		c.Close()
		return nil
	}
	return c
}

// alive says whether the server has not closed c: a read of a moment ends
// in a timeout on a connection at rest, in EOF on one the server closed
// (a restarted front). Go's TLS reads survive a timeout. Over HTTP/2 the
// server speaks first (its SETTINGS), which net/http must read: such a
// spare is trusted for its spareMaxAge (a front restarted in that window
// costs one failed request, which the link retries).
func alive(c *tls.Conn) bool {
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		return true
	}
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refill dials a spare in the background unless one is there or on its
// way, and has it replaced when it grows old while the Client is busy.
func (d *dialer) refill() {
	d.mu.Lock()
	if d.closed || d.dialing || d.spare != nil || d.addr == "" {
		d.mu.Unlock()
		return
	}
	d.dialing = true
	addr := d.addr
	d.mu.Unlock()
	go func() {
		c, err := d.dial(context.Background(), "tcp", addr)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.dialing = false
		if err != nil || d.closed || d.spare != nil {
			if c != nil {
				c.Close()
			}
			return
		}
		d.spare, d.at = c, time.Now()
		if d.timer != nil {
			d.timer.Stop()
		}
		d.timer = time.AfterFunc(spareMaxAge, d.renew)
	}()
}

// renew replaces an old spare while the Client is busy, and drops it once
// the Client is idle.
func (d *dialer) renew() {
	d.mu.Lock()
	old := d.spare
	d.spare = nil
	d.mu.Unlock()
	if old != nil {
		old.Close()
	}
	if time.Since(time.Unix(0, d.used.Load())) < spareMaxAge {
		d.refill()
	}
}

// close drops the spare and dials no more until the next dial.
func (d *dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.spare != nil {
		d.spare.Close()
		d.spare = nil
	}
}
