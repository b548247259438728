package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCA(t *testing.T) {
	ca := newCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v, valid %v, MaxPathLen %d zero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA cannot sign certificates")
	}
	if c.Subject.CommonName != "test CA" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if years := time.Until(c.NotAfter).Hours() / 24 / 365.25; years < 9.99 || years > 10.01 {
		t.Errorf("CA valid for %.2f years, want 10", years)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Errorf("self-signed CA does not verify against itself: %v", err)
	}
	short, err := NewCA("", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(short.Cert.NotAfter); d < 47*time.Hour || d > 49*time.Hour {
		t.Errorf("CA validity 48h gave NotAfter in %v", d)
	}
	if short.Cert.Subject.CommonName == "" {
		t.Error("empty CA name was not given a default")
	}
}

func TestServerVerifies(t *testing.T) {
	ca := newCA(t)
	certPEM, keyPEM, err := ca.IssueServer([]string{"hub.example.org", "10.0.0.5", "*.hubs.example.org", "::1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	c := parse(t, certPEM)
	for _, host := range []string{"hub.example.org", "10.0.0.5", "a.hubs.example.org", "::1"} {
		_, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	for _, host := range []string{"other.example.org", "10.0.0.6", "hubs.example.org"} {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err == nil {
			t.Errorf("server certificate verified for %s, which it was not issued for", host)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verified as a client certificate")
	}
	if c.Subject.CommonName != "hub.example.org" {
		t.Errorf("CN %q, want the first host", c.Subject.CommonName)
	}
	if d := time.Until(c.NotAfter); d < 824*24*time.Hour || d > 826*24*time.Hour {
		t.Errorf("default validity: NotAfter in %v, want 825 days", d)
	}
	if c.IsCA {
		t.Error("server certificate is a CA")
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("server key %T, want ECDSA", c.PublicKey)
	}
}

func TestClientVerifies(t *testing.T) {
	ca := newCA(t)
	certPEM, keyPEM, err := ca.IssueClient("labA", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	c := parse(t, certPEM)
	if c.Subject.CommonName != "labA" {
		t.Errorf("CN %q, want labA", c.Subject.CommonName)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	// The default KeyUsages is ServerAuth: a client certificate must not pass.
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err == nil {
		t.Error("client certificate verified as a server certificate")
	}
	if d := time.Until(c.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("validity 30 days gave NotAfter in %v", d)
	}
}

func TestForeignCADoesNotVerify(t *testing.T) {
	ca, foreign := newCA(t), newCA(t)
	certPEM, _, err := foreign.IssueClient("intruder", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, certPEM)
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a client certificate of another CA (same CN) verified")
	}
	srvPEM, _, err := foreign.IssueServer([]string{"hub.example.org"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, srvPEM).Verify(x509.VerifyOptions{DNSName: "hub.example.org", Roots: ca.Pool()}); err == nil {
		t.Error("a server certificate of another CA verified")
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca, err := NewCA("short", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.IssueClient("lab", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c := parse(t, certPEM); c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v after the CA's %v", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestBadInput(t *testing.T) {
	ca := newCA(t)
	for _, hosts := range [][]string{nil, {""}, {"https://hub.example.org"}, {"hub.example.org:443"}, {"hub/x"}, {"-a.example"}, {"a..b"}, {"hüb.example"}} {
		if _, _, err := ca.IssueServer(hosts, 0); err == nil {
			t.Errorf("IssueServer(%q) succeeded", hosts)
		}
	}
	for _, name := range []string{"", "  ", strings.Repeat("x", 65), "a\nb"} {
		if _, _, err := ca.IssueClient(name, 0); err == nil {
			t.Errorf("IssueClient(%q) succeeded", name)
		}
	}
	if _, _, err := ca.IssueClient("lab", -time.Hour); err == nil {
		t.Error("negative validity accepted")
	}
}

func TestWriteAndLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(caCert, caKey, false); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("labA", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "labA.pem"), filepath.Join(dir, "labA.key")
	if err := WriteFiles(cert, certPEM, key, keyPEM, false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{caCert: 0o644, caKey: 0o600, cert: 0o644, key: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", filepath.Base(path), got, want)
		}
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Errorf("written pair does not load: %v", err)
	}

	loaded, err := LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("LoadCA read another certificate")
	}
	// A certificate issued by the loaded CA verifies against the original.
	p, _, err := loaded.IssueServer([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, p).Verify(x509.VerifyOptions{DNSName: "localhost", Roots: ca.Pool()}); err != nil {
		t.Errorf("certificate of the loaded CA: %v", err)
	}

	// LoadCA refuses a leaf, a key of another pair, and missing files.
	if _, err := LoadCA(cert, key); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA of a client certificate: %v", err)
	}
	if _, err := LoadCA(caCert, key); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("LoadCA with another key: %v", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "none.pem"), caKey); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "none.pem") {
		t.Errorf("LoadCA of a missing file: %v", err)
	}
}

func TestRefuseOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(cert, key, false); err != nil {
		t.Fatal(err)
	}
	other := newCA(t)
	err := other.WriteFiles(cert, key, false)
	var ee *ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want an ExistsError", err)
	}
	if !strings.Contains(err.Error(), cert) || !strings.Contains(err.Error(), key) {
		t.Errorf("error does not name both files: %v", err)
	}
	if loaded, err := LoadCA(cert, key); err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Errorf("the refused write changed the files (%v)", err)
	}

	// Only the key exists: nothing is written, not even the certificate.
	os.Remove(cert)
	if err := other.WriteFiles(cert, key, false); err == nil {
		t.Fatal("write over an existing key succeeded")
	}
	if _, err := os.Stat(cert); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("certificate written although its key could not be: %v", err)
	}

	// With overwrite the files are replaced and get the right modes even if
	// the old ones had others.
	os.WriteFile(cert, []byte("old"), 0o600)
	os.Chmod(key, 0o644)
	if err := other.WriteFiles(cert, key, true); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(cert, key)
	if err != nil || !loaded.Cert.Equal(other.Cert) {
		t.Fatalf("overwrite did not replace the CA: %v", err)
	}
	for path, want := range map[string]os.FileMode{cert: 0o644, key: 0o600} {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != want {
			t.Errorf("%s after overwrite: mode %o, want %o", filepath.Base(path), fi.Mode().Perm(), want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

func TestModesDespiteUmask(t *testing.T) {
	// A strict umask must not narrow the certificate (nginx workers and the
	// service user read it), and the key is 0600 whatever the umask: modes
	// are set explicitly.
	for _, mask := range []int{0o077, 0o000} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		ca := newCA(t)
		cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
		err := ca.WriteFiles(cert, key, false)
		if err == nil {
			err = ca.WriteFiles(cert, key, true)
		}
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{cert: CertMode, key: KeyMode} {
			if fi, _ := os.Stat(path); fi.Mode().Perm() != want {
				t.Errorf("umask %03o: %s mode %o, want %o", mask, filepath.Base(path), fi.Mode().Perm(), want)
			}
		}
		if err := WriteFile(cert, ca.CertPEM, CertMode, false); !errors.Is(err, fs.ErrExist) {
			t.Errorf("WriteFile over an existing file: %v", err)
		}
		if err := WriteFile(dir, ca.CertPEM, CertMode, true); err == nil {
			t.Error("WriteFile over a directory succeeded")
		}
	}
}

func TestParseKeyFormats(t *testing.T) {
	ca := newCA(t)
	k, err := ParseKey(ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(k.Public(), ca.Cert.PublicKey) {
		t.Error("parsed key differs")
	}
	if _, err := ParseKey(ca.CertPEM); err == nil {
		t.Error("a certificate parsed as a key")
	}
	if _, err := ParseCert(ca.KeyPEM); err == nil {
		t.Error("a key parsed as a certificate")
	}
	// A TLS server with the issued pair accepts a client of the same CA:
	// the files work together as nginx and redisrepl use them.
	srvPEM, srvKey, _ := ca.IssueServer([]string{"127.0.0.1"}, 0)
	cliPEM, cliKey, _ := ca.IssueClient("lab", 0)
	srvPair, err := tls.X509KeyPair(srvPEM, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := tls.X509KeyPair(cliPEM, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvPair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cliPair}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("server side of the mutual TLS handshake: %v", err)
	}
}
