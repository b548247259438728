package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestGatewaysBehindHAProxy: two gateway processes serve one hub behind
// haproxy (examples/haproxy/haproxy.cfg: TCP mode, TLS passed through), and one is killed (SIGKILL)
// during a burst of a link in direction both. The link reconnects through
// haproxy to the other and loses nothing: both sides end equal, every
// write there, no key failed, and the fault was noticed (a failed request
// or a broken stream, then a resync).
func TestGatewaysBehindHAProxy(t *testing.T) {
	webdistest.Require(t)
	webdistest.RequireProgram(t, "haproxy", "haproxy")
	dir := t.TempDir()
	certs, err := webdistest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	startRedis := func() *webdistest.Process {
		port, err := webdistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := webdistest.StartRedis(dir, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		return p
	}
	hub, local := startRedis(), startRedis()
	var gws []*webdistest.Process
	var addrs, metrics []string
	for range 2 {
		port, err := webdistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := webdistest.GatewayConfig(certs, fmt.Sprintf("127.0.0.1:%d", port), hub.Addr,
			webdistest.Options{Namespaces: []string{"lab1:"}})
		if err != nil {
			t.Fatal(err)
		}
		cfg.LogLevel = "warn"
		mport, err := webdistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", mport)
		metrics = append(metrics, cfg.MetricsAddr)
		gw, err := webdistest.StartGateway(dir, binary, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gw.Stop() })
		gws, addrs = append(gws, gw), append(addrs, gw.Addr)
	}
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := webdistest.StartHAProxy(dir, string(example), addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Stop() })

	cfg := config.Link{Name: "haproxy", Local: local.Addr, LocalAddr: local.Addr, Namespace: "lab1:",
		Remote: "https://" + lb.Addr + "/redis", Cert: certs.ClientCert, Key: certs.ClientKey, CA: certs.CA,
		Direction: config.Both, StateFile: filepath.Join(dir, "link.state")}.WithDefaults()
	l, err := link.New(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	webdistest.WaitFor(t, 15*time.Second, "link live", func() bool { return l.State() == link.Live })

	// The gateway to kill is the one holding the link's stream; haproxy
	// (leastconn) gives it some of the link's requests too.
	webdistest.WaitFor(t, 10*time.Second, "the link's stream on a gateway", func() bool {
		return gatewayMetric(t, metrics[0], "redisrepl_gateway_open_streams")+gatewayMetric(t, metrics[1], "redisrepl_gateway_open_streams") == 1
	})
	victim := 0
	if gatewayMetric(t, metrics[1], "redisrepl_gateway_open_streams") == 1 {
		victim = 1
	}
	before := l.Status()
	const keys = 20000
	w := webdistest.StartWriter(t, func() string { return local.Addr }, "lab1:", keys, 0)
	webdistest.WaitFor(t, 30*time.Second, "a quarter of the burst", func() bool { return w.Writes() >= keys/4 })
	served := gatewayMetric(t, metrics[victim], "redisrepl_gateway_requests_total")
	if err := gws[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := w.Writes()
	if served == 0 {
		t.Error("the gateway killed had served none of the link's requests: haproxy sent them all to the other")
	}
	webdistest.WaitFor(t, 60*time.Second, "the whole burst", func() bool { return w.Writes() >= keys })
	acked := w.End()
	dump, took := webdistest.WaitEqualAt(t, local.Addr, hub.Addr, "lab1:", 60*time.Second)
	if m := webdistest.Missing(acked, dump); len(m) != 0 {
		t.Errorf("%d of %d keys lack their last write", len(m), len(acked))
	}
	after := l.Status()
	t.Logf("gateway %s (%v requests served) killed after %d of %d writes; converged %v after the last; link errors %d -> %d, resyncs %d -> %d, key errors %d",
		gws[victim].Addr, served, killedAt, w.Writes(), took.Round(time.Millisecond), before.Errors, after.Errors, before.Resyncs, after.Resyncs, after.KeyErrors)
	if after.KeyErrors != before.KeyErrors {
		t.Errorf("%d keys failed on their own: the gateway's death cost more than a reconnect", after.KeyErrors-before.KeyErrors)
	}
	if after.Resyncs == before.Resyncs {
		t.Error("the link did not resync after its stream's gateway died")
	}
	// Through the gateway left, both ways still work.
	hc, err := redis.Dial("tcp", hub.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.Do("SET", "lab1:from-hub", "after"); err != nil {
		t.Fatal(err)
	}
	lc, err := redis.Dial("tcp", local.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	webdistest.WaitFor(t, 20*time.Second, "the hub's write locally", func() bool {
		v, _ := redis.String(lc.Do("GET", "lab1:from-hub"))
		return v == "after"
	})
	webdistest.WaitEqualAt(t, local.Addr, hub.Addr, "lab1:", 20*time.Second)
	// The gateways share the tenants' users: neither set the other's again.
	for _, gw := range gws {
		out, _ := os.ReadFile(gw.OutFile)
		if strings.Contains(string(out), "does not know this tenant's ACL user") {
			t.Errorf("gateway %s found its tenant's ACL user changed under it:\n%s", gw.Addr, gw.Tail(10))
		}
	}
}

// gatewayMetric is the sum of the default tenant's series of name on the
// gateway's /metrics at addr.
func gatewayMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `tenant="test"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}
