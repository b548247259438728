// Package webdistest starts, on free loopback ports, the real parts that
// redisrepl talks to: a local redis-server, and a remote redis-server behind
// webdis behind nginx with mutual TLS, plus the certificates for it. Tests
// use New; programs (examples/demo) use Start, StartRedis, StartWebdis,
// StartNginx and GenerateCerts. Options{Front: FrontGateway} puts
// redisrepl's hub gateway in front of the remote redis-server instead of
// nginx and webdis (see FrontGateway).
//
// Webdis 0.1.9 behind nginx 1.22, measured by webdistest_test.go (POST
// bodies, arguments percent-encoded, ".raw" suffix = RESP reply):
//
//  1. Empty arguments survive. Every "/" separates and an empty segment is an
//     empty argument: "SET/k/.raw" sets k to ""; "EVAL/<s>/0//x.raw" gets
//     ARGV {"", "x"}. So "SET/k//.raw" is SET k "" "" (-ERR syntax error).
//     The last argument loses a known extension (.raw .json .txt ...): "SET/k/a.raw"
//     stores "a". Send "." as %2E, or always end the body with ".raw".
//  2. ".raw" arrays are flat only. Bulk strings are exact; integers inside an
//     array come back as bulk strings; nested arrays, nils, status and error
//     replies inside an array are dropped while the count stays:
//     EVAL/<return {1,{'a','b'}}>/1/k/arg.raw answers "*2\r\n$1\r\n1\r\n"
//     (malformed); XRANGE.raw answers "*1\r\n". JSON shows a nested array as
//     null. Integers outside int32 are cut in ".raw" ("return 2147483648"
//     answers ":21" with no CRLF) and, inside an array, corrupt webdis's heap:
//     it aborts (nginx then answers 502). Scripts must return flat arrays of
//     strings (tostring() every number, encode nesting into a string); JSON
//     numbers are right.
//  3. A Redis error is HTTP 200 with the RESP error line: INCR on a string
//     answers "-ERR value is not an integer or out of range\r\n" (JSON:
//     {"INCR":[false,"ERR ..."]}); errors inside EVAL alike.
//  4. A disabled command gets 403 with an empty body, as do MULTI, EXEC,
//     WATCH, DISCARD and SELECT. An entry refuses every command name that is
//     a case-insensitive prefix of it: disabling EVALSHA refuses EVAL too.
//     Remote redis down: 503, empty body (webdis reconnects at once when it
//     is back). Webdis down: 502 from nginx. nginx down: connection refused.
//     A numeric first segment picks the db: "0/SET/k/v" writes db 0.
//  5. nginx's default client_max_body_size (1 MiB) counts the body: 900 KiB
//     and exactly 1,048,576 bytes pass; one byte more or 2 MiB get 413 (an
//     nginx HTML page). With MaxBodySize "64m", 2 MiB and 20 MiB pass.
//  6. Webdis's own limit is "http_max_request_size" (bytes, default 128 MiB;
//     set here to 512 MiB). It counts the whole request per 4 KiB read and
//     only while the request is incomplete (a 1 MiB limit let 1 MiB + 10
//     through). Over it webdis answers 413 with an empty body before the body
//     is in, does not run the command and stops reading the connection.
//     Its pool setting is "pool_size" (redis connections per thread).
package webdistest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/gateway"
)

// Options configure a Hub.
type Options struct {
	MaxBodySize string                           // nginx client_max_body_size; "" keeps nginx's default (1m)
	Disabled    []string                         // webdis commands disabled for every client, e.g. {"EVAL","EVALSHA"}
	RemoteDB    int                              // webdis "database" (the remote db index)
	Log         func(format string, args ...any) // optional, e.g. t.Logf

	// Front picks what serves URL: nginx+webdis (the default) or the
	// gateway. See FrontGateway.
	Front Front
	// HTTP2 puts "http2" on nginx's listen, so that a client offering
	// HTTP/2 gets it (Webdis behind it still speaks HTTP/1.1 to nginx).
	// WEBDISTEST_HTTP2=1 in the environment sets it for every hub
	// (HTTP2Env), so that a package's tests run over HTTP/2 unchanged.
	// The gateway speaks HTTP/2 always.
	HTTP2 bool
	// With FrontGateway: the namespaces and read-only prefixes of the
	// tenant that Cert is (CN "redisrepl test client"). No namespaces means
	// the whole keyspace, which only this harness can ask for (a gateway
	// file must name its prefixes): every test namespace then works, and
	// the gateway's SCAN, KEYS and subscription handling are still used.
	Namespaces, Read []string
	// With FrontGateway: more tenants, served alongside the default one.
	Tenants []config.Tenant
	// With FrontGateway: the per-tenant limits of [gateway] (zero fields
	// are the defaults), e.g. a max_memory.
	Limits config.Limits
	// With FrontGateway: run this redisrepl binary ("BINARY gateway
	// -config FILE", the file written from the options) as a child process,
	// as a hub runs it, instead of the gateway in the test process.
	// Namespaces must then be given: a file cannot name the whole keyspace.
	GatewayBinary string
}

// Front is what serves a Hub's URL.
type Front int

const (
	// FrontDefault (the zero value) is FrontNginx, or FrontGateway with
	// WEBDISTEST_FRONT=gateway in the environment (DefaultFront).
	FrontDefault Front = iota
	// FrontNginx is nginx with mutual TLS proxying /redis/ to webdis, what
	// ever the environment says: for tests of what only that hub allows.
	FrontNginx
	// FrontGateway is redisrepl's hub gateway (package webdis/gateway),
	// run in the test process on a free port and serving the same URL
	// shape, https://127.0.0.1:PORT/redis, for the same client
	// certificate, in front of the remote redis-server. MaxBodySize is its
	// max_body_bytes (in nginx's syntax, "" = 1 MiB as nginx's default) and
	// Disabled its disabled commands. Hub.Gateway is the running gateway;
	// StopNginx/StopWebdis and StartNginx/StartWebdis stop and start it.
	// Webdis and nginx are not started (WebdisAddr is empty):
	//
	//	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway})
	//
	// With WEBDISTEST_FRONT=gateway in the environment, every hub asked for
	// with FrontDefault gets the gateway instead, so that a whole package's
	// tests run against it unchanged:
	//
	//	WEBDISTEST_FRONT=gateway go test ./link/
	FrontGateway
)

// FrontEnv names the environment variable that switches the default
// front; "gateway" picks FrontGateway.
const FrontEnv = "WEBDISTEST_FRONT"

// HTTP2Env names the environment variable that, set to 1, turns
// Options.HTTP2 on for every hub.
const HTTP2Env = "WEBDISTEST_HTTP2"

// Hub is a running stack on loopback: a local redis-server, and a remote
// redis-server reached through webdis behind nginx with mutual TLS.
type Hub struct {
	Dir        string // temp dir holding configs, certs, logs
	LocalAddr  string // local redis-server
	RemoteAddr string // remote redis-server (behind webdis)
	WebdisAddr string // plain HTTP webdis
	URL        string // "https://127.0.0.1:PORT/redis": nginx location /redis/ proxied to webdis

	CA          string // CA of the nginx server cert and of the accepted client cert
	Cert, Key   string // client certificate and key accepted by nginx
	ForeignCert string // client certificate of another CA (refused by nginx)
	ForeignKey  string
	ForeignCA   string // that other CA: trusting only it fails to verify the server
	Certs       *Certs // every generated file, server cert included

	// Gateway is the running gateway with FrontGateway (nil while stopped).
	Gateway *gateway.Gateway

	opts                         Options
	gw                           gatewayFront
	mu                           sync.Mutex
	closed                       bool
	local, remote, webdis, nginx *Process
	webdisCfg                    WebdisConfig
	nginxCfg                     NginxConfig
	probe                        *http.Client
}

// Require skips t (or fails it when CI=true) if redis-server, webdis or
// nginx is not installed.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	for _, b := range Binaries {
		if _, err := FindBinary(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("webdistest: %s not installed; install with: apt-get install -y redis-server webdis nginx-light",
		strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// New is Require, then Start; the hub is closed when t ends (its logs are
// printed first if t failed).
func New(t testing.TB, opts Options) *Hub {
	t.Helper()
	Require(t)
	h, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("webdistest logs (%s):\n%s", h.Dir, h.Logs())
		}
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// Start generates certificates and starts the two redis-servers, webdis
// and nginx on free loopback ports, and returns once a PING posted through
// nginx is answered. On error, whatever was started is stopped.
func Start(opts Options) (h *Hub, err error) {
	if opts.Front == FrontDefault {
		opts.Front = DefaultFront()
	}
	for _, b := range Binaries {
		if b != "redis-server" && opts.Front == FrontGateway {
			continue
		}
		if _, err := FindBinary(b); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "webdistest-")
	if err != nil {
		return nil, err
	}
	h = &Hub{Dir: dir, opts: opts}
	defer func() {
		if err != nil {
			h.Close()
			h = nil
		}
	}()
	c, err := GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		return h, err
	}
	h.Certs, h.CA, h.Cert, h.Key = c, c.CA, c.ClientCert, c.ClientKey
	h.ForeignCA, h.ForeignCert, h.ForeignKey = c.ForeignCA, c.ForeignCert, c.ForeignKey
	if h.probe, err = httpClient(c.CA, c.ClientCert, c.ClientKey); err != nil {
		return h, err
	}
	h.probe.Timeout = 2 * time.Second

	if h.local, err = onFreePort(func(port int) (*Process, error) { return StartRedis(dir, port) }); err != nil {
		return h, err
	}
	if h.remote, err = onFreePort(func(port int) (*Process, error) { return StartRedis(dir, port) }); err != nil {
		return h, err
	}
	if opts.Front == FrontGateway {
		if err := h.startGatewayFront(); err != nil {
			return h, err
		}
		h.LocalAddr, h.RemoteAddr = h.local.Addr, h.remote.Addr
		if err := h.waitChain(); err != nil {
			return h, err
		}
		h.logf("webdistest: hub up in %s: local redis %s (pid %d), remote redis %s (pid %d), gateway %s",
			dir, h.LocalAddr, h.local.Pid(), h.RemoteAddr, h.remote.Pid(), h.URL)
		return h, nil
	}
	h.webdisCfg = WebdisConfig{RedisPort: port(h.remote.Addr), Database: opts.RemoteDB, Disabled: opts.Disabled}
	if h.webdis, err = onFreePort(func(port int) (*Process, error) {
		h.webdisCfg.Port = port
		return StartWebdis(dir, h.webdisCfg)
	}); err != nil {
		return h, err
	}
	h.nginxCfg = NginxConfig{WebdisPort: h.webdisCfg.Port, Certs: c, MaxBodySize: opts.MaxBodySize,
		HTTP2: opts.HTTP2 || os.Getenv(HTTP2Env) == "1"}
	if h.nginx, err = onFreePort(func(port int) (*Process, error) {
		h.nginxCfg.Port = port
		return StartNginx(dir, h.nginxCfg)
	}); err != nil {
		return h, err
	}
	h.LocalAddr, h.RemoteAddr, h.WebdisAddr, h.URL = h.local.Addr, h.remote.Addr, h.webdis.Addr, h.nginxCfg.URL()
	if err := h.waitChain(); err != nil {
		return h, err
	}
	h.logf("webdistest: hub up in %s: local redis %s (pid %d), remote redis %s (pid %d), webdis %s (pid %d), nginx %s (pid %d)",
		dir, h.LocalAddr, h.local.Pid(), h.RemoteAddr, h.remote.Pid(), h.WebdisAddr, h.webdis.Pid(), h.URL, h.nginx.Pid())
	return h, nil
}

// onFreePort starts a process on a fresh free port, retrying with another
// port in case someone else took the first one meanwhile.
func onFreePort(start func(port int) (*Process, error)) (*Process, error) {
	var err error
	for range 3 {
		var port int
		if port, err = FreePort(); err != nil {
			return nil, err
		}
		var p *Process
		if p, err = start(port); err == nil {
			return p, nil
		}
	}
	return nil, err
}

func port(addr string) int {
	var p int
	fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &p)
	return p
}

func (h *Hub) logf(format string, args ...any) {
	if h.opts.Log != nil {
		h.opts.Log(format, args...)
	}
}

// Close stops every process the hub started (SIGTERM by pid, SIGKILL after
// a timeout) and removes Dir. It is safe to call more than once.
func (h *Hub) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.probe != nil {
		h.probe.CloseIdleConnections()
	}
	var errs []error
	if h.Gateway != nil {
		errs = append(errs, h.Gateway.Close())
		h.Gateway = nil
	}
	if h.gw.proc != nil {
		errs = append(errs, h.gw.proc.Stop())
	}
	for _, p := range []*Process{h.nginx, h.webdis, h.remote, h.local} {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	errs = append(errs, os.RemoveAll(h.Dir))
	return errors.Join(errs...)
}

// Logs returns the tail of every process's log, for a failing test.
func (h *Hub) Logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, p := range []*Process{h.local, h.remote, h.webdis, h.nginx, h.gw.proc} {
		if p != nil {
			state := "running"
			if !p.Running() {
				state = fmt.Sprintf("exited: %v", p.ExitErr())
			}
			fmt.Fprintf(&b, "=== %s %s pid %d (%s)\n%s", p.Name, p.Addr, p.Pid(), state, p.Tail(30))
		}
	}
	return b.String()
}

// HTTPClient returns an HTTPS client that trusts CA and presents Cert.
func (h *Hub) HTTPClient() (*http.Client, error) { return httpClient(h.CA, h.Cert, h.Key) }

// Local dials the local redis-server. The caller closes the connection.
func (h *Hub) Local() (redis.Conn, error) { return dial(h.LocalAddr) }

// Remote dials the remote redis-server directly (not through webdis).
func (h *Hub) Remote() (redis.Conn, error) { return dial(h.RemoteAddr) }

func dial(addr string) (redis.Conn, error) {
	return redis.Dial("tcp", addr, redis.DialConnectTimeout(5*time.Second))
}

// waitChain waits until a PING posted through nginx gets 200 "PONG", that
// is until nginx, webdis and the remote redis all serve.
func (h *Hub) waitChain() error {
	// The probe's connection is not kept: a test counts the connections
	// its process holds to the hub.
	defer h.probe.CloseIdleConnections()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		code, body, err := post(h.probe, h.URL+"/", "PING")
		switch {
		case err != nil:
			last = err
		case code != http.StatusOK || !bytes.Contains(body, []byte("PONG")):
			last = errStatus{code, body}
		default:
			return nil
		}
		if time.Now().After(deadline) {
			var tails strings.Builder
			for _, p := range []*Process{h.nginx, h.webdis, h.remote} {
				if p != nil {
					tails.WriteString(p.Tail(10))
				}
			}
			return fmt.Errorf("webdistest: PING through nginx %s not answered within %v: %v\n%s", h.URL, readyTimeout, last, tails.String())
		}
		time.Sleep(pollEvery)
	}
}

// chainUp tells whether nginx, webdis and the remote redis all run.
func (h *Hub) chainUp() bool {
	if h.opts.Front == FrontGateway {
		return (h.Gateway != nil || h.gw.proc != nil && h.gw.proc.Running()) && h.remote.Running()
	}
	return h.nginx.Running() && h.webdis.Running() && h.remote.Running()
}

func (h *Hub) stop(pp **Process) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("webdistest: hub closed")
	}
	p := *pp
	pid := p.Pid()
	if err := p.Stop(); err != nil {
		return err
	}
	h.logf("webdistest: stopped %s %s (pid %d)", p.Name, p.Addr, pid)
	return nil
}

// restart starts *pp again on its port if it is not running, then waits
// for the whole chain when every part of it runs.
func (h *Hub) restart(pp **Process, start func() (*Process, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("webdistest: hub closed")
	}
	if (*pp).Running() {
		return nil
	}
	p, err := start()
	if err != nil {
		return err
	}
	*pp = p
	h.logf("webdistest: started %s %s (pid %d)", p.Name, p.Addr, p.Pid())
	if h.chainUp() {
		return h.waitChain()
	}
	return nil
}

// StopNginx stops nginx and waits until its port refuses connections.
func (h *Hub) StopNginx() error {
	if h.opts.Front == FrontGateway {
		return h.stopGateway()
	}
	return h.stop(&h.nginx)
}

// StartNginx starts nginx again on the same port.
func (h *Hub) StartNginx() error {
	if h.opts.Front == FrontGateway {
		return h.restartGateway()
	}
	return h.restart(&h.nginx, func() (*Process, error) { return StartNginx(h.Dir, h.nginxCfg) })
}

// StopWebdis stops webdis and waits until its port refuses connections.
func (h *Hub) StopWebdis() error {
	if h.opts.Front == FrontGateway {
		return h.stopGateway()
	}
	return h.stop(&h.webdis)
}

// StartWebdis starts webdis again on the same port.
func (h *Hub) StartWebdis() error {
	if h.opts.Front == FrontGateway {
		return h.restartGateway()
	}
	return h.restart(&h.webdis, func() (*Process, error) { return StartWebdis(h.Dir, h.webdisCfg) })
}

// StopRemoteRedis stops the remote redis-server.
func (h *Hub) StopRemoteRedis() error { return h.stop(&h.remote) }

// StartRemoteRedis starts the remote redis-server again, empty, on the
// same port, and waits until webdis serves again (if nginx and webdis run).
func (h *Hub) StartRemoteRedis() error {
	return h.restart(&h.remote, func() (*Process, error) { return StartRedis(h.Dir, port(h.RemoteAddr)) })
}

// RestartRemoteRedis stops the remote redis-server and starts it again on
// the same port, empty (there is no persistence).
func (h *Hub) RestartRemoteRedis() error {
	if err := h.StopRemoteRedis(); err != nil {
		return err
	}
	return h.StartRemoteRedis()
}

// StopLocalRedis stops the local redis-server.
func (h *Hub) StopLocalRedis() error { return h.stop(&h.local) }

// StartLocalRedis starts the local redis-server again, empty, on the same port.
func (h *Hub) StartLocalRedis() error {
	return h.restart(&h.local, func() (*Process, error) { return StartRedis(h.Dir, port(h.LocalAddr)) })
}

// RestartLocalRedis stops the local redis-server and starts it again on the
// same port, empty.
func (h *Hub) RestartLocalRedis() error {
	if err := h.StopLocalRedis(); err != nil {
		return err
	}
	return h.StartLocalRedis()
}
