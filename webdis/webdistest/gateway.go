package webdistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/gateway"
)

// TestClientName is the subject CN of Hub.Cert, the client certificate
// GenerateCerts writes: with FrontGateway, the default tenant's client.
const TestClientName = "redisrepl test client"

// gatewayFront is what a Hub needs to run (and re-run) its gateway.
type gatewayFront struct {
	cfg  *config.Gateway
	file string   // with GatewayBinary: the gateway's file
	proc *Process // with GatewayBinary: the running gateway
}

// GatewayConfig builds the gateway configuration FrontGateway runs: the
// default tenant "test" (client TestClientName) with opts's namespaces
// (none = every key) and read prefixes, then opts.Tenants.
func GatewayConfig(c *Certs, listen, redisAddr string, opts Options) (*config.Gateway, error) {
	maxBody, err := nginxSize(opts.MaxBodySize)
	if err != nil {
		return nil, err
	}
	ns := opts.Namespaces
	if len(ns) == 0 {
		ns = []string{""}
	}
	cfg := &config.Gateway{
		Path: filepath.Join(filepath.Dir(c.CA), "gateway.toml"), Listen: listen, URLPath: "/redis",
		Cert: c.ServerCert, Key: c.ServerKey, ClientCA: c.CA,
		Redis: fmt.Sprintf("redis://%s/%d", redisAddr, opts.RemoteDB), RedisAddr: redisAddr, RedisDB: opts.RemoteDB,
		LogLevel: "warn", MaxBodyBytes: maxBody, MaxStreams: 256, MaxRequests: config.DefaultGatewayMaxRequests,
		HeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		UserPrefix: config.DefaultGatewayUserPrefix, Disabled: opts.Disabled,
		KeyspaceEvents: config.DefaultGatewayKeyspaceEvents,
		Limits:         opts.Limits.WithDefaults(config.DefaultLimits), MaxConnections: config.DefaultGatewayMaxConnections,
		MaxBodyMemory: config.DefaultGatewayMaxBodyMemory, BodyTimeout: config.DefaultGatewayBodyTimeout,
		Tenants: append([]config.Tenant{{Name: "test", Client: TestClientName, Namespaces: ns, Read: opts.Read}}, opts.Tenants...),
	}
	return cfg, nil
}

// nginxSize reads a size as nginx writes it ("1m", "64k", "512"); "" is
// nginx's default client_max_body_size, 1 MiB.
func nginxSize(s string) (int64, error) {
	if s == "" {
		return 1 << 20, nil
	}
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult, s = 1<<10, s[:len(s)-1]
	case "m":
		mult, s = 1<<20, s[:len(s)-1]
	case "g":
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("webdistest: size %q: want e.g. 1m, 64k", s)
	}
	if n == 0 { // nginx: 0 = no limit
		return 1 << 30, nil
	}
	return n * mult, nil
}

func (h *Hub) startGatewayFront() error {
	var port int
	var err error
	if port, err = FreePort(); err != nil {
		return err
	}
	h.gw.cfg, err = GatewayConfig(h.Certs, fmt.Sprintf("127.0.0.1:%d", port), h.remote.Addr, h.opts)
	if err != nil {
		return err
	}
	h.URL = fmt.Sprintf("https://127.0.0.1:%d/redis", port)
	return h.runGateway()
}

func (h *Hub) runGateway() error {
	if h.opts.GatewayBinary != "" {
		return h.runGatewayProcess()
	}
	log := zerolog.New(logWriter{h.logf}).Level(zerolog.WarnLevel)
	g, err := gateway.New(h.gw.cfg, log)
	if err != nil {
		return err
	}
	var lastErr error
	for range 50 { // the port may still be held for a moment after a stop
		if lastErr = g.Start(context.Background()); lastErr == nil {
			h.Gateway = g
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

func (h *Hub) stopGateway() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("webdistest: hub closed")
	}
	if h.gw.proc != nil {
		err := h.gw.proc.Stop()
		h.logf("webdistest: stopped the gateway %s (pid %d)", h.URL, h.gw.proc.Pid())
		return err
	}
	if h.Gateway == nil {
		return nil
	}
	err := h.Gateway.Close()
	h.Gateway = nil
	h.logf("webdistest: stopped the gateway %s", h.URL)
	return err
}

func (h *Hub) restartGateway() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("webdistest: hub closed")
	}
	if h.Gateway != nil || h.gw.proc != nil && h.gw.proc.Running() {
		return nil
	}
	if err := h.runGateway(); err != nil {
		return err
	}
	h.logf("webdistest: started the gateway %s", h.URL)
	if h.chainUp() {
		return h.waitChain()
	}
	return nil
}

// logWriter passes the gateway's log lines (warnings and errors: refusals,
// an unreachable Redis) to Options.Log.
type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	w.logf("gateway: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// runGatewayProcess writes the gateway's file and runs GatewayBinary on it.
func (h *Hub) runGatewayProcess() error {
	if len(h.opts.Namespaces) == 0 {
		return errors.New("webdistest: GatewayBinary needs Options.Namespaces")
	}
	h.gw.file = filepath.Join(h.Dir, "gateway.toml")
	cfg := *h.gw.cfg
	cfg.LogLevel = "info" // the access log too, as a hub runs it
	p, err := startGatewayFile(h.gw.file, filepath.Join(h.Dir, "gateway.out"), h.opts.GatewayBinary, &cfg)
	if err != nil {
		return err
	}
	h.gw.proc = p
	return nil
}

func dialTCP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// GatewayTOML is cfg written as a gateway file.
func GatewayTOML(cfg *config.Gateway) string {
	var b strings.Builder
	q := strconv.Quote
	list := func(ss []string) string {
		qs := make([]string, len(ss))
		for i, s := range ss {
			qs[i] = q(s)
		}
		return "[" + strings.Join(qs, ", ") + "]"
	}
	fmt.Fprintf(&b, "[gateway]\nlisten = %s\npath = %s\ncert = %s\nkey = %s\nclient_ca = %s\nredis = %s\n",
		q(cfg.Listen), q(cfg.URLPath), q(cfg.Cert), q(cfg.Key), q(cfg.ClientCA), q(cfg.Redis))
	fmt.Fprintf(&b, "log_level = %s\nmax_body_bytes = %d\nmax_streams = %d\nmax_total_requests = %d\n",
		q(cfg.LogLevel), cfg.MaxBodyBytes, cfg.MaxStreams, cfg.MaxRequests)
	fmt.Fprintf(&b, "header_timeout = %s\nidle_timeout = %s\nuser_prefix = %s\nkeyspace_events = %s\ndisabled = %s\n",
		q(cfg.HeaderTimeout.String()), q(cfg.IdleTimeout.String()), q(cfg.UserPrefix), q(cfg.KeyspaceEvents), list(cfg.Disabled))
	if cfg.MetricsAddr != "" {
		fmt.Fprintf(&b, "metrics_addr = %s\n", q(cfg.MetricsAddr))
	}
	for _, t := range cfg.Tenants {
		fmt.Fprintf(&b, "\n[[tenant]]\nname = %s\nclient = %s\nnamespaces = %s\nread = %s\neval = %t\n",
			q(t.Name), q(t.Client), list(t.Namespaces), list(t.Read), t.Eval)
	}
	return b.String()
}

// SetGatewayEval grants the default tenant of a FrontGateway hub its own
// read-only scripts (eval = true), or withdraws them, as a reload would.
func (h *Hub) SetGatewayEval(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg := *h.gw.cfg
	cfg.Tenants = slices.Clone(cfg.Tenants)
	cfg.Tenants[0].Eval = on
	h.gw.cfg = &cfg
	if h.Gateway != nil {
		h.Gateway.Apply(context.Background(), &cfg)
	}
}
