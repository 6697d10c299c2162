package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/certagent/certagent/platform"
)

// ErrPinMismatch is returned by the TLS handshake when no certificate of the
// server's chain has a pinned public key.
var ErrPinMismatch = errors.New("agent: control plane public key does not match pin_sha256")

// ParsePin parses a pin_sha256 value: the SHA-256 of a SubjectPublicKeyInfo
// as base64 (what `openssl pkey -pubout -outform der | openssl dgst -sha256
// -binary | base64` prints, optionally prefixed "sha256//" as curl's
// --pinnedpubkey takes it) or as hex (64 characters, colons allowed).
func ParsePin(s string) ([32]byte, error) {
	var pin [32]byte
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sha256//"), "sha256/")
	hexForm := strings.ReplaceAll(s, ":", "")
	if len(hexForm) == 64 {
		if _, err := hex.Decode(pin[:], []byte(hexForm)); err == nil {
			return pin, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil && len(b) == 32 {
			copy(pin[:], b)
			return pin, nil
		}
	}
	return pin, fmt.Errorf("%q: want the SHA-256 of the server's public key as base64 (44 characters) or hex (64 characters)", s)
}

// SPKIPin returns the pin of a certificate's public key, in the base64 form
// ParsePin reads.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func loadCAPool(path string) (*x509.CertPool, error) {
	// Whoever writes ca_file can impersonate the control plane and so
	// choose the roots we install: the same rule as the config file.
	if err := platform.CheckSettingsFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// HTTPClient returns the HTTP client for the control plane: ca_file replaces
// the system roots, pin_sha256 additionally requires one certificate of the
// verified chain to carry a pinned key (it never replaces verification: a
// self-signed certplane needs ca_file too).
func HTTPClient(cfg *Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %v", ErrConfig, err)
		}
		tc.RootCAs = pool
	}
	if len(cfg.PinSHA256) > 0 {
		pins := cfg.PinSHA256
		tc.VerifyConnection = func(cs tls.ConnectionState) error { return checkPins(cs, pins) }
	}
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// checkPins runs after the standard chain verification; the verified chains
// are the authority, with the presented certificates as the fallback only
// when verification was (by someone else's config) skipped.
func checkPins(cs tls.ConnectionState, pins [][32]byte) error {
	var certs []*x509.Certificate
	for _, chain := range cs.VerifiedChains {
		certs = append(certs, chain...)
	}
	if len(cs.VerifiedChains) == 0 {
		certs = cs.PeerCertificates
	}
	for _, c := range certs {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		for _, p := range pins {
			if subtle.ConstantTimeCompare(sum[:], p[:]) == 1 {
				return nil
			}
		}
	}
	if len(cs.PeerCertificates) > 0 {
		return fmt.Errorf("%w (server key %s)", ErrPinMismatch, SPKIPin(cs.PeerCertificates[0]))
	}
	return ErrPinMismatch
}
