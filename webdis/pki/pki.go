// Package pki makes the certificates of a redisrepl deployment: one CA, the
// hub's server certificate (presented by the TLS proxy in front of Webdis)
// and one client certificate per lab, all signed by that CA.
//
// Keys are ECDSA P-256, written as PKCS#8 PEM ("PRIVATE KEY") with mode
// 0600; certificates are PEM ("CERTIFICATE") with mode 0644. Nothing is
// overwritten unless the caller asks for it.
//
// The same CA serves both directions: nginx trusts it for client
// certificates (ssl_client_certificate), and each lab trusts it for the
// hub's server certificate (the "ca" of its redisrepl configuration).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

const (
	// DefaultCAValidity is how long a CA made by NewCA is valid when no
	// validity is given: 10 years.
	DefaultCAValidity = 3652 * 24 * time.Hour

	// DefaultLeafValidity is how long server and client certificates are
	// valid when no validity is given: 825 days, the longest that Apple's
	// and browsers' rules for server certificates accept.
	DefaultLeafValidity = 825 * 24 * time.Hour

	// backdate is subtracted from NotBefore so that a peer whose clock is a
	// little behind accepts a certificate made a moment ago.
	backdate = time.Hour

	// Organization is the O of every subject this package makes.
	Organization = "redisrepl"

	// maxCN is the longest CommonName X.509 allows (ub-common-name).
	maxCN = 64
)

// PEM block types written by this package.
const (
	certBlock = "CERTIFICATE"
	keyBlock  = "PRIVATE KEY"
)

// File modes of what WriteFiles writes.
const (
	CertMode os.FileMode = 0o644
	KeyMode  os.FileMode = 0o600
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // Cert, PEM-encoded
	KeyPEM  []byte // Key, PKCS#8 PEM-encoded
}

// NewCA makes a self-signed CA named cn (a default name if empty), valid
// for validity from now (DefaultCAValidity if 0). It may sign end-entity
// certificates only (path length 0).
func NewCA(cn string, validity time.Duration) (*CA, error) {
	if cn == "" {
		cn = "redisrepl CA"
	}
	if err := checkCN(cn); err != nil {
		return nil, err
	}
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("pki: negative CA validity %v", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{Organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA written by WriteFiles (or any PEM CA certificate with
// its PKCS#8, SEC 1 or PKCS#1 private key). Errors name the file at fault.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate %s: %w", certFile, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("pki: %s is not a CA certificate (%s)", certFile, cert.Subject)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key %s: %w", keyFile, err)
	}
	if !samePublic(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("pki: CA key %s does not belong to the certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// IssueServer makes a server certificate (ExtKeyUsageServerAuth) for hosts:
// DNS names (a leading "*." for a wildcard is allowed) and IP addresses.
// The first host is also the subject's CommonName. validity 0 means
// DefaultLeafValidity; a certificate never outlives its CA.
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("pki: a server certificate needs at least one host name or IP address")
	}
	tmpl := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	seen := make(map[string]bool)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			seen[ip.String()] = true
			continue
		}
		if err := CheckDNSName(h); err != nil {
			return nil, nil, err
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !seen[h] {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
		seen[h] = true
	}
	cn := strings.TrimSpace(hosts[0])
	if len(cn) > maxCN {
		cn = cn[:maxCN] // the SAN carries the name; the CN is informative
	}
	tmpl.Subject = pkix.Name{CommonName: cn, Organization: []string{Organization}}
	return ca.issue(tmpl, validity)
}

// IssueClient makes a client certificate (ExtKeyUsageClientAuth) whose
// CommonName is name, e.g. the lab's name: nginx can log it
// ($ssl_client_s_dn). validity 0 means DefaultLeafValidity; a certificate
// never outlives its CA.
func (ca *CA) IssueClient(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkCN(name); err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{Organization}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, validity)
}

// WriteFiles writes the CA's certificate and key (see WriteFiles).
func (ca *CA) WriteFiles(certFile, keyFile string, overwrite bool) error {
	return WriteFiles(certFile, ca.CertPEM, keyFile, ca.KeyPEM, overwrite)
}

// Pool is a certificate pool holding the CA, for crypto/x509 and crypto/tls.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	if validity < 0 {
		return nil, nil, fmt.Errorf("pki: negative validity %v", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	if !tmpl.NotAfter.After(now) {
		return nil, nil, fmt.Errorf("pki: the CA %q expired on %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.DateOnly))
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ParseCert parses the first CERTIFICATE block of a PEM file.
func ParseCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == certBlock {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// ParseKey parses the first private key block of a PEM file: PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func ParseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key block")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
}

// CheckDNSName accepts a host name usable in a certificate: dot-separated
// labels of letters, digits and hyphens (not at either end of a label),
// optionally starting with "*." for a wildcard. It refuses what is often
// typed by mistake: a URL, a port, a path.
func CheckDNSName(h string) error {
	bad := func(why string) error { return fmt.Errorf("pki: invalid host %q: %s", h, why) }
	switch {
	case h == "":
		return bad("empty")
	case strings.Contains(h, "://"):
		return bad("give the host name only, not a URL")
	case strings.Contains(h, ":"):
		return bad("give the host name only, without a port (or a valid IP address)")
	case strings.ContainsAny(h, "/?#@ "):
		return bad("give the host name only")
	case len(h) > 253:
		return bad("longer than 253 characters")
	}
	name := strings.TrimSuffix(h, ".")
	name = strings.TrimPrefix(name, "*.")
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return bad("empty label or label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label starts or ends with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("character %q is not allowed in a host name", c))
			}
		}
	}
	return nil
}

func checkCN(cn string) error {
	switch {
	case strings.TrimSpace(cn) == "":
		return errors.New("pki: empty certificate name")
	case len(cn) > maxCN:
		return fmt.Errorf("pki: certificate name %q is longer than %d bytes", cn, maxCN)
	}
	for _, c := range cn {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("pki: certificate name %q holds a control character", cn)
		}
	}
	return nil
}

// serial is a random positive 127-bit serial number (RFC 5280 allows 20
// octets; positive and unpredictable is what matters).
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: certBlock, Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: keyBlock, Bytes: der}), nil
}

func samePublic(a, b crypto.PublicKey) bool {
	ea, err1 := x509.MarshalPKIXPublicKey(a)
	eb, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}
