package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const gwHead = `[gateway]
listen    = "127.0.0.1:8443"
cert      = "lab.pem"
key       = "lab.key"
client_ca = "ca.pem"
redis     = "redis://u:secret@127.0.0.1:6380/2"
`

const gwTenants = `
[[tenant]]
name       = "labA"
client     = "labA"
namespaces = ["labA:"]
read       = ["shared:"]

[[tenant]]
name       = "labB"
client     = "labB.example.org"
namespaces = ["labB:", "b*[x]:"]
`

func TestGatewayParse(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	g, err := ParseGateway(path, []byte(gwHead+"path = \"/redis/\"\nmax_streams = 3\nheader_timeout = \"2s\"\ndisabled = [\"eval\"]\n"+gwTenants))
	if err != nil {
		t.Fatal(err)
	}
	if g.Listen != "127.0.0.1:8443" || g.URLPath != "/redis" || g.Cert != filepath.Join(dir, "lab.pem") ||
		g.RedisAddr != "127.0.0.1:6380" || g.RedisDB != 2 || g.RedisUser != "u" || g.RedisPassword != "secret" ||
		g.MaxStreams != 3 || g.HeaderTimeout != 2*time.Second || g.MaxRequests != DefaultGatewayMaxRequests || g.Limits.MaxRequests != 0 ||
		g.MaxBodyBytes != DefaultGatewayMaxBody || g.UserPrefix != DefaultGatewayUserPrefix || !slices.Equal(g.Disabled, []string{"EVAL"}) {
		t.Errorf("parsed: %+v", g)
	}
	if strings.Contains(g.RedisRedacted(), "secret") {
		t.Error("RedisRedacted shows the password")
	}
	if len(g.Tenants) != 2 || !g.Tenants[1].Equal(Tenant{Name: "labB", Client: "labB.example.org", Namespaces: []string{"labB:", "b*[x]:"}, Limits: DefaultLimits}) ||
		!slices.Equal(g.Tenants[0].Read, []string{"shared:"}) {
		t.Errorf("tenants: %+v", g.Tenants)
	}
	if g2, err := ParseGateway(path, []byte(gwHead)); err != nil || g2.URLPath != "/" || len(g2.Tenants) != 0 {
		t.Errorf("no tenants: %+v %v", g2, err)
	}
}

func TestGatewayErrors(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	for _, tc := range []struct{ name, text, want string }{
		{"no gateway", gwTenants, "gateway.toml: no [gateway] table"},
		{"unknown gateway field", gwHead + "listn = \"x\"\n", `gateway.toml:7: gateway.listn: unknown field`},
		{"missing listen", strings.Replace(gwHead, "listen    = \"127.0.0.1:8443\"\n", "", 1), "gateway.toml:1: gateway.listen: required"},
		{"bad listen", strings.Replace(gwHead, "127.0.0.1:8443", "8443", 1), `gateway.toml:2: gateway.listen: "8443" is not host:port`},
		{"bad redis", strings.Replace(gwHead, "redis://u:secret@127.0.0.1:6380/2", "http://h/0", 1), `gateway.toml:6: gateway.redis: scheme "http"`},
		{"missing cert file", strings.Replace(gwHead, "lab.pem", "nope.pem", 1), `gateway.toml:3: gateway.cert: open`},
		{"bad path", gwHead + "path = \"redis\"\n", `gateway.toml:7: gateway.path: "redis": must start with "/"`},
		{"bad limit", gwHead + "max_streams = 0\n", `gateway.toml:7: gateway.max_streams: 0: must be from 1`},
		{"bad duration", gwHead + "idle_timeout = 5\n", `gateway.toml:7: gateway.idle_timeout: must be a string`},
		{"unknown tenant field", gwHead + gwTenants + "namespace = [\"x\"]\n", `gateway.toml:18: tenant "labB": namespace: unknown field`},
		{"missing namespaces", gwHead + "[[tenant]]\nname = \"x\"\nclient = \"x\"\n", `gateway.toml:7: tenant "x": namespaces: required`},
		{"missing name", gwHead + "[[tenant]]\nclient = \"x\"\nnamespaces = [\"x:\"]\n", `gateway.toml:7: tenant #1: name: required`},
		{"empty prefix", gwHead + "[[tenant]]\nname = \"x\"\nclient = \"x\"\nnamespaces = [\"\"]\n", `gateway.toml:10: tenant "x": namespaces: a prefix must not be empty`},
		{"empty read prefix", gwHead + "[[tenant]]\nname = \"x\"\nclient = \"x\"\nnamespaces = [\"x:\"]\nread = [\"\"]\n", `gateway.toml:11: tenant "x": read: a prefix must not be empty`},
		{"not strings", gwHead + "[[tenant]]\nname = \"x\"\nclient = \"x\"\nnamespaces = [1]\n", `gateway.toml:10: tenant "x": namespaces: must be an array of strings`},
		{"overlap", gwHead + gwTenants + "[[tenant]]\nname = \"labC\"\nclient = \"labC\"\nnamespaces = [\"lab\"]\n",
			`gateway.toml:21: tenant "labC": namespaces: "lab" overlaps namespace "labA:" of tenant "labA" (line 8)`},
		{"duplicate name", gwHead + gwTenants + "[[tenant]]\nname = \"labA\"\nclient = \"labC\"\nnamespaces = [\"c:\"]\n",
			`gateway.toml:19: tenant "labA": name: "labA" is already the name of the [[tenant]] at line 8`},
		{"duplicate client", gwHead + gwTenants + "[[tenant]]\nname = \"labC\"\nclient = \"labA\"\nnamespaces = [\"c:\"]\n",
			`gateway.toml:20: tenant "labC": client: "labA" is already the client of tenant "labA"`},
		{"tenant not array", gwHead + "[tenant]\nname = \"x\"\n", `gateway: tenant must be written as [[tenant]] tables`},
	} {
		_, err := ParseGateway(path, []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %s", tc.name, err, tc.want)
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Errorf("%s: %T is not an *Error", tc.name, err)
		}
	}
	// Every problem at once.
	_, err := ParseGateway(path, []byte(gwHead+"max_streams = 0\n[[tenant]]\nname = \"x\"\n"))
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("want 3 errors, got %d:\n%v", n, err)
	}
}

func TestGatewayExampleFile(t *testing.T) {
	dir := t.TempDir()
	writePKI(t, dir, "hub")
	data, err := os.ReadFile(filepath.Join("..", "examples", "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/etc/redisrepl/pki/hub.", dir+"/hub.", "/etc/redisrepl/pki/", dir+"/").Replace(string(data))
	g, err := ParseGateway(filepath.Join(dir, "gateway.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Tenants) != 3 || g.URLPath != "/redis" || g.MetricsAddr != "127.0.0.1:9122" {
		t.Errorf("example: %+v", g)
	}
}

func TestWatchGateway(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(gwHead), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Gateway, 4)
	errs := make(chan error, 4)
	go WatchGateway(ctx, path, 50*time.Millisecond, func(g *Gateway, err error) {
		if err != nil {
			errs <- err
			return
		}
		got <- g
	})
	time.Sleep(200 * time.Millisecond) // the watch is set up
	if err := os.WriteFile(path, []byte(gwHead+gwTenants), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if len(g.Tenants) != 2 {
			t.Errorf("reloaded: %d tenants", len(g.Tenants))
		}
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
	}
	os.WriteFile(path, []byte(gwHead+"bogus = 1\n"), 0o644)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "bogus") {
			t.Errorf("error %v", err)
		}
	case <-got:
		t.Fatal("an invalid file was applied")
	case <-time.After(5 * time.Second):
		t.Fatal("no error")
	}
}
