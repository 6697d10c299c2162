package linuxca

import (
	"crypto/x509"
	"encoding/pem"

	"github.com/certagent/certagent/trust"
)

// nextPEMCert parses the next PEM block of data. It returns the
// certificates found (none for a non-certificate or unparsable block) and
// the rest; rest is nil when data holds no more blocks.
func nextPEMCert(data []byte) ([]*trust.Cert, []byte) {
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, nil
	}
	if b.Type != "CERTIFICATE" {
		return nil, rest
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, rest
	}
	return []*trust.Cert{trust.NewCert(c)}, rest
}
