package trust

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Limits of the acceptance policy: Cloudflare allows 10 available
// gateway-managed roots plus 5 custom ones per account.
const (
	MaxAvailable = 10 + 5
	MinRSABits   = 2048
)

// ErrRejected is wrapped by every acceptance-policy rejection.
var ErrRejected = errors.New("trust: certificate rejected")

// Rejection is why a certificate is not acceptable as a root.
type Rejection struct {
	// Reason is a short, stable, user-facing reason ("not a CA").
	Reason string
}

func (r *Rejection) Error() string { return "trust: certificate rejected: " + r.Reason }

// Unwrap lets errors.Is(err, ErrRejected) work.
func (r *Rejection) Unwrap() error { return ErrRejected }

func reject(format string, args ...any) error {
	return &Rejection{Reason: fmt.Sprintf(format, args...)}
}

// Policy is the certificate acceptance policy (DESIGN.md §6.1).
type Policy struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Candidate is a certificate offered for installation.
type Candidate struct {
	// ID is the control plane's id, for reports.
	ID string
	// PEM is the certificate as received.
	PEM []byte
	// ClaimedFingerprint is the fingerprint the source asserted, or "".
	ClaimedFingerprint string
	// Parsed, when set, is PEM already parsed as exactly one certificate
	// (by ParseOnePEM): Check judges it instead of parsing PEM again. It
	// is not modified.
	Parsed *Cert
}

// Rejected is a candidate the policy refused.
type Rejected struct {
	ID     string      `json:"id"`
	FP     Fingerprint `json:"fingerprint,omitempty"`
	Reason string      `json:"reason"`
}

// Check returns the parsed certificate, or a *Rejection saying why it is not
// acceptable: it must parse as exactly one certificate, be a CA (and its key
// usage, when present, must allow signing certificates), be inside its
// validity window, have an RSA ≥ 2048, ECDSA ≥ P-256 or Ed25519 key, not be
// signed with MD5 or SHA-1, and match the claimed fingerprint if one was
// given. It is the one acceptance policy: the agent applies it to every
// answer and certplane to every upload (controlplane/ca.CheckUpload).
func (p Policy) Check(c Candidate) (*Cert, error) {
	var cert *Cert
	if c.Parsed != nil {
		cp := *c.Parsed
		cert = &cp
	} else {
		certs, err := ParsePEM(c.PEM)
		if err != nil {
			return nil, reject("does not parse: %v", err)
		}
		if len(certs) != 1 {
			return nil, reject("holds %d certificates, want 1", len(certs))
		}
		cert = certs[0]
	}
	cert.ID = c.ID
	x := cert.X509
	if c.ClaimedFingerprint != "" {
		claimed, err := ParseFingerprint(c.ClaimedFingerprint)
		if err != nil {
			return nil, reject("fingerprint %q does not parse", c.ClaimedFingerprint)
		}
		if claimed != cert.FP {
			return nil, reject("fingerprint mismatch: claimed %s, computed %s", claimed.Short(), cert.FP.Short())
		}
	}
	if !x.BasicConstraintsValid || !x.IsCA {
		return nil, reject("not a CA (BasicConstraints CA=false or missing)")
	}
	if x.KeyUsage != 0 && x.KeyUsage&x509.KeyUsageCertSign == 0 {
		// RFC 5280 4.2.1.3: a CA's key usage must include keyCertSign when
		// the extension is present; verifiers that enforce it would not
		// chain through this root anyway, and the others would trust a key
		// its owner marked for something else.
		return nil, reject("key usage does not allow signing certificates (keyCertSign missing)")
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if now.Before(x.NotBefore) {
		return nil, reject("not valid until %s", x.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(x.NotAfter) {
		return nil, reject("expired %s", x.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkKey(x); err != nil {
		return nil, err
	}
	switch x.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA:
		return nil, reject("signed with MD5 (%s)", x.SignatureAlgorithm)
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return nil, reject("signed with SHA-1 (%s)", x.SignatureAlgorithm)
	case x509.UnknownSignatureAlgorithm:
		return nil, reject("unknown signature algorithm")
	}
	return cert, nil
}

func checkKey(x *x509.Certificate) error {
	switch k := x.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return reject("weak key: RSA %d bits, want at least %d", k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return reject("weak key: ECDSA curve %s, want P-256 or stronger", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return reject("unsupported key type %T", x.PublicKey)
	}
	return nil
}

// Evaluate checks every candidate and returns the accepted certificates
// (deduplicated by fingerprint, in input order) and the rejected ones. When
// more than MaxAvailable are acceptable, the excess is rejected: no
// legitimate account has that many and an answer that claims to is not
// trusted wholesale.
func (p Policy) Evaluate(cands []Candidate) ([]*Cert, []Rejected) {
	var ok []*Cert
	var bad []Rejected
	seen := make(map[Fingerprint]bool)
	for _, c := range cands {
		cert, err := p.Check(c)
		if err != nil {
			r := Rejected{ID: c.ID, Reason: err.Error()}
			var rj *Rejection
			if errors.As(err, &rj) {
				r.Reason = rj.Reason
			}
			if c.Parsed != nil {
				r.FP = c.Parsed.FP
			} else if cs, perr := ParsePEM(c.PEM); perr == nil && len(cs) == 1 {
				r.FP = cs[0].FP
			}
			bad = append(bad, r)
			continue
		}
		if seen[cert.FP] {
			continue
		}
		seen[cert.FP] = true
		if len(ok) >= MaxAvailable {
			bad = append(bad, Rejected{ID: c.ID, FP: cert.FP, Reason: fmt.Sprintf("more than %d available certificates", MaxAvailable)})
			continue
		}
		ok = append(ok, cert)
	}
	return ok, bad
}
