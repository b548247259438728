package webdistest

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// FaultProxy is a TCP proxy on loopback that makes a link slow and lossy:
// it delays what it forwards, each direction by its own delay, and can cut
// connections, at random or all at once. Put it in front of nginx (or the
// gateway) and point a link at its Addr.
//
// The delay is a delay line, as a WAN's: a chunk read at t is written at
// t+delay, whatever else is on its way, so the delay is added once per
// direction and never adds up with the amount in flight or the number of
// connections (each direction of each connection has its reader and its
// writer).
type FaultProxy struct {
	Addr   string // 127.0.0.1:PORT to connect to
	target string
	ln     net.Listener

	accepted atomic.Int64
	bytes    [2]atomic.Int64 // forwarded: up, down

	mu         sync.Mutex
	up, down   time.Duration // client → target, target → client
	rate       int64         // bytes/s each way, shared by every connection (0: no cap)
	free       [2]time.Time  // up, down: when the capped wire is free again
	resetProb  float64       // chance per forwarded chunk to cut the connection
	conns      map[net.Conn]struct{}
	closed     bool
	wg         sync.WaitGroup
	chunkBytes int
}

// NewFaultProxy forwards connections to target.
func NewFaultProxy(target string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{}), chunkBytes: 32 << 10}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetFaults sets the delay added to every forwarded chunk, in both
// directions, and the chance (0..1) that forwarding a chunk cuts the
// connection instead.
func (p *FaultProxy) SetFaults(latency time.Duration, resetProb float64) {
	p.mu.Lock()
	p.up, p.down, p.resetProb = latency, latency, resetProb
	p.mu.Unlock()
}

// SetDelay sets the one-way delays: up from the client to the target,
// down back (a round trip is up+down). Connections open keep going with
// the new delays.
func (p *FaultProxy) SetDelay(up, down time.Duration) {
	p.mu.Lock()
	p.up, p.down = up, down
	p.mu.Unlock()
}

// SetBandwidth caps what the proxy forwards to bytesPerSec each way, in
// all its connections together, as a WAN line of that speed: a chunk
// waits for the chunks before it to be on their way (0: no cap). Its
// delay comes on top.
func (p *FaultProxy) SetBandwidth(bytesPerSec int64) {
	p.mu.Lock()
	p.rate = bytesPerSec
	p.mu.Unlock()
}

// Bytes is what the proxy has forwarded so far: up, from the clients to
// the target, and down.
func (p *FaultProxy) Bytes() (up, down int64) { return p.bytes[0].Load(), p.bytes[1].Load() }

// Accepted is the number of connections the proxy accepted so far: how
// many times the client connected (a TCP and TLS handshake each).
func (p *FaultProxy) Accepted() int64 { return p.accepted.Load() }

// CutAll resets every open connection.
func (p *FaultProxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
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
		p.accepted.Add(1)
		// Dialled apart from the accept loop: a slow dial must not hold
		// back the connections behind it.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				return
			}
			if !p.track(in) || !p.track(out) {
				in.Close()
				out.Close()
				return
			}
			p.wg.Add(2)
			go p.pipe(in, out, true)
			go p.pipe(out, in, false)
		}()
	}
}

// chunk is bytes read, and when they are due on the other side; nil data
// means the reading side ended (EOF, a cut, or a reset drawn).
type chunk struct {
	data  []byte
	due   time.Time
	reset bool
}

// pipe forwards from → to through a delay line: this goroutine reads and
// stamps, a writer goroutine writes each chunk when it is due. When either
// side ends, both connections are closed once what was read before has
// been written.
func (p *FaultProxy) pipe(from, to net.Conn, up bool) {
	defer p.wg.Done()
	line := make(chan chunk, 4096)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		defer p.untrack(from)
		defer p.untrack(to)
		for c := range line {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if c.reset {
				reset(to)
				reset(from)
				return
			}
			if c.data == nil {
				return
			}
			if _, err := to.Write(c.data); err != nil {
				return
			}
		}
	}()
	defer func() { close(line); <-wrote }()
	// The writer stops at a failed write: then the reader must not block
	// on a full line.
	send := func(c chunk) bool {
		select {
		case line <- c:
			return true
		case <-wrote:
			return false
		}
	}
	for {
		buf := make([]byte, p.chunkBytes)
		n, err := from.Read(buf)
		p.mu.Lock()
		delay := p.down
		if up {
			delay = p.up
		}
		cut := n > 0 && p.resetProb > 0 && rand.Float64() < p.resetProb
		due := time.Now()
		way := 1
		if up {
			way = 0
		}
		if p.rate > 0 && n > 0 {
			start := due
			if p.free[way].After(start) {
				start = p.free[way] // the line is busy: after the chunks before
			}
			p.free[way] = start.Add(time.Duration(int64(n) * int64(time.Second) / p.rate))
			due = p.free[way]
		}
		p.mu.Unlock()
		p.bytes[way].Add(int64(n))
		due = due.Add(delay)
		switch {
		case cut:
			send(chunk{due: due, reset: true})
			return
		case n > 0 && !send(chunk{data: buf[:n], due: due}):
			return
		}
		if err != nil {
			send(chunk{due: due}) // EOF or a cut: close both ways
			return
		}
	}
}
