package trust

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding. It is the only
// way this project identifies a root: never by name or serial number.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of DER bytes.
func FingerprintOf(der []byte) Fingerprint { return sha256.Sum256(der) }

// String returns the fingerprint as upper-case hex bytes joined by colons,
// the form Cloudflare's API and most tools print.
func (f Fingerprint) String() string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, len(f)*3-1)
	for i, v := range f {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[v>>4], digits[v&0xf])
	}
	return string(b)
}

// Hex returns the fingerprint as 64 lower-case hex characters, the form used
// in file names, nicknames and aliases.
func (f Fingerprint) Hex() string { return hex.EncodeToString(f[:]) }

// Short returns the first 8 bytes in hex, for tables and logs.
func (f Fingerprint) Short() string { return hex.EncodeToString(f[:8]) }

// IsZero reports whether f is the zero fingerprint.
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// MarshalText writes the colon form.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText accepts any form ParseFingerprint does.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	v, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// ErrBadFingerprint is returned for strings that are not a SHA-256
// fingerprint.
var ErrBadFingerprint = errors.New("trust: not a SHA-256 fingerprint")

// ParseFingerprint accepts 64 hex characters, or 32 hex bytes separated by
// colons (or spaces), in either case. Colon-separated bytes may be unpadded
// ("AB:0:31"), as one Cloudflare docs example prints them.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	s = strings.TrimSpace(s)
	q := s // the input as quoted in errors, bounded: it may come off the wire
	if len(q) > 120 {
		q = q[:120] + "…"
	}
	if strings.ContainsAny(s, ": ") {
		parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ' ' })
		if len(parts) != len(f) {
			return f, fmt.Errorf("%w: %q has %d bytes, want %d", ErrBadFingerprint, q, len(parts), len(f))
		}
		for i, p := range parts {
			if len(p) == 0 || len(p) > 2 {
				return Fingerprint{}, fmt.Errorf("%w: %q: byte %d is %q", ErrBadFingerprint, q, i, p[:min(len(p), 8)])
			}
			if len(p) == 1 {
				p = "0" + p
			}
			if _, err := hex.Decode(f[i:i+1], []byte(p)); err != nil {
				// hex.Decode may have written half a byte: return the
				// zero fingerprint, never a partial one.
				return Fingerprint{}, fmt.Errorf("%w: %q: byte %d is %q", ErrBadFingerprint, q, i, p)
			}
		}
		return f, nil
	}
	if len(s) != 2*len(f) {
		return f, fmt.Errorf("%w: %q has %d characters, want %d", ErrBadFingerprint, q, len(s), 2*len(f))
	}
	if _, err := hex.Decode(f[:], []byte(s)); err != nil {
		return Fingerprint{}, fmt.Errorf("%w: %q: %v", ErrBadFingerprint, q, err)
	}
	return f, nil
}

// MustFingerprint parses s and panics on error; for package-level tables of
// known fingerprints.
func MustFingerprint(s string) Fingerprint {
	f, err := ParseFingerprint(s)
	if err != nil {
		panic(err)
	}
	return f
}

// Cert is a parsed certificate with its fingerprint computed once.
type Cert struct {
	X509 *x509.Certificate
	FP   Fingerprint
	// ID is the control plane's certificate id, or "" when unknown.
	ID string
}

// NewCert wraps a parsed certificate.
func NewCert(c *x509.Certificate) *Cert { return &Cert{X509: c, FP: FingerprintOf(c.Raw)} }

// PEM returns the certificate in PEM form, ending in a newline.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.X509.Raw})
}

// Subject returns the subject's common name, or the whole subject when it has
// none.
func (c *Cert) Subject() string {
	if c.X509.Subject.CommonName != "" {
		return c.X509.Subject.CommonName
	}
	return c.X509.Subject.String()
}

// ErrNoCertificate is returned when PEM input holds no certificate.
var ErrNoCertificate = errors.New("trust: no PEM certificate")

// ParsePEM parses every CERTIFICATE block in data. Other block types are
// skipped; a CERTIFICATE block that does not parse is an error.
func ParsePEM(data []byte) ([]*Cert, error) {
	var out []*Cert
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust: certificate %d: %w", len(out)+1, err)
		}
		out = append(out, NewCert(c))
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// ParseOnePEM parses data that must hold exactly one certificate.
func ParseOnePEM(data []byte) (*Cert, error) {
	cs, err := ParsePEM(data)
	if err != nil {
		return nil, err
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("trust: want one certificate, found %d", len(cs))
	}
	return cs[0], nil
}

// ParseDER parses one DER certificate.
func ParseDER(der []byte) (*Cert, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	return NewCert(c), nil
}
