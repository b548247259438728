package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tlsFiles is a CA, a server certificate for localhost and a client
// certificate, all as files.
type tlsFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func writeTLSFiles(t *testing.T, dir string) tlsFiles {
	t.Helper()
	c := newCA(t)
	f := tlsFiles{ca: filepath.Join(dir, "ca.pem")}
	if err := c.WriteFiles(f.ca, filepath.Join(dir, "ca.key"), false); err != nil {
		t.Fatal(err)
	}
	write := func(name string, cert, key []byte, err error) (string, string) {
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		if err := WriteFiles(cf, cert, kf, key, false); err != nil {
			t.Fatal(err)
		}
		return cf, kf
	}
	cert, key, err := c.IssueServer([]string{"localhost"}, 0)
	f.serverCert, f.serverKey = write("server", cert, key, err)
	cert, key, err = c.IssueClient("lab1", 0)
	f.clientCert, f.clientKey = write("client", cert, key, err)
	return f
}

// handshake runs a TLS handshake between client and server on a pipe and
// returns the protocol agreed, or the first side's error.
func handshake(client, server *tls.Config) (string, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second) // a failing side cannot hang the test
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1}) // the client reads it once the server accepted it
		}
		done <- err
		b.Close()
	}()
	c := tls.Client(a, client)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if serr := <-done; serr != nil {
		return "", serr
	}
	return c.ConnectionState().NegotiatedProtocol, err
}

func TestClientAndServerConfigsAgreeOnH2WithMutualTLS(t *testing.T) {
	f := writeTLSFiles(t, t.TempDir())
	server, err := ServerConfig(f.serverCert, f.serverKey, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientConfig(f.clientCert, f.clientKey, f.ca, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if client.MinVersion != tls.VersionTLS12 || server.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion client %x server %x, want TLS 1.2", client.MinVersion, server.MinVersion)
	}
	if client.ClientSessionCache == nil {
		t.Error("the hub client resumes no sessions")
	}
	client.NextProtos = []string{"h2", "http/1.1"}
	proto, err := handshake(client, server)
	if err != nil || proto != "h2" {
		t.Fatalf("handshake: protocol %q, %v; want h2", proto, err)
	}
}

func TestServerConfigRefusesAClientWithoutCertificate(t *testing.T) {
	f := writeTLSFiles(t, t.TempDir())
	server, err := ServerConfig(f.serverCert, f.serverKey, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := TrustingConfig(f.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	anon.ServerName = "localhost"
	if _, err := handshake(anon, server); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestClientConfigRefusesAServerOfAnotherCA(t *testing.T) {
	f, other := writeTLSFiles(t, t.TempDir()), writeTLSFiles(t, t.TempDir())
	server, err := ServerConfig(other.serverCert, other.serverKey, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientConfig(f.clientCert, f.clientKey, f.ca, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(client, server); err == nil {
		t.Fatal("a server certificate of another CA was accepted")
	}
}

func TestConfigsNameTheFileAtFault(t *testing.T) {
	dir := t.TempDir()
	f := writeTLSFiles(t, dir)
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("no certificate here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CertPool(empty); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("CertPool of a file without certificate: %v, want ErrNoCertificate", err)
	}
	if _, err := ServerConfig(f.serverCert, f.serverKey, empty); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("ServerConfig with an empty client CA: %v", err)
	}
	if _, err := ClientConfig(f.clientCert, f.serverKey, f.ca, "localhost"); err == nil {
		t.Error("ClientConfig took a certificate with another's key")
	}
	if _, err := LocalRedisConfig(f.clientCert, "", ""); err == nil {
		t.Error("LocalRedisConfig took a certificate without key")
	}
	c, err := LocalRedisConfig("", "", "")
	if err != nil || c.RootCAs != nil || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("LocalRedisConfig without files: %+v, %v; want the system's CAs, TLS 1.2+", c, err)
	}
}
