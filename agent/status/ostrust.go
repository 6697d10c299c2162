package status

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/certagent/certagent/trust"
)

// CodeNotTrusted is a root the system store holds that the OS verifier
// still rejects.
const CodeNotTrusted = "not-trusted-by-os"

// SystemStore is the store whose placements the OS verifier answers for.
const SystemStore = "system"

// ApplyOSTrust asks the OS certificate verifier (Go's x509 with the system
// roots: the bundle OpenSSL and curl read on Linux, the platform verifier
// on macOS and Windows) whether each available root is trusted, records
// the answer on its system-store placements, and re-evaluates health. It
// must run in a fresh process (the CLI): Go caches the system pool for a
// process's lifetime, so the daemon's own answer would go stale. certs are
// the roots' certificates (from the ledger); roots without one are left
// unchecked.
func ApplyOSTrust(r *Report, certs []*trust.Cert, now time.Time) error {
	pool, err := x509.SystemCertPool()
	if err != nil {
		return err
	}
	if pool == nil {
		return errors.New("status: no system certificate pool on this OS")
	}
	byFP := make(map[string]*trust.Cert, len(certs))
	for _, c := range certs {
		byFP[c.FP.String()] = c
	}
	for i := range r.Certificates {
		c := &r.Certificates[i]
		cert := byFP[c.Fingerprint]
		if cert == nil || c.State != CertAvailable {
			continue
		}
		_, verr := cert.X509.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		ok := verr == nil
		for j := range c.Placements {
			p := &c.Placements[j]
			if p.Store != SystemStore || p.State != PlacementInstalled {
				continue
			}
			p.Trusted = &ok
		}
	}
	r.Health = Warnings(r, now)
	return nil
}
