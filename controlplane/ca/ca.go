// Package ca mints certplane's per-account inspection root CAs and checks
// uploaded (BYO-PKI) roots before they are stored.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/certagent/certagent/trust"
)

// Key algorithms for generated roots.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
	KeyRSA3072   = "rsa-3072"
)

// Validity bounds of validity_period_days, as on Cloudflare.
const (
	MinValidityDays     = 1
	MaxValidityDays     = 10950
	DefaultValidityDays = 1825
)

// Organization is the O of every generated root.
const Organization = "certplane"

// Sentinel errors.
var (
	ErrValidity   = errors.New("ca: validity_period_days out of range")
	ErrKeyType    = errors.New("ca: unknown key type")
	ErrBadUpload  = errors.New("ca: unacceptable custom certificate")
	ErrKeyInvalid = errors.New("ca: unacceptable private key")
)

// Request describes a root to generate.
type Request struct {
	AccountID string
	// ValidityDays is 1..10950; 0 means DefaultValidityDays.
	ValidityDays int
	// KeyType is one of the Key* constants; "" means KeyECDSAP256.
	KeyType string
	// Now is the issuance time.
	Now time.Time
}

// Issued is a generated or accepted root and its private key.
type Issued struct {
	Cert *x509.Certificate
	// KeyDER is the private key in PKCS #8 DER. Seal it before storing.
	KeyDER []byte
}

// CommonName returns the subject CN of an account's generated root.
func CommonName(accountID string) string { return "Gateway CA - certplane G1 " + accountID }

// ValidKeyType reports whether k names a supported key type ("" included).
func ValidKeyType(k string) bool {
	switch k {
	case "", KeyECDSAP256, KeyRSA2048, KeyRSA3072:
		return true
	}
	return false
}

// Generate mints a self-signed root CA for an account.
func Generate(r Request) (*Issued, error) {
	days := r.ValidityDays
	if days == 0 {
		days = DefaultValidityDays
	}
	if days < MinValidityDays || days > MaxValidityDays {
		return nil, fmt.Errorf("%w: %d, want %d..%d", ErrValidity, days, MinValidityDays, MaxValidityDays)
	}
	var key crypto.Signer
	var err error
	switch r.KeyType {
	case "", KeyECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("%w %q, want %s, %s or %s", ErrKeyType, r.KeyType, KeyECDSAP256, KeyRSA2048, KeyRSA3072)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: marshal public key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	subject := pkix.Name{CommonName: CommonName(r.AccountID), Organization: []string{Organization}}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), // never zero
		Subject:      subject,
		Issuer:       subject,
		// Backdated a little so devices with a slow clock accept it at once.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          subjectKeyID(spki),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return &Issued{Cert: cert, KeyDER: keyDER}, nil
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bit string.
func subjectKeyID(spki []byte) []byte {
	pk, ok := bitString(spki)
	if !ok {
		// spki is what MarshalPKIXPublicKey just produced, so this does not
		// happen; hashing all of it would still give a stable, unique id.
		pk = spki
	}
	sum := sha256.Sum256(pk)
	return sum[:20]
}

// Describe returns the API's descriptive fields of a certificate.
func Describe(c *x509.Certificate) (fingerprint, issuerOrg, issuerRaw string) {
	org := ""
	if len(c.Issuer.Organization) > 0 {
		org = c.Issuer.Organization[0]
	}
	return trust.FingerprintOf(c.Raw).String(), org, c.Issuer.String()
}

// CheckUpload validates a custom root and its private key: trust.Policy,
// the acceptance policy the agent applies (exactly one certificate, a CA
// whose key usage, if present, allows signing certificates, inside its
// validity window, a strong key, no MD5/SHA-1), plus: the private key is
// the certificate's. Error messages never contain key material.
func CheckUpload(certPEM, keyPEM string, now time.Time) (*Issued, error) {
	if strings.TrimSpace(certPEM) == "" {
		return nil, fmt.Errorf("%w: certificates is empty", ErrBadUpload)
	}
	p := trust.Policy{Now: func() time.Time { return now }}
	tc, err := p.Check(trust.Candidate{PEM: []byte(certPEM)})
	if err != nil {
		var rej *trust.Rejection
		if errors.As(err, &rej) {
			return nil, fmt.Errorf("%w: %s", ErrBadUpload, rej.Reason)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadUpload, err)
	}
	cert := tc.X509
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: private key does not match the certificate", ErrKeyInvalid)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot encode the private key", ErrKeyInvalid)
	}
	return &Issued{Cert: cert, KeyDER: keyDER}, nil
}

func parsePrivateKey(keyPEM string) (crypto.Signer, error) {
	if strings.TrimSpace(keyPEM) == "" {
		return nil, fmt.Errorf("%w: private_key is empty", ErrKeyInvalid)
	}
	rest := []byte(keyPEM)
	var block *pem.Block
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key block", ErrKeyInvalid)
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			break
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if b, _ := pem.Decode(rest); b != nil && strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("%w: more than one private key", ErrKeyInvalid)
		}
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, fmt.Errorf("%w: encrypted private keys are not supported; decrypt it first", ErrKeyInvalid)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: unsupported PEM block %q", ErrKeyInvalid, block.Type)
	}
	if err != nil {
		// The parser's message names the structure, never the key bytes.
		return nil, fmt.Errorf("%w: %s does not parse: %v", ErrKeyInvalid, block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrKeyInvalid, key)
	}
	return s, nil
}
