package webdistest

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// FaultProxy is a TCP proxy on loopback that makes a link slow and lossy:
// it delays every chunk it forwards, and can cut connections, at random or
// all at once. Put it in front of nginx and point a link at its Addr.
type FaultProxy struct {
	Addr   string // 127.0.0.1:PORT to connect to
	target string
	ln     net.Listener

	mu        sync.Mutex
	latency   time.Duration
	resetProb float64 // chance per forwarded chunk to cut the connection
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// NewFaultProxy forwards connections to target.
func NewFaultProxy(target string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetFaults sets the delay added to every forwarded chunk and the chance
// (0..1) that forwarding a chunk cuts the connection instead.
func (p *FaultProxy) SetFaults(latency time.Duration, resetProb float64) {
	p.mu.Lock()
	p.latency, p.resetProb = latency, resetProb
	p.mu.Unlock()
}

// CutAll resets every open connection.
func (p *FaultProxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// Close stops the proxy and cuts every connection.
func (p *FaultProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.CutAll()
	p.wg.Wait()
	return err
}

func (p *FaultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *FaultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *FaultProxy) pipe(from, to net.Conn) {
	defer p.wg.Done()
	defer p.untrack(from)
	defer p.untrack(to)
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			latency, reset := p.latency, p.resetProb > 0 && rand.Float64() < p.resetProb
			p.mu.Unlock()
			if reset {
				if tc, ok := to.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
				return
			}
			if latency > 0 {
				time.Sleep(latency)
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut: close both ways
		}
	}
}
