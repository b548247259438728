package webdistest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs holds the paths of the PEM files written by GenerateCerts.
type Certs struct {
	CA          string // CA that signed ServerCert and ClientCert
	ServerCert  string // SAN 127.0.0.1, localhost and the extra hosts
	ServerKey   string
	ClientCert  string // ExtKeyUsageClientAuth, signed by CA
	ClientKey   string
	ForeignCA   string // an unrelated CA
	ForeignCert string // client certificate signed by ForeignCA
	ForeignKey  string
}

// GenerateCerts writes a CA, a server certificate, a client certificate and
// a client certificate of a foreign CA (with that CA) into dir. Keys are
// ECDSA P-256, written 0600. The server certificate is valid for 127.0.0.1,
// ::1, localhost and every host given (IP addresses or DNS names).
func GenerateCerts(dir string, hosts ...string) (*Certs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	c := &Certs{
		CA: p("ca.pem"), ServerCert: p("server.pem"), ServerKey: p("server.key"),
		ClientCert: p("client.pem"), ClientKey: p("client.key"),
		ForeignCA: p("foreign-ca.pem"), ForeignCert: p("foreign-client.pem"), ForeignKey: p("foreign-client.key"),
	}

	ca, caKey, err := newCA("redisrepl test CA", c.CA)
	if err != nil {
		return nil, err
	}
	server := leafTemplate("redisrepl test server", x509.ExtKeyUsageServerAuth)
	server.DNSNames = []string{"localhost"}
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else if h != "" {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	if err := issue(server, ca, caKey, c.ServerCert, c.ServerKey); err != nil {
		return nil, err
	}
	client := leafTemplate("redisrepl test client", x509.ExtKeyUsageClientAuth)
	if err := issue(client, ca, caKey, c.ClientCert, c.ClientKey); err != nil {
		return nil, err
	}

	fca, fcaKey, err := newCA("foreign test CA", c.ForeignCA)
	if err != nil {
		return nil, err
	}
	foreign := leafTemplate("foreign test client", x509.ExtKeyUsageClientAuth)
	if err := issue(foreign, fca, fcaKey, c.ForeignCert, c.ForeignKey); err != nil {
		return nil, err
	}
	return c, nil
}

// TLSConfig builds a client TLS config that trusts the CA in caFile and, when
// certFile is not empty, presents that certificate.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("webdistest: no certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func newCA(cn, certFile string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"redisrepl"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func leafTemplate(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"redisrepl"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
	}
}

func issue(tmpl, ca *x509.Certificate, caKey crypto.Signer, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, mode) // in case the file existed with other bits
}
