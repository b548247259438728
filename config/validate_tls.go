package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
)

// The certificate, key and CA checks, written once for the link's files
// (the hub's and the local Redis's), the gateway's files and
// Link.CheckFiles (files.go).

// pemCheck checks certificate, key and CA files. read returns a file's
// contents, or nil when it cannot be read (read reports that itself);
// badPair and badCA report the files that were read but do not load.
type pemCheck struct {
	read    func(field, path string) []byte
	badPair func(certField, keyField, certPath, keyPath string, err error)
	badCA   func(field, path string, err error)
}

// pair checks that certPath and keyPath load as a certificate and its key.
func (c pemCheck) pair(certField, keyField, certPath, keyPath string) {
	if certPath == "" && keyPath == "" {
		return
	}
	cert, key := c.readSet(certField, certPath), c.readSet(keyField, keyPath)
	if cert == nil || key == nil {
		return
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		c.badPair(certField, keyField, certPath, keyPath, err)
	}
}

// ca checks that path holds at least one PEM certificate, all of them valid.
func (c pemCheck) ca(field, path string) {
	if data := c.readSet(field, path); data != nil {
		if err := checkCA(data); err != nil {
			c.badCA(field, path, err)
		}
	}
}

func (c pemCheck) readSet(field, path string) []byte {
	if path == "" {
		return nil
	}
	return c.read(field, path)
}

func checkCA(data []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate in the file")
	}
	return nil
}

// checkFiles reads the certificates, keys and CAs of d (the hub's and the
// local Redis's) and checks them.
func (p *parser) checkFiles(d *draft) {
	check := pemCheck{
		read: func(key, path string) []byte {
			data, err := p.readFile(path)
			if err != nil {
				p.fail(d.from[key], key, "%v", err)
				return nil
			}
			return data
		},
		badPair: func(certKey, keyKey, certPath, keyPath string, err error) {
			o, k := d.from[keyKey], keyKey // report it where the link itself says something
			if o.section != "link" && d.from[certKey].section == "link" {
				o, k = d.from[certKey], certKey
			}
			p.fail(o, k, "%s and %s do not load as a certificate and key pair: %v", certPath, keyPath, err)
		},
		badCA: func(caKey, path string, err error) {
			p.fail(d.from[caKey], caKey, "%s: %v", path, err)
		},
	}
	check.pair("cert", "key", d.Cert, d.Key)
	check.ca("ca", d.CA)
	check.pair("local_cert", "local_key", d.LocalCert, d.LocalKey)
	check.ca("local_ca", d.LocalCA)
}

// checkLocalTLS checks that local_ca, local_cert and local_key go with a
// rediss:// local URL, and local_cert with local_key.
func (p *parser) checkLocalTLS(d *draft) {
	for _, k := range []string{"local_ca", "local_cert", "local_key"} {
		if o, set := d.from[k]; set && d.LocalAddr != "" && !d.LocalTLS {
			p.fail(o, k, "a TLS setting of the local Redis, but local is not a rediss:// URL (write local = \"rediss://host:port/db\")")
		}
	}
	cert, hasCert := d.from["local_cert"]
	key, hasKey := d.from["local_key"]
	switch {
	case hasCert && !hasKey:
		p.fail(cert, "local_cert", "needs local_key, the key of the client certificate")
	case hasKey && !hasCert:
		p.fail(key, "local_key", "needs local_cert, the client certificate of the key")
	}
}

// checkGatewayFiles reads the gateway's certificate, key and client CA and
// checks them.
func (p *gwParser) checkGatewayFiles(g *Gateway) {
	check := pemCheck{
		read: func(key, path string) []byte {
			data, err := p.readFile(path)
			if err != nil {
				p.failG(key, "%v", err)
				return nil
			}
			return data
		},
		badPair: func(_, keyKey, certPath, keyPath string, err error) {
			p.failG(keyKey, "%s and %s do not load as a certificate and key pair: %v", certPath, keyPath, err)
		},
		badCA: func(caKey, path string, err error) {
			p.failG(caKey, "%s: %v", path, err)
		},
	}
	check.pair("cert", "key", g.Cert, g.Key)
	check.ca("client_ca", g.ClientCA)
}
