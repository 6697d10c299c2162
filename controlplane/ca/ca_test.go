package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const account = "0123456789abcdef0123456789abcdef"

func TestGenerate(t *testing.T) {
	tests := []struct {
		keyType  string
		days     int
		wantDays int
		check    func(t *testing.T, pub crypto.PublicKey)
	}{
		{"", 0, DefaultValidityDays, func(t *testing.T, pub crypto.PublicKey) {
			k, ok := pub.(*ecdsa.PublicKey)
			require.True(t, ok, "got %T, want ECDSA", pub)
			assert.Equal(t, elliptic.P256(), k.Curve)
		}},
		{KeyRSA2048, 1, 1, func(t *testing.T, pub crypto.PublicKey) {
			assert.Equal(t, 2048, pub.(*rsa.PublicKey).N.BitLen())
		}},
		{KeyRSA3072, MaxValidityDays, MaxValidityDays, func(t *testing.T, pub crypto.PublicKey) {
			assert.Equal(t, 3072, pub.(*rsa.PublicKey).N.BitLen())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.keyType, func(t *testing.T) {
			is, err := Generate(Request{AccountID: account, ValidityDays: tt.days, KeyType: tt.keyType, Now: now})
			require.NoError(t, err)
			c := is.Cert
			tt.check(t, c.PublicKey)
			assert.Equal(t, "Gateway CA - certplane G1 "+account, c.Subject.CommonName)
			assert.Equal(t, []string{"certplane"}, c.Subject.Organization)
			assert.Equal(t, c.Subject.String(), c.Issuer.String(), "self-signed")
			assert.True(t, c.BasicConstraintsValid && c.IsCA)
			assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, c.KeyUsage)
			assert.Len(t, c.SubjectKeyId, 20)
			require.NoError(t, c.CheckSignatureFrom(c))
			assert.Equal(t, now.Add(time.Duration(tt.wantDays)*24*time.Hour), c.NotAfter)
			assert.True(t, c.NotBefore.Before(now))
			// The agent's acceptance policy takes it.
			_, err = trust.Policy{Now: func() time.Time { return now }}.Check(trust.Candidate{PEM: pemOf(c.Raw)})
			require.NoError(t, err)
			// The key is the certificate's.
			k, err := x509.ParsePKCS8PrivateKey(is.KeyDER)
			require.NoError(t, err)
			assert.True(t, k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey))
			fp, org, raw := Describe(c)
			assert.Equal(t, trust.FingerprintOf(c.Raw).String(), fp)
			assert.Equal(t, "certplane", org)
			assert.Equal(t, "CN=Gateway CA - certplane G1 "+account+",O=certplane", raw)
		})
	}
}

func TestGenerateUnique(t *testing.T) {
	a, err := Generate(Request{AccountID: account, Now: now})
	require.NoError(t, err)
	b, err := Generate(Request{AccountID: account, Now: now})
	require.NoError(t, err)
	assert.NotEqual(t, a.Cert.SerialNumber, b.Cert.SerialNumber)
	assert.NotEqual(t, a.Cert.SubjectKeyId, b.Cert.SubjectKeyId)
}

func TestGenerateRejects(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    Request
		want error
	}{
		{"negative days", Request{ValidityDays: -1}, ErrValidity},
		{"too many days", Request{ValidityDays: MaxValidityDays + 1}, ErrValidity},
		{"key type", Request{KeyType: "dsa-1024"}, ErrKeyType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(tt.r)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func pemOf(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }

// mint creates a self-signed certificate from tmpl with key.
func mint(t *testing.T, key crypto.Signer, edit func(*x509.Certificate)) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "BYO Root", Organization: []string{"Example Inc."}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return string(pemOf(der))
}

func keyPEM(t *testing.T, key crypto.Signer, typ string) string {
	t.Helper()
	var der []byte
	var err error
	switch typ {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	}
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestCheckUpload(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weakEC, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	weakRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	good := mint(t, ec, nil)

	ok := []struct {
		name      string
		cert, key string
	}{
		{"ecdsa pkcs8", good, keyPEM(t, ec, "PRIVATE KEY")},
		{"ecdsa sec1", good, keyPEM(t, ec, "EC PRIVATE KEY")},
		{"rsa pkcs1", mint(t, rsaKey, nil), keyPEM(t, rsaKey, "RSA PRIVATE KEY")},
		{"ed25519", mint(t, edPriv, nil), keyPEM(t, edPriv, "PRIVATE KEY")},
		{"no key usage", mint(t, ec, func(c *x509.Certificate) { c.KeyUsage = 0 }), keyPEM(t, ec, "PRIVATE KEY")},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			is, err := CheckUpload(tt.cert, tt.key, now)
			require.NoError(t, err)
			_, err = x509.ParsePKCS8PrivateKey(is.KeyDER)
			require.NoError(t, err)
		})
	}

	ecKey := keyPEM(t, ec, "PRIVATE KEY")
	bad := []struct {
		name      string
		cert, key string
		want      error
		msg       string
	}{
		{"empty cert", "", ecKey, ErrBadUpload, "empty"},
		{"garbage cert", "hello", ecKey, ErrBadUpload, "does not parse"},
		{"two certs", good + good, ecKey, ErrBadUpload, "2 certificates"},
		{"not a CA", mint(t, ec, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }), ecKey, ErrBadUpload, "not a CA"},
		{"no cert sign", mint(t, ec, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }), ecKey, ErrBadUpload, "key usage"},
		{"no cert sign, DS+KE (rsa)", mint(t, rsaKey, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		}), keyPEM(t, rsaKey, "PRIVATE KEY"), ErrBadUpload, "keyCertSign missing"},
		{"expired", mint(t, ec, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour) }), ecKey, ErrBadUpload, "expired"},
		{"not yet valid", mint(t, ec, func(c *x509.Certificate) { c.NotBefore = now.Add(time.Hour) }), ecKey, ErrBadUpload, "not valid until"},
		{"weak rsa", mint(t, weakRSA, nil), keyPEM(t, weakRSA, "PRIVATE KEY"), ErrBadUpload, "weak key"},
		{"weak curve", mint(t, weakEC, nil), keyPEM(t, weakEC, "EC PRIVATE KEY"), ErrBadUpload, "weak key"},
		{"sha1", mint(t, rsaKey, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.SHA1WithRSA }), keyPEM(t, rsaKey, "PRIVATE KEY"), ErrBadUpload, "SHA-1"},
		{"empty key", good, "", ErrKeyInvalid, "empty"},
		{"key mismatch", good, keyPEM(t, ec2, "PRIVATE KEY"), ErrKeyInvalid, "does not match"},
		{"key is a cert", good, good, ErrKeyInvalid, "no PEM private key"},
		{"encrypted key", good, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", ErrKeyInvalid, "encrypted"},
		{"corrupt key", good, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", ErrKeyInvalid, "does not parse"},
		{"two keys", good, ecKey + ecKey, ErrKeyInvalid, "more than one"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckUpload(tt.cert, tt.key, now)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.msg)
			// Never echo key material back.
			body := strings.TrimSpace(tt.key)
			if i := strings.Index(body, "\n"); i > 0 {
				inner := strings.Split(body, "\n")[1]
				assert.NotContains(t, err.Error(), inner)
			}
		})
	}
}

// TestUploadAndAgentShareThePolicy: certplane refuses an upload for exactly
// the reason the agent would refuse to install it (one function,
// trust.Policy.Check), so no root certplane accepts is one agents drop, and
// none certplane refuses reaches agents another way.
func TestUploadAndAgentShareThePolicy(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	certs := map[string]struct {
		cert string
		key  crypto.Signer
	}{
		"good":          {mint(t, ec, nil), ec},
		"no key usage":  {mint(t, ec, func(c *x509.Certificate) { c.KeyUsage = 0 }), ec},
		"DS+KE":         {mint(t, rsaKey, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment }), rsaKey},
		"CRL sign only": {mint(t, ec, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCRLSign }), ec},
		"not a CA":      {mint(t, ec, func(c *x509.Certificate) { c.IsCA = false }), ec},
		"expired":       {mint(t, ec, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour) }), ec},
		"sha1":          {mint(t, rsaKey, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.SHA1WithRSA }), rsaKey},
	}
	for name, c := range certs {
		t.Run(name, func(t *testing.T) {
			_, upErr := CheckUpload(c.cert, keyPEM(t, c.key, "PRIVATE KEY"), now)
			_, agentErr := trust.Policy{Now: func() time.Time { return now }}.Check(trust.Candidate{PEM: []byte(c.cert)})
			if agentErr == nil {
				assert.NoError(t, upErr, "the agent would install it, so certplane takes it")
				return
			}
			require.ErrorIs(t, upErr, ErrBadUpload, "the agent refuses it (%v), so certplane does", agentErr)
			var rej *trust.Rejection
			require.ErrorAs(t, agentErr, &rej)
			assert.Contains(t, upErr.Error(), rej.Reason, "the same reason")
		})
	}
}

func TestSubjectKeyIDIsRFC7093(t *testing.T) {
	is, err := Generate(Request{AccountID: account, Now: now})
	require.NoError(t, err)
	pub := is.Cert.PublicKey.(*ecdsa.PublicKey)
	point, err := pub.Bytes()
	require.NoError(t, err)
	sum := sha256.Sum256(point)
	assert.Equal(t, sum[:20], is.Cert.SubjectKeyId)
}
