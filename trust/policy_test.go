package trust_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestPolicyTable is the acceptance policy of DESIGN.md §6.1, certificate
// by certificate.
func TestPolicyTable(t *testing.T) {
	root := trusttest.NewCA(t)
	other := trusttest.NewCA(t)
	tests := []struct {
		name string
		// pem builds the candidate; claim is its claimed fingerprint.
		pem   func() []byte
		claim func() string
		// want is "" for accepted, else a substring of the reason.
		want string
	}{
		{name: "ECDSA P-256", pem: func() []byte { return root.PEM() }},
		{name: "ECDSA P-384", pem: pemOf(t, trusttest.WithECDSA(elliptic.P384()))},
		{name: "ECDSA P-521", pem: pemOf(t, trusttest.WithECDSA(elliptic.P521()))},
		{name: "RSA 2048", pem: pemOf(t, trusttest.WithRSA(2048))},
		{name: "RSA 3072", pem: pemOf(t, trusttest.WithRSA(3072))},
		{name: "Ed25519", pem: pemOf(t, trusttest.WithEd25519())},
		{name: "intermediate CA", pem: func() []byte { return root.Issue(t, trusttest.AsCA()).PEM() }},
		{name: "claimed colon form", pem: func() []byte { return root.PEM() }, claim: func() string { return root.FP.String() }},
		{name: "claimed hex lower", pem: func() []byte { return root.PEM() }, claim: func() string { return root.FP.Hex() }},
		{name: "claimed unpadded", pem: func() []byte { return root.PEM() }, claim: func() string { return unpadded(root.FP) }},
		{name: "CA without key usage extension", pem: pemOf(t, trusttest.WithKeyUsage(0))},
		{name: "CA keyCertSign only", pem: pemOf(t, trusttest.WithKeyUsage(x509.KeyUsageCertSign))},
		{name: "text around the PEM", pem: func() []byte { return append([]byte("Gateway CA\n"), root.PEM()...) }},

		{name: "RSA 1024", pem: pemOf(t, trusttest.WithRSA(1024)), want: "weak key: RSA 1024 bits"},
		{name: "RSA 2047", pem: pemOf(t, trusttest.WithRSA(2047)), want: "RSA 2047 bits"},
		{name: "ECDSA P-224", pem: pemOf(t, trusttest.WithECDSA(elliptic.P224())), want: "curve P-224"},
		{name: "SHA-1 RSA", pem: pemOf(t, trusttest.WithRSA(2048), trusttest.WithSHA1()), want: "signed with SHA-1"},
		{name: "SHA-1 ECDSA", pem: pemOf(t, trusttest.WithSHA1()), want: "signed with SHA-1"},
		{name: "MD5 RSA", pem: pemOf(t, trusttest.WithRSA(2048), trusttest.WithMD5()), want: "signed with MD5"},
		{name: "not a CA", pem: pemOf(t, trusttest.NotCA()), want: "not a CA"},
		{name: "CA digitalSignature+keyEncipherment (RSA)", pem: pemOf(t, trusttest.WithRSA(2048), trusttest.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)), want: "keyCertSign missing"},
		{name: "CA digitalSignature only", pem: pemOf(t, trusttest.WithKeyUsage(x509.KeyUsageDigitalSignature)), want: "keyCertSign missing"},
		{name: "CA CRLSign only", pem: pemOf(t, trusttest.WithKeyUsage(x509.KeyUsageCRLSign)), want: "keyCertSign missing"},
		{name: "no basic constraints", pem: pemOf(t, trusttest.NoBasicConstraints()), want: "not a CA"},
		{name: "TLS leaf", pem: func() []byte { return root.Issue(t).PEM() }, want: "not a CA"},
		{name: "expired", pem: pemOf(t, trusttest.Expired()), want: "expired"},
		{name: "not yet valid", pem: pemOf(t, trusttest.NotYetValid()), want: "not valid until"},
		{name: "fingerprint mismatch", pem: func() []byte { return root.PEM() }, claim: func() string { return other.FP.String() }, want: "fingerprint mismatch"},
		{name: "fingerprint garbage", pem: func() []byte { return root.PEM() }, claim: func() string { return "sha256:abc" }, want: "does not parse"},
		{name: "SHA-1 fingerprint claimed", pem: func() []byte { return root.PEM() }, claim: func() string { return "BB:2D:B6:3D:6B:DE:DA:06:4E:CA:CB:40:F6:F2:61:40:B7:10:F0:6C" }, want: "does not parse"},
		{name: "two certificates", pem: func() []byte { return append(root.PEM(), other.PEM()...) }, want: "holds 2 certificates"},
		{name: "garbage", pem: func() []byte { return []byte("hello, world") }, want: "does not parse"},
		{name: "empty", pem: func() []byte { return nil }, want: "does not parse"},
		{name: "DER instead of PEM", pem: func() []byte { return root.X509.Raw }, want: "does not parse"},
		{name: "private key only", pem: func() []byte { return root.KeyPEM() }, want: "does not parse"},
		{name: "corrupt base64 body", pem: func() []byte {
			return []byte("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG\n-----END CERTIFICATE-----\n")
		}, want: "does not parse"},
		{name: "truncated DER", pem: func() []byte {
			p := root.PEM()
			lines := strings.Split(string(p), "\n")
			return []byte(strings.Join(append(lines[:3], lines[len(lines)-2:]...), "\n"))
		}, want: "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := trust.Candidate{ID: "id-" + tt.name, PEM: tt.pem()}
			if tt.claim != nil {
				c.ClaimedFingerprint = tt.claim()
			}
			got, err := trust.Policy{}.Check(c)
			if tt.want == "" {
				require.NoError(t, err)
				assert.Equal(t, c.ID, got.ID)
				assert.Equal(t, trust.FingerprintOf(got.X509.Raw), got.FP)
				return
			}
			require.Error(t, err)
			assert.Nil(t, got)
			assert.ErrorIs(t, err, trust.ErrRejected)
			var rj *trust.Rejection
			require.ErrorAs(t, err, &rj)
			assert.Contains(t, rj.Reason, tt.want)
		})
	}
}

func pemOf(t *testing.T, opts ...trusttest.Option) func() []byte {
	ca := trusttest.NewCA(t, opts...)
	return func() []byte { return ca.PEM() }
}

func unpadded(fp trust.Fingerprint) string {
	parts := make([]string, len(fp))
	for i, b := range fp {
		parts[i] = fmt.Sprintf("%X", b)
	}
	return strings.Join(parts, ":")
}

// TestPolicyValidityBoundaries uses the clock seam: the window is inclusive
// at both ends.
func TestPolicyValidityBoundaries(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(365 * 24 * time.Hour)
	ca := trusttest.NewCA(t, trusttest.WithValidity(nb, na))
	tests := []struct {
		now  time.Time
		want string
	}{
		{nb.Add(-time.Second), "not valid until 2026-01-01T00:00:00Z"},
		{nb, ""},
		{nb.Add(time.Hour), ""},
		{na, ""},
		{na.Add(time.Second), "expired 2027-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.now.Format(time.RFC3339), func(t *testing.T) {
			p := trust.Policy{Now: func() time.Time { return tt.now }}
			_, err := p.Check(trust.Candidate{PEM: ca.PEM()})
			if tt.want == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.want)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	good := trusttest.NewCAs(t, trust.MaxAvailable+2)
	weak := trusttest.NewCA(t, trusttest.WithECDSA(elliptic.P224()))
	var cands []trust.Candidate
	cands = append(cands, trust.Candidate{ID: "weak", PEM: weak.PEM()})
	cands = append(cands, trust.Candidate{ID: "garbage", PEM: []byte("<html>")})
	for i, c := range good {
		cands = append(cands, trust.Candidate{ID: fmt.Sprintf("good-%02d", i), PEM: c.PEM(), ClaimedFingerprint: c.FP.String()})
	}
	// The same root twice (a list that repeats itself) counts once.
	cands = append(cands, trust.Candidate{ID: "dup", PEM: good[0].PEM()})

	ok, bad := trust.Policy{}.Evaluate(cands)
	require.Len(t, ok, trust.MaxAvailable)
	for i, c := range ok {
		assert.Equal(t, good[i].FP, c.FP, "accepted %d in input order", i)
		assert.Equal(t, fmt.Sprintf("good-%02d", i), c.ID)
	}
	require.Len(t, bad, 4)
	assert.Equal(t, "weak", bad[0].ID)
	assert.Equal(t, weak.FP, bad[0].FP, "a rejected certificate that parses is reported with its fingerprint")
	assert.Contains(t, bad[0].Reason, "P-224")
	assert.False(t, strings.HasPrefix(bad[0].Reason, "trust:"), "the reason is the short user-facing text")
	assert.Equal(t, "garbage", bad[1].ID)
	assert.True(t, bad[1].FP.IsZero())
	for i, r := range bad[2:] {
		assert.Equal(t, good[trust.MaxAvailable+i].FP, r.FP)
		assert.Contains(t, r.Reason, "more than 15")
	}

	ok, bad = trust.Policy{}.Evaluate(nil)
	assert.Empty(t, ok)
	assert.Empty(t, bad)
}

func TestRejectionError(t *testing.T) {
	_, err := trust.Policy{}.Check(trust.Candidate{PEM: []byte("x")})
	assert.True(t, errors.Is(err, trust.ErrRejected))
	assert.True(t, strings.HasPrefix(err.Error(), "trust: certificate rejected: does not parse"))
}

func FuzzPolicyCheck(f *testing.F) {
	seedCAs := []*trusttest.CA{
		trusttest.NewCA(f),
		trusttest.NewCA(f, trusttest.WithRSA(2048)),
		trusttest.NewCA(f, trusttest.WithEd25519()),
		trusttest.NewCA(f, trusttest.WithSHA1()),
		trusttest.NewCA(f, trusttest.NotCA()),
		trusttest.NewCA(f, trusttest.Expired()),
		trusttest.NewCA(f, trusttest.WithECDSA(elliptic.P224())),
	}
	for _, c := range seedCAs {
		f.Add(c.PEM(), c.FP.String())
		f.Add(c.PEM(), "")
	}
	f.Add(append(seedCAs[0].PEM(), seedCAs[1].PEM()...), "")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "AB:0:31")
	f.Add([]byte{}, "")
	now := time.Now()
	f.Fuzz(func(t *testing.T, pemData []byte, claim string) {
		p := trust.Policy{Now: func() time.Time { return now }}
		cert, err := p.Check(trust.Candidate{ID: "x", PEM: pemData, ClaimedFingerprint: claim})
		if err != nil {
			var rj *trust.Rejection
			if !errors.As(err, &rj) || rj.Reason == "" {
				t.Fatalf("error %v is not a Rejection with a reason", err)
			}
			if cert != nil {
				t.Fatal("rejected with a certificate")
			}
			return
		}
		x := cert.X509
		switch {
		case cert.FP != trust.FingerprintOf(x.Raw):
			t.Fatal("fingerprint is not the SHA-256 of the DER")
		case !x.IsCA || !x.BasicConstraintsValid:
			t.Fatal("accepted a non-CA")
		case now.Before(x.NotBefore) || now.After(x.NotAfter):
			t.Fatal("accepted outside the validity window")
		case x.SignatureAlgorithm == x509.SHA1WithRSA || x.SignatureAlgorithm == x509.ECDSAWithSHA1 || x.SignatureAlgorithm == x509.MD5WithRSA:
			t.Fatal("accepted a weak signature")
		}
		if claim != "" {
			fp, err := trust.ParseFingerprint(claim)
			if err != nil || fp != cert.FP {
				t.Fatalf("accepted with claim %q", claim)
			}
		}
	})
}
