package keychain

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"howett.net/plist"

	"github.com/certagent/certagent/trust"
)

// kcCert is one certificate in the keychain, as `security find-certificate
// -a -Z -p` prints it.
type kcCert struct {
	DER []byte
	// X509 is the parsed certificate (nil for entries made by Apply).
	X509 *x509.Certificate
	FP   trust.Fingerprint
	// SHA1 is the keychain's handle for the item (delete-certificate -Z);
	// it is never used to decide which root is which.
	SHA1 [sha1.Size]byte
}

// ErrBadListing is wrapped when the tool's output does not parse.
var ErrBadListing = errors.New("trust/keychain: unexpected security output")

// parseFindCertificate parses the output of `security find-certificate -a -Z
// -p KEYCHAIN`: for each certificate, a "SHA-256 hash: HEX" line (newer
// macOS), a "SHA-1 hash: HEX" line, and a PEM block. Every hash the tool
// prints is checked against the PEM it printed: the fingerprint is always
// computed here, from the DER.
func parseFindCertificate(out []byte) ([]kcCert, error) {
	var (
		certs         []kcCert
		sum256, sum1  string
		inPEM         bool
		block         bytes.Buffer
		lineNo, pemAt int
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case inPEM:
			block.WriteString(line)
			block.WriteByte('\n')
			if line == "-----END CERTIFICATE-----" {
				inPEM = false
				c, err := certFromPEM(block.Bytes(), sum256, sum1)
				if err != nil {
					return nil, fmt.Errorf("%w: certificate at line %d: %v", ErrBadListing, pemAt, err)
				}
				certs = append(certs, c)
				sum256, sum1 = "", ""
				block.Reset()
			}
		case line == "-----BEGIN CERTIFICATE-----":
			inPEM, pemAt = true, lineNo
			block.WriteString(line)
			block.WriteByte('\n')
		case strings.HasPrefix(line, "SHA-256 hash:"):
			sum256 = strings.TrimSpace(strings.TrimPrefix(line, "SHA-256 hash:"))
		case strings.HasPrefix(line, "SHA-1 hash:"):
			sum1 = strings.TrimSpace(strings.TrimPrefix(line, "SHA-1 hash:"))
		default:
			// Other lines (attribute dumps of other tool versions) carry
			// nothing we rely on.
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadListing, err)
	}
	if inPEM {
		return nil, fmt.Errorf("%w: certificate at line %d is truncated", ErrBadListing, pemAt)
	}
	return certs, nil
}

func certFromPEM(b []byte, sum256, sum1 string) (kcCert, error) {
	p, rest := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return kcCert{}, errors.New("not one PEM certificate")
	}
	x, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		return kcCert{}, err
	}
	c := kcCert{DER: p.Bytes, X509: x, FP: sha256.Sum256(p.Bytes), SHA1: sha1.Sum(p.Bytes)}
	if sum256 != "" && !strings.EqualFold(sum256, hex.EncodeToString(c.FP[:])) {
		return kcCert{}, fmt.Errorf("the tool says SHA-256 %s, the PEM hashes to %s", sum256, c.FP.Hex())
	}
	if sum1 != "" && !strings.EqualFold(sum1, hex.EncodeToString(c.SHA1[:])) {
		return kcCert{}, fmt.Errorf("the tool says SHA-1 %s, the PEM hashes to %X", sum1, c.SHA1)
	}
	return c, nil
}

// Trust-settings result values (SecTrustSettingsResult).
const (
	resultInvalid     = 0
	resultTrustRoot   = 1
	resultTrustAsRoot = 2
	resultDeny        = 3
	resultUnspecified = 4
)

// trustSettingsFile is what `security trust-settings-export` writes: the
// admin domain's trust settings keyed by each certificate's SHA-1 (the
// format of /Library/Security/Trust Settings/Admin.plist).
type trustSettingsFile struct {
	TrustList    map[string]trustEntry `plist:"trustList"`
	TrustVersion int                   `plist:"trustVersion"`
}

type trustEntry struct {
	TrustSettings []map[string]any `plist:"trustSettings"`
}

// parseTrustSettings returns, by upper-case SHA-1 hex, whether each listed
// certificate is trusted as a root. An empty trustSettings array means
// "always trust"; otherwise a setting whose result is absent (TrustRoot by
// default), TrustRoot or TrustAsRoot trusts it, and any Deny distrusts it.
func parseTrustSettings(data []byte) (map[string]bool, error) {
	var f trustSettingsFile
	if _, err := plist.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("trust settings: %w", err)
	}
	out := make(map[string]bool, len(f.TrustList))
	for k, e := range f.TrustList {
		trusted := len(e.TrustSettings) == 0
		denied := false
		for _, s := range e.TrustSettings {
			switch resultOf(s) {
			case resultTrustRoot, resultTrustAsRoot:
				trusted = true
			case resultDeny:
				denied = true
			}
		}
		out[strings.ToUpper(k)] = trusted && !denied
	}
	return out, nil
}

func resultOf(s map[string]any) int {
	v, ok := s["kSecTrustSettingsResult"]
	if !ok {
		return resultTrustRoot
	}
	switch n := v.(type) {
	case uint64:
		return int(n)
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return resultInvalid
}

// subject returns the certificate's common name (or whole subject).
func (c kcCert) subject() string {
	if c.X509 == nil {
		return ""
	}
	return trust.NewCert(c.X509).Subject()
}

// isSelfSignedCA reports whether c looks like a root: a CA whose issuer is
// itself. Only roots can be anchors, so only they are checked for trust
// (the signature is not verified: this only picks what to check).
func (c kcCert) isSelfSignedCA() bool {
	x := c.X509
	return x != nil && x.BasicConstraintsValid && x.IsCA && bytes.Equal(x.RawSubject, x.RawIssuer)
}
