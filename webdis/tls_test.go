package webdis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// versionServer is an HTTPS server on loopback with the test PKI's server
// certificate and the TLS versions min..max (0 = crypto/tls's default), and
// a Client of it.
func versionServer(t *testing.T, p *testPKI, minV, maxV uint16) *Client {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "+PONG\r\n")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: minV, MaxVersion: maxV}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return clientOf(t, p, srv.URL)
}

func clientOf(t *testing.T, p *testPKI, url string) *Client {
	t.Helper()
	c, err := New(Options{URL: url + "/redis", CertFile: p.ClientCert, KeyFile: p.ClientKey, CAFile: p.CA, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// wantOldTLS fails t unless err is a KindTLS *Error that says the hub
// offers only an old TLS version (naming version, when not "") and that
// redisrepl needs TLS 1.2 or newer.
func wantOldTLS(t *testing.T, what string, err error, version string) {
	t.Helper()
	we := wantKind(t, what, err, KindTLS, 0)
	for _, want := range []string{"offers only", "old TLS version", version, "requires TLS 1.2 or newer"} {
		if !strings.Contains(we.Msg, want) {
			t.Errorf("%s: message %q does not say %q", what, we.Msg, want)
		}
	}
	if strings.Contains(err.Error(), "unreachable") || strings.Contains(we.Msg, "request failed") {
		t.Errorf("%s: still reported as a connection failure: %v", what, err)
	}
}

// A hub that speaks only TLS 1.0 or 1.1 and knows the supported_versions
// extension (any TLS 1.3-era library) refuses the handshake with the
// protocol_version alert: that is a TLS error naming the cause, not
// "unreachable".
func TestTLSVersionRefusedByServer(t *testing.T) {
	p := testCerts(t)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			c := versionServer(t, p, tls.VersionTLS10, v)
			_, err := c.Do(context.Background(), b("PING"))
			wantOldTLS(t, "Do against a "+tls.VersionName(v)+" server", err, "")
			err = c.Subscribe(context.Background(), b("__keyspace@0__:*"), func() {}, func(_, _ []byte) {})
			wantOldTLS(t, "Subscribe against a "+tls.VersionName(v)+" server", err, "")
		})
	}
}

// A hub that predates TLS 1.3 ignores the client's supported_versions and
// answers with its own version in the ServerHello; crypto/tls then refuses
// it on the client side. The message names the version the hub chose.
func TestTLSVersionSelectedByServer(t *testing.T) {
	p := testCerts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go answerTLS11(conn)
		}
	}()
	c := clientOf(t, p, "https://"+ln.Addr().String())
	_, err = c.Do(context.Background(), b("PING"))
	wantOldTLS(t, "a server answering TLS 1.1", err, "TLS 1.1")
}

// answerTLS11 reads a ClientHello and answers as a TLS 1.1 server would: a
// ServerHello of version 0x0302 (TLS_RSA_WITH_AES_128_CBC_SHA, no session
// ID), then waits for the client to give up.
func answerTLS11(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(conn, hdr); err != nil || hdr[0] != 22 {
		return
	}
	if _, err := io.ReadFull(conn, make([]byte, binary.BigEndian.Uint16(hdr[3:]))); err != nil {
		return
	}
	body := []byte{0x03, 0x02} // server_version
	random := make([]byte, 32)
	rand.Read(random)
	body = append(body, random...)
	body = append(body, 0, 0x00, 0x2f, 0) // session_id length, cipher suite, compression
	msg := append([]byte{2, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := append([]byte{22, 0x03, 0x02, byte(len(msg) >> 8), byte(len(msg))}, msg...)
	conn.Write(rec)
	io.Copy(io.Discard, conn)
}

// The client's range is TLS 1.2 to 1.3: a hub that requires TLS 1.3, or
// offers exactly 1.2, is fine.
func TestTLSModernVersionsAccepted(t *testing.T) {
	p := testCerts(t)
	for _, r := range [][2]uint16{{tls.VersionTLS13, tls.VersionTLS13}, {tls.VersionTLS12, tls.VersionTLS12}} {
		t.Run(tls.VersionName(r[0])+"-"+tls.VersionName(r[1]), func(t *testing.T) {
			c := versionServer(t, p, r[0], r[1])
			if v, err := c.Do(context.Background(), b("PING")); err != nil || v != "PONG" {
				t.Fatalf("PING: %#v, %v", v, err)
			}
		})
	}
}
