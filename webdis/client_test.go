package webdis

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// ---- helpers ----

func b(s string) []byte { return []byte(s) }

// hubClient is a Client of h with the accepted certificate; mod may change
// the options first.
func hubClient(t *testing.T, h *webdistest.Hub, mod func(*Options)) *Client {
	t.Helper()
	o := Options{URL: h.URL, CertFile: h.Cert, KeyFile: h.Key, CAFile: h.CA, Timeout: 20 * time.Second}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// remote is a redigo connection to the hub's remote redis-server, closed
// when t ends.
func remote(t *testing.T, h *webdistest.Hub) redis.Conn {
	t.Helper()
	conn, err := h.Remote()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func remoteExists(t *testing.T, conn redis.Conn, key string) bool {
	t.Helper()
	n, err := redis.Int(conn.Do("EXISTS", key))
	if err != nil {
		t.Fatalf("EXISTS %q on the remote: %v", key, err)
	}
	return n == 1
}

// wantKind fails t unless err is an *Error of kind k (and of HTTP status
// status, when status is not 0); it returns that *Error.
func wantKind(t *testing.T, what string, err error, k Kind, status int) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, k)
	}
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("%s: error %T %v, want an *Error of kind %v", what, err, err, k)
	}
	if we.Kind != k || KindOf(err) != k {
		t.Fatalf("%s: kind %v (status %d): %v; want %v", what, we.Kind, we.Status, err, k)
	}
	if status != 0 && we.Status != status {
		t.Fatalf("%s: status %d, want %d: %v", what, we.Status, status, err)
	}
	t.Logf("%s: %v (kind %v, HTTP %d)", what, err, we.Kind, we.Status)
	return we
}

func do(t *testing.T, c *Client, args ...[]byte) any {
	t.Helper()
	v, err := c.Do(context.Background(), args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return v
}

func randBytes(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

// ---- integration tests against a real nginx → webdis → redis-server ----

// roundTrip sets key to val through c, then reads it back through c and
// straight from the remote redis-server.
func roundTrip(t *testing.T, c *Client, conn redis.Conn, key, val []byte) {
	t.Helper()
	if v := do(t, c, b("SET"), key, val); v != "OK" {
		t.Fatalf("SET %q: reply %#v, want \"OK\"", key, v)
	}
	v := do(t, c, b("GET"), key)
	got, ok := v.([]byte)
	if !ok || !bytes.Equal(got, val) {
		t.Fatalf("GET %q through webdis = %#v (%T), want %.80q", key, v, v, val)
	}
	direct, err := redis.Bytes(conn.Do("GET", key))
	if err != nil || !bytes.Equal(direct, val) {
		t.Fatalf("GET %q on the remote = %.80q, %v; want %.80q", key, direct, err, val)
	}
}

func TestClientRoundTrip(t *testing.T) {
	h := webdistest.New(t, webdistest.Options{Log: t.Logf})
	c := hubClient(t, h, nil)
	conn := remote(t, h)

	if v := do(t, c, b("PING")); v != "PONG" {
		t.Fatalf("PING = %#v", v)
	}

	t.Run("EveryByteInKeysAndValues", func(t *testing.T) {
		for i := 0; i < 256; i++ {
			x := byte(i)
			roundTrip(t, c, conn, []byte{x}, []byte{x})
			roundTrip(t, c, conn, []byte{'k', x, 'k'}, []byte{'v', x, 'v'})
			roundTrip(t, c, conn, []byte{'e', x}, []byte{x, x})
			// and the key written through webdis is the exact bytes
			if !remoteExists(t, conn, string([]byte{'k', x, 'k'})) {
				t.Fatalf("key k%qk not on the remote", x)
			}
		}
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		roundTrip(t, c, conn, all, all)
		n, err := redis.Int(conn.Do("DBSIZE"))
		if err != nil || n != 3*256+1 {
			t.Fatalf("DBSIZE = %d, %v; want %d (no key merged with another)", n, err, 3*256+1)
		}
	})

	t.Run("Values", func(t *testing.T) {
		vals := []string{"", "a/b", "a.b", "+", "%", "\x00", "\xff", "\r\n", "a b", "1+1", "%2F", "%%", "a%00b",
			".raw", "x.raw", "a.json", "v.txt", "..", "/", "//", "/.raw", "\x00.raw", "é", "a&b=c", "?x#y",
			"\r\n$3\r\nabc\r\n", "-ERR fake\r\n", ":1\r\n"}
		for i, v := range vals {
			roundTrip(t, c, conn, []byte(fmt.Sprintf("val:%d", i)), []byte(v))
		}
		// the same values as keys
		for _, v := range vals {
			roundTrip(t, c, conn, append(b("key:"), v...), b("x"))
		}
	})

	t.Run("EmptyKeyAndArgs", func(t *testing.T) {
		roundTrip(t, c, conn, b(""), b("empty key"))
		roundTrip(t, c, conn, b(""), b(""))
		// empty arguments in the middle of a command keep their place
		if v := do(t, c, b("HSET"), b("hash:empty"), b(""), b(""), b("f"), b("")); v != int64(2) {
			t.Fatalf("HSET hash:empty '' '' f '' = %#v", v)
		}
		got, err := redis.StringMap(conn.Do("HGETALL", "hash:empty"))
		if err != nil || len(got) != 2 || got[""] != "" || got["f"] != "" {
			t.Fatalf("HGETALL hash:empty = %q, %v", got, err)
		}
	})

	t.Run("Replies", func(t *testing.T) {
		if v := do(t, c, b("GET"), b("no such key")); v != nil {
			t.Fatalf("GET of a missing key = %#v, want nil", v)
		}
		if v := do(t, c, b("INCRBY"), b("counter"), b("-5")); v != int64(-5) {
			t.Fatalf("INCRBY = %#v", v)
		}
		do(t, c, b("RPUSH"), b("list"), b("a\x00"), b(""), b("c/d"))
		v := do(t, c, b("LRANGE"), b("list"), b("0"), b("-1"))
		want := []any{b("a\x00"), b(""), b("c/d")}
		if fmt.Sprintf("%q", v) != fmt.Sprintf("%q", want) {
			t.Fatalf("LRANGE = %q, want %q", v, want)
		}
		if v := do(t, c, b("ECHO"), b("a\x00b")); !bytes.Equal(v.([]byte), b("a\x00b")) {
			t.Fatalf("ECHO = %q", v)
		}
	})

	t.Run("RedisErrorReply", func(t *testing.T) {
		do(t, c, b("SET"), b("str"), b("abc"))
		v, err := c.Do(context.Background(), b("INCR"), b("str"))
		if v != nil {
			t.Errorf("value %#v with an error", v)
		}
		var re redis.Error
		if !errors.As(err, &re) {
			t.Fatalf("INCR on a string: %T %v, want a redis.Error", err, err)
		}
		if _, ok := err.(redis.Error); !ok {
			t.Errorf("error is %T, want redis.Error itself", err)
		}
		var we *Error
		if errors.As(err, &we) || KindOf(err) != KindUnknown {
			t.Fatalf("a Redis error reply came back as an *Error: %v", err)
		}
		if !strings.HasPrefix(string(re), "ERR value is not an integer") {
			t.Fatalf("error text %q", re)
		}
		t.Logf("INCR on a string: %v", err)
		// the client is still fine afterwards
		if v := do(t, c, b("INCR"), b("counter:n")); v != int64(1) {
			t.Fatalf("INCR counter:n = %#v", v)
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		// nginx's default client_max_body_size is 1 MiB
		val := bytes.Repeat(b("v"), 2<<20)
		_, err := c.Do(context.Background(), b("SET"), b("big2m"), val)
		wantKind(t, "2 MiB SET", err, KindTooLarge, http.StatusRequestEntityTooLarge)
		if remoteExists(t, conn, "big2m") {
			t.Fatal("the refused 2 MiB SET was executed")
		}
		// 600 KiB of random bytes percent-encode to ~1.5 MiB: refused too
		rnd := randBytes(600 << 10)
		t.Logf("600 KiB random value: %d bytes encoded", CommandLen(b("SET"), b("big600k"), rnd))
		_, err = c.Do(context.Background(), b("SET"), b("big600k"), rnd)
		wantKind(t, "600 KiB random SET (default nginx limit)", err, KindTooLarge, http.StatusRequestEntityTooLarge)
		if remoteExists(t, conn, "big600k") {
			t.Fatal("the refused 600 KiB SET was executed")
		}
		// and the client still works
		roundTrip(t, c, conn, b("after413"), b("ok"))
	})

	t.Run("ForeignClientCert", func(t *testing.T) {
		fc := hubClient(t, h, func(o *Options) { o.CertFile, o.KeyFile = h.ForeignCert, h.ForeignKey })
		_, err := fc.Do(context.Background(), b("SET"), b("foreign"), b("x"))
		wantKind(t, "client certificate of a foreign CA", err, KindCertRefused, http.StatusBadRequest)
		if remoteExists(t, conn, "foreign") {
			t.Fatal("a request with a refused certificate was executed")
		}
	})

	t.Run("ForeignServerCA", func(t *testing.T) {
		fc := hubClient(t, h, func(o *Options) { o.CAFile = h.ForeignCA })
		_, err := fc.Do(context.Background(), b("SET"), b("foreignca"), b("x"))
		wantKind(t, "server certificate checked against a foreign CA", err, KindTLS, 0)
		if remoteExists(t, conn, "foreignca") {
			t.Fatal("a request to an unverified server was executed")
		}
	})

}

func TestClientBigValue(t *testing.T) {
	h := webdistest.New(t, webdistest.Options{MaxBodySize: "16m", Log: t.Logf})
	c := hubClient(t, h, nil)
	conn := remote(t, h)
	rnd := randBytes(600 << 10)
	roundTrip(t, c, conn, b("big600k"), rnd)
	roundTrip(t, c, conn, b("big2m"), bytes.Repeat(b("\x00/.+%"), 2<<20/5))
}

func TestClientConcurrency(t *testing.T) {
	h := webdistest.New(t, webdistest.Options{Log: t.Logf})
	c := hubClient(t, h, func(o *Options) { o.MaxConns = 4 })
	conn := remote(t, h)
	const workers, perWorker = 32, 200
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make(chan error, 10)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				key := fmt.Sprintf("c:%d:%d", w, i)
				v, err := c.Do(context.Background(), b("SET"), b(key), b(key+"/v.raw"))
				if err == nil && v != "OK" {
					err = fmt.Errorf("SET %s: reply %#v", key, v)
				}
				if err != nil {
					if failed.Add(1) <= 10 {
						errs <- fmt.Errorf("SET %s: %w", key, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d SETs failed", n, workers*perWorker)
	}
	t.Logf("%d SETs by %d goroutines over 4 connections in %v (%.0f/s)", workers*perWorker, workers, elapsed,
		float64(workers*perWorker)/elapsed.Seconds())
	n, err := redis.Int(conn.Do("DBSIZE"))
	if err != nil || n != workers*perWorker {
		t.Fatalf("DBSIZE = %d, %v; want %d", n, err, workers*perWorker)
	}
	for _, k := range []string{"c:0:0", "c:31:199", "c:17:101"} {
		if v, err := redis.String(conn.Do("GET", k)); err != nil || v != k+"/v.raw" {
			t.Errorf("GET %s = %q, %v", k, v, err)
		}
	}
}

func TestClientDisabledCommand(t *testing.T) {
	h := webdistest.New(t, webdistest.Options{Disabled: []string{"FLUSHALL"}, Log: t.Logf})
	c := hubClient(t, h, nil)
	conn := remote(t, h)
	do(t, c, b("SET"), b("keep"), b("me"))
	for _, cmd := range []string{"FLUSHALL", "flushall", "FlushAll"} {
		_, err := c.Do(context.Background(), b(cmd))
		wantKind(t, cmd+" disabled in webdis", err, KindForbidden, http.StatusForbidden)
	}
	// MULTI/EXEC/WATCH/DISCARD/SELECT are always refused by webdis
	for _, args := range [][][]byte{{b("MULTI")}, {b("EXEC")}, {b("SELECT"), b("1")}} {
		_, err := c.Do(context.Background(), args...)
		wantKind(t, string(args[0])+" (always refused)", err, KindForbidden, http.StatusForbidden)
	}
	if !remoteExists(t, conn, "keep") {
		t.Fatal("FLUSHALL went through")
	}
	// the client is still fine afterwards
	if v := do(t, c, b("GET"), b("keep")); !bytes.Equal(v.([]byte), b("me")) {
		t.Fatalf("GET keep = %q", v)
	}
}

func TestClientOutages(t *testing.T) {
	h := webdistest.New(t, webdistest.Options{Log: t.Logf})
	c := hubClient(t, h, func(o *Options) { o.Timeout = 10 * time.Second })
	ctx := context.Background()
	roundTrip(t, c, remote(t, h), b("before"), b("x")) // leaves keep-alive connections open

	t.Run("RemoteRedisStopped", func(t *testing.T) {
		if err := h.StopRemoteRedis(); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][][]byte{{b("PING")}, {b("SET"), b("k"), b("v")}} {
			start := time.Now()
			_, err := c.Do(ctx, args...)
			wantKind(t, string(args[0])+" with the remote redis-server stopped", err, KindUnavailable, http.StatusServiceUnavailable)
			t.Logf("answered in %v", time.Since(start))
		}
		if err := h.StartRemoteRedis(); err != nil {
			t.Fatal(err)
		}
		// webdis reconnects to its Redis by itself
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := c.Do(ctx, b("SET"), b("after-redis"), b("y"))
			if err == nil && v == "OK" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SET after the remote redis-server came back: %v %v", v, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		roundTrip(t, c, remote(t, h), b("after-redis"), b("z"))
	})

	t.Run("WebdisStopped", func(t *testing.T) {
		if err := h.StopWebdis(); err != nil {
			t.Fatal(err)
		}
		_, err := c.Do(ctx, b("PING"))
		wantKind(t, "PING with webdis stopped", err, KindUnavailable, http.StatusBadGateway)
		if err := h.StartWebdis(); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, remote(t, h), b("after-webdis"), b("w"))
	})

	t.Run("NginxStopped", func(t *testing.T) {
		roundTrip(t, c, remote(t, h), b("before-nginx"), b("x"))
		if err := h.StopNginx(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := c.Do(ctx, b("SET"), b("during-nginx"), b("x"))
		wantKind(t, "SET with nginx stopped", err, KindUnreachable, 0)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refused connection took %v", d)
		}
		if err := h.StartNginx(); err != nil {
			t.Fatal(err)
		}
		// the same client works again, on a new connection
		roundTrip(t, c, remote(t, h), b("after-nginx"), b("y"))
		if remoteExists(t, remote(t, h), "during-nginx") {
			t.Error("the SET sent while nginx was down was executed later")
		}
	})

	t.Run("NginxRestartedBetweenRequests", func(t *testing.T) {
		// a keep-alive connection killed under an idle client: the next
		// request must not fail
		roundTrip(t, c, remote(t, h), b("k1"), b("1"))
		if err := h.StopNginx(); err != nil {
			t.Fatal(err)
		}
		if err := h.StartNginx(); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, remote(t, h), b("k2"), b("2"))
	})
}

// ---- the client against Go test servers ----

// testPKI is a CA generated by the test, with a server certificate and a
// client certificate it signed, as PEM files.
type testPKI struct {
	dir                   string
	CA                    string
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	ServerCert, ServerKey string // for 127.0.0.1
	ClientCert, ClientKey string
	ForeignKey            string // a key matching neither certificate
	serial                int64
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, path, "PRIVATE KEY", der)
	return key
}

func testCerts(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir, CA: filepath.Join(dir, "ca.pem")}
	p.caKey = newKey(t, filepath.Join(dir, "ca.key"))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "webdis client test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, p.CA, "CERTIFICATE", der)
	p.ServerCert, p.ServerKey = p.leaf(t, "server", x509.ExtKeyUsageServerAuth, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now().Add(24*time.Hour))
	p.ClientCert, p.ClientKey = p.leaf(t, "client", x509.ExtKeyUsageClientAuth, nil, nil, time.Now().Add(24*time.Hour))
	p.ForeignKey = filepath.Join(dir, "foreign.key")
	newKey(t, p.ForeignKey)
	return p
}

// leaf writes a certificate signed by the CA and its key; it returns their
// paths.
func (p *testPKI) leaf(t *testing.T, name string, usage x509.ExtKeyUsage, dns []string, ips []net.IP, notAfter time.Time) (string, string) {
	t.Helper()
	p.serial++
	certFile, keyFile := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	key := newKey(t, keyFile)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

// tlsServer starts an HTTPS test server presenting certFile (signed by
// the test CA; client certificates are not required) and returns a Client
// of it that trusts that CA.
func tlsServerCert(t *testing.T, p *testPKI, certFile, keyFile string, handler http.HandlerFunc, mod func(*Options)) (*httptest.Server, *Client) {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o := Options{URL: srv.URL + "/redis", CertFile: p.ClientCert, KeyFile: p.ClientKey, CAFile: p.CA, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c
}

func tlsServer(t *testing.T, p *testPKI, handler http.HandlerFunc, mod func(*Options)) (*httptest.Server, *Client) {
	t.Helper()
	return tlsServerCert(t, p, p.ServerCert, p.ServerKey, handler, mod)
}

func TestClientAgainstTestServer(t *testing.T) {
	certs := testCerts(t)
	ctx := context.Background()

	t.Run("RequestShape", func(t *testing.T) {
		var got struct {
			method, path, ctype string
			body                []byte
		}
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			got.method, got.path, got.ctype = r.Method, r.URL.Path, r.Header.Get("Content-Type")
			got.body, _ = io.ReadAll(r.Body)
			io.WriteString(w, "+OK\r\n")
		}, nil)
		args := [][]byte{b("SET"), b("a/b"), b("x.raw\x00")}
		if v := do(t, c, args...); v != "OK" {
			t.Fatalf("reply %#v", v)
		}
		if got.method != http.MethodPost || got.path != "/redis/" || got.ctype != "application/x-www-form-urlencoded" {
			t.Errorf("request %s %s (%s)", got.method, got.path, got.ctype)
		}
		if string(got.body) != string(AppendCommand(nil, args...)) {
			t.Errorf("body %q, want %q", got.body, AppendCommand(nil, args...))
		}
	})

	t.Run("Status500", func(t *testing.T) {
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, nil)
		_, err := c.Do(ctx, b("PING"))
		we := wantKind(t, "HTTP 500", err, KindHTTP, http.StatusInternalServerError)
		if !strings.Contains(we.Error(), "boom") {
			t.Errorf("message %q does not quote the body", we.Error())
		}
	})

	t.Run("OtherStatuses", func(t *testing.T) {
		for status, kind := range map[int]Kind{
			400: KindHTTP, 401: KindHTTP, 403: KindForbidden, 404: KindHTTP, 413: KindTooLarge,
			502: KindUnavailable, 503: KindUnavailable, 504: KindUnavailable,
		} {
			_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
			}, nil)
			_, err := c.Do(ctx, b("PING"))
			wantKind(t, fmt.Sprintf("HTTP %d", status), err, kind, status)
		}
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html><center>No required SSL certificate was sent</center></html>", 400)
		}, nil)
		_, err := c.Do(ctx, b("PING"))
		wantKind(t, "nginx's 400", err, KindCertRefused, 400)
	})

	t.Run("GarbageBody", func(t *testing.T) {
		for _, body := range []string{"garbage", "", `{"PING":[true,"PONG"]}`, "+OK\r\nextra", "$5\r\nab\r\n", "*2\r\n$1\r\n1\r\n"} {
			_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, body)
			}, nil)
			_, err := c.Do(ctx, b("PING"))
			wantKind(t, fmt.Sprintf("200 with %q", body), err, KindBadReply, 200)
		}
	})

	t.Run("ReplyTooLarge", func(t *testing.T) {
		const limit = 1000
		reply := func(n int) string { return fmt.Sprintf("$%d\r\n%s\r\n", n, strings.Repeat("x", n)) }
		exact := reply(limit - len("$994\r\n\r\n"))
		if len(exact) != limit {
			t.Fatalf("test bug: %d", len(exact))
		}
		for _, tc := range []struct {
			body string
			ok   bool
		}{{exact, true}, {reply(limit - 7), false}, {reply(10 << 20), false}} {
			_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tc.body)
			}, func(o *Options) { o.MaxReplyBytes = limit })
			v, err := c.Do(ctx, b("GET"), b("k"))
			if tc.ok {
				if err != nil || len(v.([]byte)) != limit-8 {
					t.Fatalf("reply of exactly MaxReplyBytes: %v", err)
				}
				continue
			}
			wantKind(t, fmt.Sprintf("reply of %d bytes over a limit of %d", len(tc.body), limit), err, KindBadReply, 200)
		}
	})

	t.Run("NeverAnswers", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			// Wait for the end of the subtest only: returning when the
			// client goes away would let the server end the response
			// cleanly, racing with the client's timeout.
			<-release
		}, func(o *Options) { o.Timeout = 300 * time.Millisecond })
		start := time.Now()
		_, err := c.Do(ctx, b("PING"))
		d := time.Since(start)
		wantKind(t, "server that never answers", err, KindTimeout, 0)
		if d < 250*time.Millisecond || d > 3*time.Second {
			t.Errorf("timed out after %v, want ~300ms", d)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error does not wrap context.DeadlineExceeded: %v", err)
		}
	})

	t.Run("StallsInBody", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "$100\r\nabc")
			w.(http.Flusher).Flush()
			// Wait for the end of the subtest only: returning when the
			// client goes away would let the server end the response
			// cleanly, racing with the client's timeout.
			<-release
		}, func(o *Options) { o.Timeout = 300 * time.Millisecond })
		start := time.Now()
		_, err := c.Do(ctx, b("GET"), b("k"))
		wantKind(t, "server that stalls in the body", err, KindTimeout, 0)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timed out after %v", d)
		}
	})

	t.Run("CallerCancels", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			// Wait for the end of the subtest only: returning when the
			// client goes away would let the server end the response
			// cleanly, racing with the client's timeout.
			<-release
		}, nil)
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := c.Do(cctx, b("PING"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled request: %v, want it to wrap context.Canceled", err)
		}
		t.Logf("canceled by the caller: kind %v: %v", KindOf(err), err)
	})

	t.Run("ConnectionClosedWithoutAnswer", func(t *testing.T) {
		_, c := tlsServer(t, certs, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, nil)
		_, err := c.Do(ctx, b("PING"))
		if err == nil {
			t.Fatal("no error")
		}
		t.Logf("connection closed without an answer: kind %v: %v", KindOf(err), err)
	})

	t.Run("WrongHostName", func(t *testing.T) {
		cert, key := certs.leaf(t, "other-host", x509.ExtKeyUsageServerAuth, []string{"other.example"}, nil, time.Now().Add(time.Hour))
		_, c := tlsServerCert(t, certs, cert, key, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "+OK\r\n") }, nil)
		_, err := c.Do(ctx, b("PING"))
		wantKind(t, "server certificate for another host name", err, KindTLS, 0)
	})

	t.Run("ExpiredServerCert", func(t *testing.T) {
		cert, key := certs.leaf(t, "expired", x509.ExtKeyUsageServerAuth, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now().Add(-time.Hour))
		_, c := tlsServerCert(t, certs, cert, key, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "+OK\r\n") }, nil)
		_, err := c.Do(ctx, b("PING"))
		wantKind(t, "expired server certificate", err, KindTLS, 0)
	})

	t.Run("NotTLS", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		defer srv.Close()
		c, err := New(Options{URL: strings.Replace(srv.URL, "http:", "https:", 1), CertFile: certs.ClientCert,
			KeyFile: certs.ClientKey, CAFile: certs.CA, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Do(ctx, b("PING"))
		if err == nil {
			t.Fatal("no error from a plain HTTP server")
		}
		// Wanted: KindTLS. net/http reports this as http.ErrSchemeMismatch
		// (not a tls.RecordHeaderError), which classifyTransport does not
		// recognize, so it comes back as KindUnreachable "request failed".
		if k := KindOf(err); k != KindTLS && k != KindUnreachable {
			t.Fatalf("plain HTTP server: kind %v: %v", k, err)
		}
		t.Logf("plain HTTP server: kind %v: %v", KindOf(err), err)
	})

	t.Run("NothingListening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := New(Options{URL: "https://" + addr + "/redis", CertFile: certs.ClientCert,
			KeyFile: certs.ClientKey, CAFile: certs.CA, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Do(ctx, b("PING"))
		wantKind(t, "nothing listening", err, KindUnreachable, 0)
	})

	t.Run("MaxConns", func(t *testing.T) {
		var open, maxOpen atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(5 * time.Millisecond)
			io.WriteString(w, "+OK\r\n")
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				n := open.Add(1)
				for {
					m := maxOpen.Load()
					if n <= m || maxOpen.CompareAndSwap(m, n) {
						break
					}
				}
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		kp, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
		srv.StartTLS()
		defer srv.Close()
		c, err := New(Options{URL: srv.URL, CertFile: certs.ClientCert, KeyFile: certs.ClientKey, CAFile: certs.CA, MaxConns: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 10; j++ {
					if _, err := c.Do(ctx, b("PING")); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if m := maxOpen.Load(); m > 3 || m < 1 {
			t.Errorf("%d connections open at once, want at most MaxConns=3", m)
		}
		t.Logf("at most %d connections open at once", maxOpen.Load())
	})
}

func TestNewErrors(t *testing.T) {
	certs := testCerts(t)
	dir := t.TempDir()
	noPEM := filepath.Join(dir, "no-pem.pem")
	if err := os.WriteFile(noPEM, []byte("this is not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	ok := Options{URL: "https://127.0.0.1:1/redis", CertFile: certs.ClientCert, KeyFile: certs.ClientKey, CAFile: certs.CA}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Options)
		want string // the error must contain it
	}{
		{"missing cert file", func(o *Options) { o.CertFile = missing }, missing},
		{"missing key file", func(o *Options) { o.KeyFile = missing }, missing},
		{"cert file with no PEM", func(o *Options) { o.CertFile = noPEM }, noPEM},
		{"key not matching the cert", func(o *Options) { o.KeyFile = certs.ForeignKey }, certs.ForeignKey},
		{"missing CA file", func(o *Options) { o.CAFile = missing }, missing},
		{"CA file with no PEM", func(o *Options) { o.CAFile = noPEM }, noPEM},
		{"empty CA file name", func(o *Options) { o.CAFile = "" }, "CA"},
		{"http URL", func(o *Options) { o.URL = "http://127.0.0.1/redis" }, "https"},
		{"URL without host", func(o *Options) { o.URL = "https:///redis" }, "https"},
		{"bad URL", func(o *Options) { o.URL = "https://[::1/redis" }, "[::1"},
	}
	for _, tc := range cases {
		o := ok
		tc.mod(&o)
		c, err := New(o)
		if err == nil {
			c.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q does not name %q", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

func TestClientURL(t *testing.T) {
	certs := testCerts(t)
	c, err := New(Options{URL: "https://user:secret@127.0.0.1:8443/redis", CertFile: certs.ClientCert, KeyFile: certs.ClientKey, CAFile: certs.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if strings.Contains(c.URL(), "secret") || !strings.Contains(c.URL(), "127.0.0.1:8443/redis") {
		t.Errorf("URL() = %q", c.URL())
	}
}

func TestKindString(t *testing.T) {
	for k := KindUnknown; k <= KindTimeout; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "kind(") {
			t.Errorf("Kind %d has no name", int(k))
		}
	}
	if s := Kind(99).String(); s != "kind(99)" {
		t.Errorf("Kind(99) = %q", s)
	}
	if KindOf(errors.New("x")) != KindUnknown || KindOf(nil) != KindUnknown {
		t.Error("KindOf of a foreign error")
	}
	wrapped := fmt.Errorf("wrapped: %w", &Error{Kind: KindTLS})
	if KindOf(wrapped) != KindTLS {
		t.Error("KindOf does not look through wrapping")
	}
}
