package link_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// A client certificate the proxy does not trust: the link says so, writes
// nothing, keeps running, and replicates once given a good certificate.
func TestRefusedClientCertificate(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	do(t, local, "SET", "c:k", "v")
	cfg := linkConfig(hub, "c:")
	cfg.Cert, cfg.Key = hub.ForeignCert, hub.ForeignKey
	l := runLink(t, cfg)
	waitFor(t, 10*time.Second, "a certificate error", func() bool {
		return strings.Contains(l.LastError(), "refused the client certificate")
	})
	if l.State() == link.Live {
		t.Fatalf("link claims to be live with a refused certificate")
	}
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 0 {
		t.Fatalf("%d keys written with a refused certificate", n)
	}
	// The good certificate replicates what waited.
	startLink(t, linkConfig(hub, "c:"))
	waitEqual(t, hub, "c:", 10*time.Second)
}

// A CA that did not sign the proxy's certificate: the server is not trusted.
func TestUntrustedServer(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	do(t, local, "SET", "c:k", "v")
	cfg := linkConfig(hub, "c:")
	cfg.CA = hub.ForeignCA
	l := runLink(t, cfg)
	waitFor(t, 10*time.Second, "a TLS error", func() bool {
		return strings.Contains(l.LastError(), "server's certificate was not accepted")
	})
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 0 {
		t.Fatalf("%d keys written to an untrusted server", n)
	}
}

// A remote that answers 500, then garbage: errors are reported, nothing
// panics, the link keeps its dirty keys and retries.
func TestBrokenRemote(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	var mode atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 0:
			http.Error(w, "internal error", http.StatusInternalServerError)
		case 1:
			w.Write([]byte("<html>not RESP</html>"))
		default:
			w.Write([]byte("*3\r\n$1\r\na\r\n")) // truncated
		}
	}))
	pair, err := tls.LoadX509KeyPair(hub.Certs.ServerCert, hub.Certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	cfg := linkConfig(hub, "b:")
	cfg.Remote = srv.URL + "/redis"
	l := runLink(t, cfg)
	do(t, local, "SET", "b:k", "v")
	waitFor(t, 10*time.Second, "HTTP 500 reported", func() bool { return strings.Contains(l.LastError(), "HTTP 500") })
	mode.Store(1)
	waitFor(t, 10*time.Second, "garbage reported", func() bool { return strings.Contains(l.LastError(), "not RESP") })
	mode.Store(2)
	waitFor(t, 10*time.Second, "truncated reply reported", func() bool { return strings.Contains(l.LastError(), "truncated") })
	if l.State() == link.Live {
		t.Fatal("link claims to be live against a broken remote")
	}
}
