package webdistest

import (
	"crypto/tls"
	"os"
	"path/filepath"

	"github.com/redisrepl/redisrepl/webdis/pki"
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
// a client certificate of a foreign CA (with that CA) into dir, with package
// pki (the code behind "redisrepl certs"). Keys are ECDSA P-256, written
// 0600. The server certificate is valid for 127.0.0.1, ::1, localhost and
// every host given (IP addresses or DNS names). Existing files are replaced.
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

	ca, err := pki.NewCA("redisrepl test CA", 0)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFile(c.CA, ca.CertPEM, pki.CertMode, true); err != nil {
		return nil, err
	}
	serverHosts := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hosts {
		if h != "" {
			serverHosts = append(serverHosts, h)
		}
	}
	certPEM, keyPEM, err := ca.IssueServer(serverHosts, 0)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(c.ServerCert, certPEM, c.ServerKey, keyPEM, true); err != nil {
		return nil, err
	}
	if certPEM, keyPEM, err = ca.IssueClient("redisrepl test client", 0); err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(c.ClientCert, certPEM, c.ClientKey, keyPEM, true); err != nil {
		return nil, err
	}

	foreign, err := pki.NewCA("foreign test CA", 0)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFile(c.ForeignCA, foreign.CertPEM, pki.CertMode, true); err != nil {
		return nil, err
	}
	if certPEM, keyPEM, err = foreign.IssueClient("foreign test client", 0); err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(c.ForeignCert, certPEM, c.ForeignKey, keyPEM, true); err != nil {
		return nil, err
	}
	return c, nil
}

// TLSConfig builds a client TLS config that trusts the CA in caFile and, when
// certFile is not empty, presents that certificate.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	return pki.TrustingConfig(caFile, certFile, keyFile)
}
