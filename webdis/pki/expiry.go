package pki

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

// EarliestExpiry is the earliest NotAfter of the certificates in the PEM
// file path (a CA file may hold several: the first to expire is the one that
// breaks verification).
func EarliestExpiry(path string) (time.Time, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	var first time.Time
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != certBlock {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", path, err)
		}
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	if first.IsZero() {
		return time.Time{}, fmt.Errorf("%s: no certificate in the file", path)
	}
	return first, nil
}
