package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/pki"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// env is a hub Redis and a gateway in front of it, configured from a real
// TOML file, with a CA that issues client certificates on demand.
type env struct {
	dir   string
	ca    *pki.CA
	redis *webdistest.Process
	cfg   *config.Gateway
	g     *gateway.Gateway
	url   string
	logs  *syncBuf
	// extra are [gateway] fields of the test, replacing the defaults of
	// writeConfig with the same name.
	extra string

	mu      sync.Mutex
	clients map[string]*http.Client
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const tenantsAB = `
[[tenant]]
name       = "labA"
client     = "labA"
namespaces = ["labA:"]
read       = ["shared:"]

[[tenant]]
name       = "labB"
client     = "labB"
namespaces = ["labB:", "b*[x]:"]
`

// newEnv starts a redis-server and a gateway whose file holds tenants (a
// TOML text of [[tenant]] tables).
func newEnv(t *testing.T, tenants string) *env {
	t.Helper()
	return newEnvWith(t, "", tenants)
}

// newEnvWith is newEnv with extra [gateway] fields.
func newEnvWith(t *testing.T, extra, tenants string) *env {
	t.Helper()
	webdistest.Require(t)
	e := &env{dir: t.TempDir(), clients: map[string]*http.Client{}, logs: &syncBuf{}, extra: extra}
	var err error
	if e.ca, err = pki.NewCA("gateway test CA", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.ca.WriteFiles(e.path("ca.pem"), e.path("ca.key"), true); err != nil {
		t.Fatal(err)
	}
	cert, key, err := e.ca.IssueServer([]string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(e.path("hub.pem"), cert, e.path("hub.key"), key, true); err != nil {
		t.Fatal(err)
	}
	port, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if e.redis, err = webdistest.StartRedis(e.dir, port); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.redis.Stop() })
	gport, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.writeConfig(t, fmt.Sprintf("127.0.0.1:%d", gport), tenants)
	if e.cfg, err = config.LoadGateway(e.path("gateway.toml")); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(e.logs).Level(zerolog.InfoLevel)
	if e.g, err = gateway.New(e.cfg, log); err != nil {
		t.Fatal(err)
	}
	if err := e.g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(e.logs.String(), 40))
		}
		e.g.Close()
		for _, c := range e.clients {
			c.CloseIdleConnections()
		}
	})
	e.url = "https://" + e.g.Addr() + "/redis"
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func (e *env) writeConfig(t *testing.T, listen, tenants string) {
	t.Helper()
	text := fmt.Sprintf(`[gateway]
listen    = %q
path      = "/redis"
cert      = "hub.pem"
key       = "hub.key"
client_ca = "ca.pem"
redis     = "redis://%s/0"
max_body_bytes = 1048576
max_streams = 4
header_timeout = "1s"
`, listen, e.redis.Addr)
	for _, l := range strings.Split(e.extra, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok {
			var keep []string
			for _, d := range strings.Split(text, "\n") {
				if !strings.HasPrefix(d, strings.TrimSpace(k)+" ") {
					keep = append(keep, d)
				}
			}
			text = strings.Join(keep, "\n")
		}
	}
	text += e.extra + "\n" + tenants
	tmp := e.path("gateway.toml.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path("gateway.toml")); err != nil {
		t.Fatal(err)
	}
}

// reload rewrites the file with tenants and applies it.
func (e *env) reload(t *testing.T, tenants string) {
	t.Helper()
	e.writeConfig(t, e.cfg.Listen, tenants)
	cfg, err := config.LoadGateway(e.path("gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	e.g.Apply(context.Background(), cfg)
}

// client is an HTTPS client presenting a certificate of the test CA named
// cn (issued once).
func (e *env) client(t *testing.T, cn string) *http.Client {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[cn]; ok {
		return c
	}
	cert, key, err := e.ca.IssueClient(cn, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := e.tlsClient(t, cert, key)
	e.clients[cn] = c
	return c
}

func (e *env) tlsClient(t *testing.T, certPEM, keyPEM []byte) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 8}, Timeout: 10 * time.Second}
}

// post sends body (Webdis's command syntax) and returns status and reply.
func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url+"/", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %q: %v", body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// direct is a connection to the hub Redis as its default user.
func (e *env) direct(t *testing.T) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", e.redis.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// snapshot is every key of the hub with its DUMP, and the hub's ACL users
// and configuration that a tenant must not be able to change.
func (e *env) snapshot(t *testing.T) map[string]string {
	t.Helper()
	c := e.direct(t)
	out := map[string]string{}
	keys, err := redis.Strings(c.Do("KEYS", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		d, _ := redis.String(c.Do("DUMP", k))
		ttl, _ := redis.Int64(c.Do("PTTL", k))
		out["key "+k] = fmt.Sprintf("%q ttl>0:%v", d, ttl > 0)
	}
	users, _ := redis.Strings(c.Do("ACL", "LIST"))
	for _, u := range users {
		var keep []string // without password hashes
		for _, f := range strings.Fields(u) {
			if !strings.HasPrefix(f, "#") {
				keep = append(keep, f)
			}
		}
		out["acl "+keep[1]] = strings.Join(keep, " ")
	}
	for _, p := range []string{"notify-keyspace-events", "maxmemory", "appendonly", "save", "dir"} {
		v, _ := redis.Strings(c.Do("CONFIG", "GET", p))
		out["config "+p] = strings.Join(v, "=")
	}
	return out
}
