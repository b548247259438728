package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// The TLS configurations of redisrepl's connections: the link's client to
// the hub, the gateway's server, and the connection to a local Redis with
// TLS. Every one is TLS 1.2 or newer and verifies its peer.

// ErrNoCertificate says a CA file holds no PEM certificate.
var ErrNoCertificate = errors.New("no PEM certificate in the file")

// CertPool reads the PEM certificates of file. An error names the file; a
// file without any is ErrNoCertificate.
func CertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %w", file, ErrNoCertificate)
	}
	return pool, nil
}

// KeyPair loads a certificate and its key; the error names both files.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// ClientConfig is the TLS configuration of the link's client to a hub:
// TLS 1.2 or newer, the client certificate presented, the server verified
// against caFile only and by serverName. Sessions are resumed: a new
// connection costs a round trip less, which across a WAN is tens of
// milliseconds on the path of a change.
func ClientConfig(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, roots, err := ownAndTrusted("client", certFile, keyFile, "CA file", caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            roots,
		ServerName:         serverName,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}, nil
}

// TrustingConfig is a client TLS configuration, TLS 1.2 or newer, that
// verifies the server against the CAs in caFile and, when certFile is set,
// presents that certificate.
func TrustingConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	roots, err := CertPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if certFile != "" {
		cert, err := KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ServerConfig is the gateway's TLS configuration: TLS 1.2 or newer, a
// client certificate signed by a CA of clientCAFile required, HTTP/2 first
// so that a link carries many requests in flight on one connection
// (docs/ARCHITECTURE.md, "The path of a change").
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, pool, err := ownAndTrusted("server", certFile, keyFile, "client_ca", clientCAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// ownAndTrusted loads the certificate an end presents and the CAs it
// trusts; errors name the end's role and the CA setting.
func ownAndTrusted(role, certFile, keyFile, caName, caFile string) (tls.Certificate, *x509.CertPool, error) {
	cert, err := KeyPair(certFile, keyFile)
	if err != nil {
		return cert, nil, fmt.Errorf("%s %w", role, err)
	}
	pool, err := CertPool(caFile)
	if err != nil {
		return cert, nil, fmt.Errorf("%s: %w", caName, err)
	}
	return cert, pool, nil
}

// LocalRedisConfig is the TLS configuration of a connection to a local
// Redis: TLS 1.2 or newer, the server verified against caFile (the
// system's CAs when empty) and its host name, the client certificate
// presented when set.
func LocalRedisConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := CertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("local_ca: %w", err)
		}
		c.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("local_cert and local_key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
