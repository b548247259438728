package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/pki"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

func TestGatewayHelp(t *testing.T) {
	code, out := run(t, "gateway", "-h")
	if code != 0 || !strings.Contains(out, "redisrepl gateway [-config FILE]") || !strings.Contains(out, "-config file") {
		t.Errorf("gateway -h: %d\n%s", code, out)
	}
	if code, out := run(t, "-h"); code != 0 || !strings.Contains(out, "redisrepl gateway [-config FILE]") {
		t.Errorf("-h does not list gateway: %d\n%s", code, out)
	}
	if code, out := run(t, "gateway", "extra"); code != 2 || !strings.Contains(out, `unexpected argument "extra"`) {
		t.Errorf("gateway extra: %d\n%s", code, out)
	}
}

func TestGatewayBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.toml")
	os.WriteFile(path, []byte("[gateway]\nlisten = \"nope\"\n"), 0o644)
	code, out := run(t, "gateway", "-config", path)
	if code != 2 || !strings.Contains(out, path+`:2: gateway.listen: "nope" is not host:port`) {
		t.Errorf("bad config: %d\n%s", code, out)
	}
	if code, out := run(t, "gateway", "-config", filepath.Join(dir, "absent.toml")); code != 2 || !strings.Contains(out, "absent.toml") {
		t.Errorf("absent config: %d\n%s", code, out)
	}
}

// gwFiles writes a CA, the hub's certificate and the labs' into dir.
func gwFiles(t *testing.T, dir string, labs ...string) {
	t.Helper()
	ca, err := pki.NewCA("gateway test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), true); err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.IssueServer([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "hub.pem"), c, filepath.Join(dir, "hub.key"), k, true); err != nil {
		t.Fatal(err)
	}
	for _, lab := range labs {
		c, k, err := ca.IssueClient(lab, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(filepath.Join(dir, lab+".pem"), c, filepath.Join(dir, lab+".key"), k, true); err != nil {
			t.Fatal(err)
		}
	}
}

func gwStatus(t *testing.T, addr string) gateway.Status {
	t.Helper()
	var st gateway.Status
	if code, body := get(t, "http://"+addr+"/status"); code == 200 {
		json.Unmarshal([]byte(body), &st)
	}
	return st
}

// TestGatewayCommand runs "redisrepl gateway": it serves its tenants,
// reloads on an edit of the file and on SIGHUP, keeps its tenants on an
// invalid edit, logs every request and exits 0 on SIGTERM.
func TestGatewayCommand(t *testing.T) {
	webdistest.Require(t)
	dir := t.TempDir()
	gwFiles(t, dir, "labA", "labB")
	port, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rds, err := webdistest.StartRedis(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rds.Stop() })
	listen, metrics := freeAddr(t), freeAddr(t)
	path := filepath.Join(dir, "gateway.toml")
	head := fmt.Sprintf("[gateway]\nlisten = %q\npath = \"/redis\"\ncert = \"hub.pem\"\nkey = \"hub.key\"\nclient_ca = \"ca.pem\"\nredis = \"redis://%s/0\"\nmetrics_addr = %q\n",
		listen, rds.Addr, metrics)
	tenantA := "[[tenant]]\nname = \"labA\"\nclient = \"labA\"\nnamespaces = [\"labA:\"]\n"
	tenantB := "[[tenant]]\nname = \"labB\"\nclient = \"labB\"\nnamespaces = [\"labB:\"]\n"
	writeFile(t, path, head+tenantA, false)
	p := start(t, "gateway", "-config", path)
	waitHealthz(t, metrics, 200)

	client := func(lab string) *webdis.Client {
		c, err := webdis.New(webdis.Options{URL: "https://" + listen + "/redis", CertFile: filepath.Join(dir, lab+".pem"),
			KeyFile: filepath.Join(dir, lab+".key"), CAFile: filepath.Join(dir, "ca.pem")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ctx := context.Background()
	a, b := client("labA"), client("labB")
	if _, err := a.Do(ctx, []byte("SET"), []byte("labA:k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Do(ctx, []byte("SET"), []byte("labB:k"), []byte("v")); err == nil {
		t.Fatal("labB served before it is in the file")
	}

	// An edit adds labB (saved by rename, as editors do).
	writeFile(t, path, head+tenantA+tenantB, true)
	webdistest.WaitFor(t, 10*time.Second, "labB in /status", func() bool { return len(gwStatus(t, metrics).Tenants) == 2 })
	if _, err := b.Do(ctx, []byte("SET"), []byte("labB:k"), []byte("v")); err != nil {
		t.Fatalf("labB after the edit: %v", err)
	}

	// An invalid edit keeps both tenants and shows in /status and /healthz.
	writeFile(t, path, head+tenantA+tenantB+"bogus = 1\n", true)
	webdistest.WaitFor(t, 10*time.Second, "the reload error in /status", func() bool {
		return strings.Contains(gwStatus(t, metrics).LastReloadError, "bogus")
	})
	if code, body := get(t, "http://"+metrics+"/healthz"); code != 503 || !strings.Contains(body, "bogus") {
		t.Errorf("/healthz after an invalid edit: %d %q", code, body)
	}
	if _, err := b.Do(ctx, []byte("GET"), []byte("labB:k")); err != nil {
		t.Errorf("labB after the invalid edit: %v", err)
	}

	// SIGHUP applies the file as it is: labB is removed by an edit that
	// the watcher may or may not have seen yet.
	writeFile(t, path, head+tenantA, false)
	p.cmd.Process.Signal(syscall.SIGHUP)
	webdistest.WaitFor(t, 10*time.Second, "labB gone from /status", func() bool {
		st := gwStatus(t, metrics)
		return len(st.Tenants) == 1 && st.LastReloadError == ""
	})
	if _, err := b.Do(ctx, []byte("GET"), []byte("labB:k")); err == nil {
		t.Error("labB served after its removal")
	}
	direct, err := redis.Dial("tcp", rds.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if users, _ := redis.Strings(direct.Do("ACL", "USERS")); strings.Contains(strings.Join(users, " "), "labB") {
		t.Errorf("labB's ACL user remains: %v", users)
	}
	if _, m := get(t, "http://"+metrics+"/metrics"); !strings.Contains(m, `redisrepl_gateway_requests_total{code="200",tenant="labA"}`) ||
		!strings.Contains(m, `redisrepl_gateway_refusals_total{reason="unknown certificate",tenant="(unknown)"}`) ||
		!strings.Contains(m, "redisrepl_gateway_request_duration_seconds_bucket") {
		t.Errorf("/metrics lacks per-tenant series:\n%s", m)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	out := p.out.String()
	if !strings.Contains(out, `"tenant":"labA","cmd":"SET","status":200`) || !strings.Contains(out, `"duration"`) {
		t.Errorf("no access log line:\n%s", out)
	}
}

// TestGatewayBinaryFront: webdistest runs this binary as the hub's front
// (Options.GatewayBinary), from a file it writes: the file validates, the
// hub serves, and stopping and starting it works.
func TestGatewayBinaryFront(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, GatewayBinary: binary,
		Namespaces: []string{"a:"}, Read: []string{"r:"}, Log: t.Logf})
	c, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Do(ctx, []byte("SET"), []byte("a:k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, []byte("SET"), []byte("b:k"), []byte("v")); err == nil {
		t.Error("a key outside the namespace was written")
	}
	if err := hub.StopNginx(); err != nil {
		t.Fatal(err)
	}
	if err := hub.StartNginx(); err != nil {
		t.Fatal(err)
	}
	if v, err := redis.String(c.Do(ctx, []byte("GET"), []byte("a:k"))); err != nil || v != "v" {
		t.Errorf("after a restart of the gateway: %q %v", v, err)
	}
}
