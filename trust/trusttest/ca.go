// Package trusttest holds what every trust.Store test needs: certificates
// minted on the fly (NewCA, CA.Issue), an in-memory multi-target store (Fake)
// and the conformance suite (Run) that every adapter, present and future,
// must pass.
//
// Nothing here reads a committed PEM file: every certificate is made with
// x509.CreateCertificate in the test that uses it.
package trusttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certagent/certagent/trust"
)

// KeyType is the kind of key a minted certificate carries.
type KeyType int

// The key types.
const (
	ECDSA KeyType = iota
	RSA
	Ed25519
)

// CA is a certificate minted for a test together with its private key. It is
// usually a root, but Issue makes leaves and intermediates of the same type.
// The embedded *trust.Cert gives FP, X509 and PEM().
type CA struct {
	*trust.Cert
	// Key is the certificate's private key.
	Key crypto.Signer
	// Parent is the issuer, or nil for a self-signed certificate.
	Parent *CA
}

// Option configures NewCA and Issue.
type Option func(*spec)

type spec struct {
	keyType     KeyType
	rsaBits     int
	curve       elliptic.Curve
	sigAlg      x509.SignatureAlgorithm
	isCA        bool
	noBasic     bool
	notBefore   time.Time
	notAfter    time.Time
	serial      *big.Int
	commonName  string
	org         string
	dnsNames    []string
	ips         []net.IP
	parent      *CA
	freshKey    bool
	maxPathLen  int
	validitySet bool
	keyUsage    *x509.KeyUsage
}

// WithRSA gives the certificate an RSA key of bits bits (1024 and up). RSA
// keys are cached per size, so many RSA certificates stay fast but share a
// key; add WithFreshKey when that matters.
func WithRSA(bits int) Option {
	return func(s *spec) { s.keyType, s.rsaBits = RSA, bits }
}

// WithECDSA gives the certificate an ECDSA key on curve (P-224 included, for
// rejection tests).
func WithECDSA(curve elliptic.Curve) Option {
	return func(s *spec) { s.keyType, s.curve = ECDSA, curve }
}

// WithEd25519 gives the certificate an Ed25519 key.
func WithEd25519() Option { return func(s *spec) { s.keyType = Ed25519 } }

// WithFreshKey generates an RSA key for this certificate instead of reusing
// the cached one. ECDSA and Ed25519 keys are always fresh.
func WithFreshKey() Option { return func(s *spec) { s.freshKey = true } }

// WithSignature signs the certificate with alg. SHA-1 algorithms go through
// x509.CreateCertificate; MD5WithRSA, which the standard library refuses to
// produce, is made by re-signing the TBS by hand.
func WithSignature(alg x509.SignatureAlgorithm) Option {
	return func(s *spec) { s.sigAlg = alg }
}

// WithSHA1 signs with SHA-1 (SHA1WithRSA or ECDSAWithSHA1, matching the
// signer's key; the issuer must not use Ed25519).
func WithSHA1() Option { return func(s *spec) { s.sigAlg = sha1Marker } }

// WithMD5 signs with MD5WithRSA; the signer's key must be RSA.
func WithMD5() Option { return WithSignature(x509.MD5WithRSA) }

// sha1Marker asks for the SHA-1 algorithm matching the signer's key.
const sha1Marker = x509.SignatureAlgorithm(-1)

// NotCA makes a certificate whose BasicConstraints say CA=false.
func NotCA() Option { return func(s *spec) { s.isCA = false } }

// AsCA makes a certificate whose BasicConstraints say CA=true (the default
// for NewCA; use it with Issue for an intermediate).
func AsCA() Option { return func(s *spec) { s.isCA = true } }

// WithKeyUsage sets the key usage extension to exactly ku (0 leaves the
// extension out), instead of the default for a CA or a leaf.
func WithKeyUsage(ku x509.KeyUsage) Option { return func(s *spec) { s.keyUsage = &ku } }

// NoBasicConstraints omits the BasicConstraints extension altogether.
func NoBasicConstraints() Option { return func(s *spec) { s.noBasic = true; s.isCA = false } }

// WithValidity sets the validity window.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(s *spec) { s.notBefore, s.notAfter, s.validitySet = notBefore, notAfter, true }
}

// Expired makes a certificate that expired an hour ago.
func Expired() Option {
	now := time.Now()
	return WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))
}

// NotYetValid makes a certificate that becomes valid in a day.
func NotYetValid() Option {
	now := time.Now()
	return WithValidity(now.Add(24*time.Hour), now.Add(48*time.Hour))
}

// WithSerial sets the serial number (by default every certificate gets a
// fresh random one). Two CAs with the same serial and subject but different
// keys or issuers have different fingerprints: the project must tell them
// apart.
func WithSerial(n int64) Option { return func(s *spec) { s.serial = big.NewInt(n) } }

// WithSerialNumber sets the serial number to a copy of n.
func WithSerialNumber(n *big.Int) Option {
	return func(s *spec) { s.serial = new(big.Int).Set(n) }
}

// WithCommonName sets the subject's CN (default "certagent test CA N").
func WithCommonName(cn string) Option { return func(s *spec) { s.commonName = cn } }

// WithOrganization sets the subject's O.
func WithOrganization(o string) Option { return func(s *spec) { s.org = o } }

// WithDNSNames sets the subject alternative names of a leaf.
func WithDNSNames(names ...string) Option { return func(s *spec) { s.dnsNames = names } }

// WithIPs sets the IP subject alternative names of a leaf.
func WithIPs(ips ...net.IP) Option { return func(s *spec) { s.ips = ips } }

// SignedBy makes parent the issuer instead of self-signing.
func SignedBy(parent *CA) Option { return func(s *spec) { s.parent = parent } }

var caCounter atomic.Int64

// NewCA mints a self-signed root CA (ECDSA P-256, valid from an hour ago for
// a year, CA=true) changed by opts. It fails t on any error.
func NewCA(t testing.TB, opts ...Option) *CA {
	t.Helper()
	s := spec{keyType: ECDSA, curve: elliptic.P256(), isCA: true, maxPathLen: -1}
	for _, o := range opts {
		o(&s)
	}
	ca, err := mint(s)
	if err != nil {
		t.Fatalf("trusttest: minting certificate: %v", err)
	}
	return ca
}

// NewCAs mints n distinct roots with the same options.
func NewCAs(t testing.TB, n int, opts ...Option) []*CA {
	t.Helper()
	out := make([]*CA, n)
	for i := range out {
		out[i] = NewCA(t, opts...)
	}
	return out
}

// Issue mints a certificate signed by ca: by default a TLS server leaf for
// "localhost" and 127.0.0.1 (CA=false). Pass AsCA for an intermediate.
func (ca *CA) Issue(t testing.TB, opts ...Option) *CA {
	t.Helper()
	s := spec{
		keyType:    ECDSA,
		curve:      elliptic.P256(),
		parent:     ca,
		commonName: "localhost",
		dnsNames:   []string{"localhost"},
		ips:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		maxPathLen: -1,
	}
	for _, o := range opts {
		o(&s)
	}
	leaf, err := mint(s)
	if err != nil {
		t.Fatalf("trusttest: issuing certificate: %v", err)
	}
	return leaf
}

// Certs returns the trust.Cert of each CA, for Change and Policy inputs.
func Certs(cas ...*CA) []*trust.Cert {
	out := make([]*trust.Cert, len(cas))
	for i, c := range cas {
		out[i] = c.Cert
	}
	return out
}

// KeyPEM returns the private key in PKCS #8 PEM form.
func (ca *CA) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		// Every key this package makes marshals; anything else is a bug here.
		panic(fmt.Sprintf("trusttest: marshal key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ChainPEM returns the certificate followed by its issuers up to, but not
// including, the root.
func (ca *CA) ChainPEM() []byte {
	var out []byte
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.PEM()...)
	}
	if len(out) == 0 {
		out = ca.PEM()
	}
	return out
}

// TLSCertificate returns the certificate and its chain (without the root)
// with its key, for an httptest or tls.Listen server.
func (ca *CA) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{PrivateKey: ca.Key, Leaf: ca.X509}
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		tc.Certificate = append(tc.Certificate, c.X509.Raw)
	}
	if len(tc.Certificate) == 0 {
		tc.Certificate = [][]byte{ca.X509.Raw}
	}
	return tc
}

// Pool returns a pool holding only ca.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.X509)
	return p
}

// keyCache holds one RSA key per size: generating RSA keys dominates test
// time otherwise (seconds under -race). ECDSA and Ed25519 keys are cheap and
// always fresh, so two default CAs never share a key.
var keyCache sync.Map // string → crypto.Signer

func makeKey(s spec) (crypto.Signer, error) {
	var id string
	switch s.keyType {
	case RSA:
		id = fmt.Sprintf("rsa-%d", s.rsaBits)
	case ECDSA:
		id = "ecdsa-" + s.curve.Params().Name
	case Ed25519:
		id = "ed25519"
	default:
		return nil, fmt.Errorf("unknown key type %d", s.keyType)
	}
	cache := s.keyType == RSA && !s.freshKey
	if cache {
		if k, ok := keyCache.Load(id); ok {
			return k.(crypto.Signer), nil
		}
	}
	var k crypto.Signer
	var err error
	switch s.keyType {
	case RSA:
		k, err = rsa.GenerateKey(rand.Reader, s.rsaBits)
	case ECDSA:
		k, err = ecdsa.GenerateKey(s.curve, rand.Reader)
	case Ed25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", id, err)
	}
	if !cache {
		return k, nil
	}
	got, _ := keyCache.LoadOrStore(id, k)
	return got.(crypto.Signer), nil
}

func mint(s spec) (*CA, error) {
	key, err := makeKey(s)
	if err != nil {
		return nil, err
	}
	n := caCounter.Add(1)
	if s.commonName == "" {
		s.commonName = fmt.Sprintf("certagent test CA %d", n)
	}
	if s.serial == nil {
		s.serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
		if err != nil {
			return nil, err
		}
		s.serial.Add(s.serial, big.NewInt(1))
	}
	if !s.validitySet {
		now := time.Now()
		s.notBefore, s.notAfter = now.Add(-time.Hour), now.Add(365*24*time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: s.serial,
		Subject:      pkix.Name{CommonName: s.commonName},
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		DNSNames:     s.dnsNames,
		IPAddresses:  s.ips,
	}
	if s.org != "" {
		tmpl.Subject.Organization = []string{s.org}
	}
	if !s.noBasic {
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = s.isCA
		if s.isCA {
			tmpl.MaxPathLen = s.maxPathLen
		}
	}
	if s.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if _, ok := key.(*rsa.PrivateKey); ok && !s.isCA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if s.keyUsage != nil {
		tmpl.KeyUsage = *s.keyUsage
	}
	parentCert, signer := tmpl, key
	if s.parent != nil {
		parentCert, signer = s.parent.X509, s.parent.Key
	}
	md5Wanted := s.sigAlg == x509.MD5WithRSA
	switch {
	case s.sigAlg == sha1Marker:
		switch signer.(type) {
		case *rsa.PrivateKey:
			tmpl.SignatureAlgorithm = x509.SHA1WithRSA
		case *ecdsa.PrivateKey:
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA1
		default:
			return nil, fmt.Errorf("SHA-1 signature needs an RSA or ECDSA signer, have %T", signer)
		}
	case md5Wanted:
		if _, ok := signer.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("MD5 signature needs an RSA signer, have %T", signer)
		}
		// Sign with SHA-256 first, then swap the algorithm and re-sign.
		tmpl.SignatureAlgorithm = x509.SHA256WithRSA
	default:
		tmpl.SignatureAlgorithm = s.sigAlg
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("x509.CreateCertificate: %w", err)
	}
	// ECDSA signatures are random: sign again until r and s have full
	// length where that matters (wineFullECDSA).
	for i := 0; wineFullECDSA && i < 100 && !fullECDSASignature(der, signer); i++ {
		if der, err = x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer); err != nil {
			return nil, fmt.Errorf("x509.CreateCertificate: %w", err)
		}
	}
	if md5Wanted {
		if der, err = resignMD5(der, signer.(*rsa.PrivateKey)); err != nil {
			return nil, err
		}
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing minted certificate: %w", err)
	}
	return &CA{Cert: trust.NewCert(x), Key: key, Parent: s.parent}, nil
}

// fullECDSASignature reports whether der's signature, when signer is an
// ECDSA key, has r and s as long as the curve's order (about 1 in 128 has
// a shorter one, its leading byte zero). Other signers always pass.
func fullECDSASignature(der []byte, signer crypto.Signer) bool {
	k, ok := signer.(*ecdsa.PrivateKey)
	if !ok {
		return true
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return true // mint reports it
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(x.Signature, &sig); err != nil {
		return true
	}
	n := (k.Curve.Params().BitSize + 7) / 8
	return (sig.R.BitLen()+7)/8 == n && (sig.S.BitLen()+7)/8 == n
}

var oidMD5WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}

// resignMD5 rewrites both signature AlgorithmIdentifiers of a certificate
// to md5WithRSAEncryption and signs the new TBS with MD5. The standard library
// refuses to sign with MD5, but a policy test needs such a certificate.
func resignMD5(der []byte, key *rsa.PrivateKey) ([]byte, error) {
	var outer struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, fmt.Errorf("md5: certificate: %w", err)
	}
	algID, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidMD5WithRSA, Parameters: asn1.NullRawValue})
	if err != nil {
		return nil, err
	}
	// TBS fields: [0] version, serial, signature AlgorithmIdentifier, …
	rest := outer.TBS.Bytes
	var fields [][]byte
	for len(rest) > 0 {
		var rv asn1.RawValue
		rest, err = asn1.Unmarshal(rest, &rv)
		if err != nil {
			return nil, fmt.Errorf("md5: TBS field %d: %w", len(fields), err)
		}
		fields = append(fields, rv.FullBytes)
	}
	if len(fields) < 3 {
		return nil, fmt.Errorf("md5: TBS has %d fields", len(fields))
	}
	fields[2] = algID
	var body []byte
	for _, f := range fields {
		body = append(body, f...)
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		return nil, err
	}
	digest := md5.Sum(tbs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.MD5, digest[:])
	if err != nil {
		return nil, fmt.Errorf("md5: sign: %w", err)
	}
	var all []byte
	all = append(all, tbs...)
	all = append(all, algID...)
	bs, err := asn1.Marshal(asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)})
	if err != nil {
		return nil, err
	}
	all = append(all, bs...)
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: all})
}

// RandomFingerprint returns a fingerprint no certificate has, for "remove an
// unknown root" cases.
func RandomFingerprint(t testing.TB) trust.Fingerprint {
	t.Helper()
	var fp trust.Fingerprint
	if _, err := rand.Read(fp[:]); err != nil {
		t.Fatalf("trusttest: %v", err)
	}
	return fp
}
