package gateway_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// The attacks of a hostile tenant (lab2, and lab3 which may run its own
// read-only scripts) on a shared hub, while lab1 measures its own latency
// with a SET/GET probe. Each attack must leave lab1 with no error, its p99
// within max(20 ms, 5x its baseline), its slowest request under 1 s, the
// hub's RSS under 1.5 GB and the gateway's (this process) under 512 MB,
// and every one of its keys; the attacker gets a refusal or a bounded
// result.

const attackGateway = `max_body_bytes = 67108864
body_timeout = "2s"
max_total_connections = 400
max_body_memory = 134217728`

const attackTenants = `
[[tenant]]
name       = "lab1"
client     = "lab1"
namespaces = ["lab1:"]

[[tenant]]
name       = "lab2"
client     = "lab2"
namespaces = ["lab2:"]
max_connections = 40
keys_budget = 100000
bytes_per_second = 67108864
max_memory = 67108864

[[tenant]]
name        = "lab3"
client      = "lab3"
namespaces  = ["lab3:"]
eval        = true
script_time = "100ms"
`

const probeKeys = 1000

// probe is lab1's keep-alive SET/GET loop.
type probe struct {
	mu   sync.Mutex
	lat  []time.Duration
	errs []string
	stop chan struct{}
	done chan struct{}
}

func startProbe(t *testing.T, e *env) *probe {
	c := e.client(t, "lab1")
	for i := range probeKeys {
		if st, body := post(t, c, e.url, enc("SET", fmt.Sprintf("lab1:k%d", i), "v"+strconv.Itoa(i))); st != 200 || body != "+OK\r\n" {
			t.Fatalf("probe setup: %d %q", st, body)
		}
	}
	p := &probe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			k := fmt.Sprintf("lab1:k%d", i%probeKeys)
			v := "v" + strconv.Itoa(i%probeKeys)
			cmd, want := enc("GET", k), fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)
			if i%2 == 0 {
				cmd, want = enc("SET", k, v), "+OK\r\n"
			}
			start := time.Now()
			st, body, err := tryPost(c, e.url, cmd)
			d := time.Since(start)
			p.mu.Lock()
			p.lat = append(p.lat, d)
			if err != nil || st != 200 || body != want {
				p.errs = append(p.errs, fmt.Sprintf("%d %q %v", st, body, err))
			}
			p.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() { close(p.stop); <-p.done })
	return p
}

func tryPost(c *http.Client, url, body string) (int, string, error) {
	resp, err := c.Post(url+"/", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

type probeStats struct {
	n             int
	p50, p99, max time.Duration
	errs          []string
}

// take returns what the probe measured since the last take.
func (p *probe) take() probeStats {
	p.mu.Lock()
	lat, errs := p.lat, p.errs
	p.lat, p.errs = nil, nil
	p.mu.Unlock()
	slices.Sort(lat)
	s := probeStats{n: len(lat), errs: errs}
	if len(lat) > 0 {
		s.p50, s.p99, s.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return s
}

// rss reads VmRSS of a process from /proc, in bytes.
func rss(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// peaks samples the RSS of the hub and of this process (the gateway runs
// in it) every 20 ms until stop is called.
func peaks(hubPID int) (stop func() (hub, gw int64)) {
	var hub, gw int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			hub, gw = max(hub, rss(strconv.Itoa(hubPID))), max(gw, rss("self"))
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int64, int64) { close(quit); <-done; return hub, gw }
}

func TestHostileTenant(t *testing.T) {
	e := newEnvWith(t, attackGateway, attackTenants)
	hub := e.direct(t)
	if _, err := hub.Do("CONFIG", "SET", "maxmemory", "1gb"); err != nil {
		t.Fatal(err)
	}
	// A hub holding a million keys of others, for KEYS and SCAN.
	if _, err := hub.Do("EVAL", "for i = 1, 1000000 do redis.call('SET', 'lab9:' .. i, 'x') end", "0"); err != nil {
		t.Fatal(err)
	}
	p := startProbe(t, e)
	time.Sleep(time.Second)
	base := p.take()
	if len(base.errs) > 0 || base.n < 100 {
		t.Fatalf("probe baseline: %d requests, errors %q", base.n, base.errs)
	}
	bound := max(20*time.Millisecond, 5*base.p99)
	t.Logf("baseline: %d requests, p50 %v p99 %v max %v; bound p99 %v", base.n, base.p50, base.p99, base.max, bound)
	a2, a3 := e.client(t, "lab2"), e.client(t, "lab3")

	attacks := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"EVAL while true do end", func(t *testing.T) {
			wantStatus(t, a2, e.url, enc("EVAL", "while true do end", "0"), 403, "")
		}},
		{"EVAL one SET then a loop", func(t *testing.T) {
			wantStatus(t, a2, e.url, enc("EVAL", "redis.call('SET','lab2:x','1') while true do end", "0"), 403, "")
			wantStatus(t, a3, e.url, enc("EVAL", "redis.call('SET','lab3:x','1') while true do end", "0"), 403, "")
			wantPrefix(t, a3, e.url, enc("EVAL", "#!lua flags=no-writes\nredis.call('SET','lab3:x','1') while true do end", "0"), "-ERR Write commands are not allowed")
		}},
		{"eval tenant: read-only endless loop", func(t *testing.T) {
			start := time.Now()
			wantPrefix(t, a3, e.url, enc("EVAL_RO", "while true do end", "0"), "-ERR Script killed")
			if d := time.Since(start); d > time.Second {
				t.Errorf("the script ran %v", d)
			}
		}},
		// Not run as lab3: a script's heap is not bounded, and a kill
		// cannot interrupt one allocation (see scripts.go).
		{"Lua string doubling", func(t *testing.T) {
			wantStatus(t, a2, e.url, enc("EVAL", "local s = 'x' while true do s = s .. s end", "0"), 403, "")
			wantStatus(t, a2, e.url, enc("EVAL_RO", "local s = 'x' while true do s = s .. s end", "0"), 403, "")
		}},
		{"Lua table of 3e7 integers", func(t *testing.T) {
			wantStatus(t, a2, e.url, enc("EVAL", "#!lua flags=no-writes\nlocal t = {} for i = 1, 3e7 do t[i] = i end return #t", "0"), 403, "")
		}},
		{"SETRANGE at 512 MB, SETBIT at 2^32-1", func(t *testing.T) {
			wantPrefix(t, a2, e.url, enc("SETRANGE", "lab2:x", "536870000", "a"), "-ERR gateway: over the tenant's max_value_bytes")
			wantPrefix(t, a2, e.url, enc("SETBIT", "lab2:y", "4294967295", "1"), "-ERR gateway: over the tenant's max_value_bytes")
			wantPrefix(t, a2, e.url, enc("BITFIELD", "lab2:y", "SET", "u8", "#536870000", "1"), "-ERR gateway: over the tenant's max_value_bytes")
		}},
		{"the same on an allkeys-lru hub", func(t *testing.T) {
			hub.Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
			defer hub.Do("CONFIG", "SET", "maxmemory-policy", "noeviction")
			for range 4 {
				wantPrefix(t, a2, e.url, enc("SETRANGE", "lab2:x", "536870000", "a"), "-ERR gateway: over")
			}
		}},
		{"8 MiB of NULs, then 4 parallel GET (JSON)", func(t *testing.T) {
			wantPrefix(t, a2, e.url, enc("SETRANGE", "lab2:nul", strconv.Itoa(8<<20-1), "\x00"), ":")
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := a2.Post(e.url+"/", "text/plain", strings.NewReader("GET/lab2:nul"))
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					n, err := io.Copy(io.Discard, resp.Body)
					if err != nil || n != int64(6*(8<<20)+len(`{"GET":""}`)) {
						t.Errorf("GET: %d bytes, %v", n, err)
					}
				}()
			}
			wg.Wait()
			hub.Do("DEL", "lab2:nul")
		}},
		{"MGET of one 1 MiB key x300, SRANDMEMBER -N", func(t *testing.T) {
			wantPrefix(t, a2, e.url, enc("SET", "lab2:m", strings.Repeat("m", 1<<20)), "+OK")
			args := []string{"MGET"}
			for range 300 {
				args = append(args, "lab2:m")
			}
			wantPrefix(t, a2, e.url, enc(args...), "-ERR gateway: over the tenant's max_reply_bytes")
			wantPrefix(t, a2, e.url, enc("SADD", "lab2:s", "a"), ":1")
			wantPrefix(t, a2, e.url, enc("SRANDMEMBER", "lab2:s", "-100000000"), "-ERR gateway: over the tenant's max_elements")
		}},
		{"20 POSTs declaring 64 MiB, sending 2 MiB, then stalling", func(t *testing.T) {
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn := e.rawConn(t, "lab2")
					defer conn.Close()
					fmt.Fprintf(conn, "POST /redis/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nSET/lab2:slow/", 64<<20)
					conn.Write(make([]byte, 2<<20))
					start := time.Now()
					conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					_, err = conn.Read(make([]byte, 1))
					if d := time.Since(start); err == nil || d > 5*time.Second {
						t.Errorf("a stalled body held its connection %v (%v)", d, err)
					}
				}()
			}
			wg.Wait()
		}},
		{"KEYS * and SCAN 0 COUNT 100000000 x4, a million foreign keys", func(t *testing.T) {
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(2)
				go func() {
					defer wg.Done()
					wantPrefix(t, a2, e.url, enc("KEYS", "*"), "-ERR gateway: over the tenant's keys_budget")
				}()
				go func() {
					defer wg.Done()
					st, body, err := tryPost(a2, e.url, enc("SCAN", "0", "COUNT", "100000000"))
					if err != nil || st != 200 || !strings.HasPrefix(body, "*2\r\n") || len(body) > 64<<10 {
						t.Errorf("SCAN: %d %.60q %v", st, body, err)
					}
				}()
			}
			wg.Wait()
		}},
		{"LCS of two 11k strings", func(t *testing.T) {
			wantPrefix(t, a2, e.url, enc("SET", "lab2:a", strings.Repeat("ab", 5500)), "+OK")
			wantPrefix(t, a2, e.url, enc("SET", "lab2:b", strings.Repeat("ba", 5500)), "+OK")
			wantPrefix(t, a2, e.url, enc("LCS", "lab2:a", "lab2:b"), "-ERR gateway: over the tenant's max_lcs_bytes")
		}},
		{"200 SETs of 1 MiB (a 64 MiB quota)", func(t *testing.T) {
			v := strings.Repeat("q", 1<<20)
			refused := 0
			for i := range 200 {
				st, body, err := tryPost(a2, e.url, enc("SET", fmt.Sprintf("lab2:fill%d", i), v))
				if err != nil || st != 200 {
					t.Fatalf("SET: %d %v", st, err)
				}
				if strings.HasPrefix(body, "-ERR gateway: over the tenant's max_memory") {
					refused++
				}
			}
			if refused < 130 {
				t.Errorf("lab2 filled past its 64 MiB quota: %d of 200 SETs of 1 MiB refused", refused)
			}
			for i := range 200 {
				hub.Do("DEL", fmt.Sprintf("lab2:fill%d", i))
			}
		}},
		{"150 idle TLS connections", func(t *testing.T) {
			var conns []net.Conn
			refused := 0
			for range 150 {
				c, err := e.dialTLS(t, "lab2")
				if err != nil {
					refused++
					continue
				}
				conns = append(conns, c)
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			// Past max_connections the handshake fails; with TLS 1.3 the
			// client learns it at its first read.
			held := 0
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil && isTimeout(err) {
					held++
				}
			}
			if held > 40 {
				t.Errorf("lab2 holds %d connections, max_connections is 40 (%d refused at dial)", held, refused)
			}
			// lab1 can still connect.
			fresh := e.tlsClientNamed(t, "lab1")
			if st, body, err := tryPost(fresh, e.url, enc("PING")); err != nil || st != 200 || body != "+PONG\r\n" {
				t.Errorf("lab1's new connection: %d %q %v", st, body, err)
			}
		}},
	}
	var table []string
	for _, a := range attacks {
		p.take()
		stop := peaks(e.redis.Pid())
		t.Run(a.name, a.run)
		time.Sleep(200 * time.Millisecond) // the probe keeps measuring as the attack ends
		hubPeak, gwPeak := stop()
		s := p.take()
		table = append(table, fmt.Sprintf("| %s | %d | %v | %v | %v | %d MB | %d MB |", a.name, s.n,
			s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond), hubPeak>>20, gwPeak>>20))
		if len(s.errs) > 0 {
			t.Errorf("%s: the probe had %d errors: %q", a.name, len(s.errs), s.errs[:min(5, len(s.errs))])
		}
		if s.p99 > bound || s.max > time.Second {
			t.Errorf("%s: the probe's p99 %v (bound %v), max %v (bound 1s)", a.name, s.p99, bound, s.max)
		}
		if hubPeak > 1536<<20 || gwPeak > 512<<20 {
			t.Errorf("%s: peak RSS of the hub %d MB (bound 1536), of the gateway %d MB (bound 512)", a.name, hubPeak>>20, gwPeak>>20)
		}
	}
	t.Logf("| attack | probe requests | p50 | p99 | max | hub RSS peak | gateway RSS peak |\n%s", strings.Join(table, "\n"))
	for i := range probeKeys {
		v, err := redis.String(hub.Do("GET", fmt.Sprintf("lab1:k%d", i)))
		if err != nil || v != "v"+strconv.Itoa(i) {
			t.Fatalf("lab1:k%d after the attacks: %q %v", i, v, err)
		}
	}
	m := e.metrics(t)
	for _, want := range []string{
		`redisrepl_gateway_refusals_total{reason="script not allowed",tenant="lab2"}`,
		`redisrepl_gateway_refusals_total{reason="script killed",tenant="lab3"}`,
		`redisrepl_gateway_refusals_total{reason="over a limit",tenant="lab2"}`,
		`redisrepl_gateway_refusals_total{reason="too many connections",tenant="lab2"}`,
		`redisrepl_gateway_refusals_total{reason="over memory quota",tenant="lab2"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func wantStatus(t *testing.T, c *http.Client, url, cmd string, status int, body string) {
	t.Helper()
	st, b, err := tryPost(c, url, cmd)
	if err != nil || st != status || b != body {
		t.Errorf("%.60q: %d %.80q %v, want %d %q", cmd, st, b, err, status, body)
	}
}

func wantPrefix(t *testing.T, c *http.Client, url, cmd, prefix string) {
	t.Helper()
	st, b, err := tryPost(c, url, cmd)
	if err != nil || st != 200 || !strings.HasPrefix(b, prefix) {
		t.Errorf("%.60q: %d %.120q %v, want 200 %q...", cmd, st, b, err, prefix)
	}
}

// dialTLS opens a TLS connection to the gateway as cn, handshake done.
func (e *env) dialTLS(t *testing.T, cn string) (*tls.Conn, error) {
	t.Helper()
	cert, key, err := e.ca.IssueClient(cn, 0)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := tls.X509KeyPair(cert, key)
	return tls.Dial("tcp", e.g.Addr(), &tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{kp}})
}

func (e *env) rawConn(t *testing.T, cn string) *tls.Conn {
	t.Helper()
	c, err := e.dialTLS(t, cn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsClientNamed is a new client (new connections) as cn.
func (e *env) tlsClientNamed(t *testing.T, cn string) *http.Client {
	t.Helper()
	cert, key, err := e.ca.IssueClient(cn, 0)
	if err != nil {
		t.Fatal(err)
	}
	return e.tlsClient(t, cert, key)
}

// metrics is the text of /metrics.
func (e *env) metrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
