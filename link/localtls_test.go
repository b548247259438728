package link

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// A local Redis reached over TLS only (port 0), with a private CA and
// tls-auth-clients yes (a client certificate required): local_ca,
// local_cert and local_key.

// tlsRedis is a redis-server listening only on a TLS port, with its
// certificates (a private CA, a server and a client certificate).
type tlsRedis struct {
	addr  string
	certs *webdistest.Certs
}

func startTLSRedis(t *testing.T) *tlsRedis {
	t.Helper()
	webdistest.Require(t)
	dir := t.TempDir()
	certs, err := webdistest.GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log := filepath.Join(dir, "redis.log")
	p, err := webdistest.StartProcess("redis-server", addr, log, filepath.Join(dir, "redis.out"), syscall.SIGKILL,
		"redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "yes",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("TLS redis-server log:\n%s", p.Tail(30))
		}
		_ = p.Stop()
	})
	r := &tlsRedis{addr: addr, certs: certs}
	pWait(t, 10*time.Second, "TLS redis-server answering", func() bool {
		c, err := r.dial()
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

// dial connects as the link would, with the client certificate.
func (r *tlsRedis) dial() (redis.Conn, error) {
	return r.addr2(true).Dial(context.Background())
}

func (r *tlsRedis) addr2(clientCert bool) store.RedisAddr {
	a := store.RedisAddr{Addr: r.addr, TLS: true, CAFile: r.certs.CA}
	if clientCert {
		a.CertFile, a.KeyFile = r.certs.ClientCert, r.certs.ClientKey
	}
	return a
}

// tlsLinkConfig is a link from the TLS Redis to hub, as a file would give
// it (parsed and validated: the files are checked), with extra lines.
func tlsLinkConfig(t *testing.T, r *tlsRedis, hub *webdistest.Hub, ns, extra string) config.Link {
	t.Helper()
	text := fmt.Sprintf(`[[link]]
name = "tls"
local = "rediss://%s/0"
namespace = %q
remote = %q
cert = %q
key = %q
ca = %q
local_ca = %q
state_file = %q
%s`, r.addr, ns, hub.URL, hub.Cert, hub.Key, hub.CA, r.certs.CA, filepath.Join(t.TempDir(), "tls.state"), extra)
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Links[0].WithDefaults()
}

// A link replicates both ways through a local Redis that takes TLS only and
// requires a client certificate of its private CA.
func TestLocalTLSReplicates(t *testing.T) {
	r := startTLSRedis(t)
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	cfg := tlsLinkConfig(t, r, hub, "t:", fmt.Sprintf("local_cert = %q\nlocal_key = %q\ndirection = \"both\"\n", r.certs.ClientCert, r.certs.ClientKey))
	l, _ := runPlainLink(t, cfg, nil)
	local, err := r.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	_, remote := pConns(t, hub)
	pDo(t, local, "SET", "t:s", "over tls\x00", "EX", 1000)
	pDo(t, local, "HSET", "t:h", "f", "v")
	pDo(t, local, "XADD", "t:x", "1-1", "f", "v")
	pDo(t, remote, "RPUSH", "t:r", "from", "the hub")
	equal := func() bool {
		a, err1 := webdistest.Dump(local, "t:")
		b, err2 := webdistest.Dump(remote, "t:")
		return err1 == nil && err2 == nil && len(a) == 4 && len(webdistest.Diff(a, b, 1500)) == 0
	}
	pWait(t, 15*time.Second, "both sides equal", equal)
	pDo(t, local, "DEL", "t:h")
	pDo(t, remote, "SADD", "t:r2", "x")
	pWait(t, 15*time.Second, "deletes and new keys equal", equal)
	if e := l.LastError(); e != "" {
		t.Fatalf("last error: %s", e)
	}
}

// Without the client certificate the local Redis refuses the connection:
// the error says which setting is missing, and the link says it too.
func TestLocalTLSMissingClientCert(t *testing.T) {
	r := startTLSRedis(t)
	_, err := r.addr2(false).Dial(context.Background())
	if err == nil || !strings.Contains(err.Error(), "set local_cert and local_key") {
		t.Fatalf("dial without a client certificate: %v", err)
	}
	t.Logf("without a client certificate: %v", err)
	// A server certificate of another CA than local_ca.
	a := r.addr2(true)
	a.CAFile = r.certs.ForeignCA
	if _, err := a.Dial(context.Background()); err == nil || !strings.Contains(err.Error(), "not signed by local_ca") {
		t.Fatalf("dial with the wrong local_ca: %v", err)
	}
	// The link: never live, its error names the setting.
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	l, err := New(tlsLinkConfig(t, r, hub, "m:", ""), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	pWait(t, 15*time.Second, "the link to report the missing client certificate", func() bool {
		return strings.Contains(l.LastError(), "set local_cert and local_key")
	})
	if l.State() == Live {
		t.Fatal("live without the local Redis")
	}
}

// The TLS files of the local Redis are read once: with the client
// certificate's files gone (a renewal tool replacing them), a running link
// still opens new connections, here forced by killing its old ones.
func TestLocalTLSFilesReadOnce(t *testing.T) {
	r := startTLSRedis(t)
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	for src, dst := range map[string]string{r.certs.ClientCert: cert, r.certs.ClientKey: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := tlsLinkConfig(t, r, hub, "f:", fmt.Sprintf("local_cert = %q\nlocal_key = %q\n", cert, key))
	l, _ := runPlainLink(t, cfg, nil)
	local, err := r.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	_, remote := pConns(t, hub)
	os.Remove(cert)
	os.Remove(key)
	pDo(t, local, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	pDo(t, local, "CLIENT", "KILL", "TYPE", "pubsub")
	errs := l.Stats.Errors.Load()
	pWait(t, 10*time.Second, "the killed connections noticed", func() bool { return l.Stats.Errors.Load() > errs })
	pDo(t, local, "SET", "f:after", "the files went")
	pWait(t, 15*time.Second, "a write after the files went arrives", func() bool {
		v, _ := redis.String(remote.Do("GET", "f:after"))
		return v == "the files went"
	})
}
