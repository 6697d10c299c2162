package trusttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
)

func TestFakeConformance(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		Run(t, func(t *testing.T) trust.Store { return NewFake("fake") }, Options{
			Plant:            plantFake,
			PlantedRemovable: true,
			Refreshes:        func(s trust.Store) int { return s.(*Fake).Refreshes() },
			Parallel:         true,
		})
	})
	t.Run("multi", func(t *testing.T) {
		Run(t, func(t *testing.T) trust.Store {
			return NewFake("nss", trust.Target{User: "alice", Path: "/home/alice/.pki/nssdb"}, trust.Target{User: "bob", Path: "/home/bob/.pki/nssdb"})
		}, Options{
			Plant:            plantFake,
			PlantedRemovable: true,
			Refreshes:        func(s trust.Store) int { return s.(*Fake).Refreshes() },
			Concurrency:      6,
			Parallel:         true,
		})
	})
}

func plantFake(t *testing.T, s trust.Store, c *trust.Cert) {
	f := s.(*Fake)
	inv, err := f.List(context.Background())
	require.NoError(t, err)
	for _, tg := range inv.Targets {
		f.Plant(tg, c)
	}
}

func TestFakeCounters(t *testing.T) {
	ctx := context.Background()
	alice, bob := trust.Target{User: "alice"}, trust.Target{User: "bob"}
	f := NewFake("nss", alice, bob)
	cas := NewCAs(t, 3)
	res, err := trust.Install(ctx, f, Certs(cas...)...)
	require.NoError(t, err)
	require.Len(t, res, 6)
	require.NoError(t, trust.FirstError(res))
	assert.Equal(t, 1, f.Applies())
	assert.Equal(t, 1, f.Refreshes(), "one batch, one refresh")

	// Nothing to change: trust.Install calls no Apply at all.
	res, err = trust.Install(ctx, f, Certs(cas...)...)
	require.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, 1, f.Applies())

	// A present root re-applied is an Apply but no refresh.
	f.Apply(ctx, []trust.Change{{Op: trust.OpInstall, FP: cas[0].FP, Target: alice, Cert: cas[0].Cert}})
	assert.Equal(t, 2, f.Applies())
	assert.Equal(t, 1, f.Refreshes())
	assert.Len(t, f.History(), 2)

	f.Lose(bob, cas[1].FP)
	assert.False(t, f.Holds(bob, cas[1].FP))
	assert.Equal(t, 2, f.Len(bob))
	ok, err := trust.Contains(ctx, f, cas[1].FP)
	require.NoError(t, err)
	assert.False(t, ok, "lost in one target: not contained everywhere")
}

func TestFakeFailures(t *testing.T) {
	ctx := context.Background()
	alice, bob := trust.Target{User: "alice"}, trust.Target{User: "bob"}
	f := NewFake("nss", alice, bob)
	ca := NewCA(t)
	boom := errors.New("certutil exploded")
	f.FailTarget(bob, boom)
	res, err := trust.Install(ctx, f, ca.Cert)
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.Equal(t, trust.StatusOK, res[0].Status)
	assert.Equal(t, trust.StatusFailed, res[1].Status)
	assert.ErrorIs(t, res[1].Err, boom)
	assert.ErrorIs(t, trust.FirstError(res), boom)
	assert.True(t, f.Holds(alice, ca.FP))
	assert.False(t, f.Holds(bob, ca.FP))

	f.ClearFailures()
	f.FailTarget(alice, nil)
	res = f.Apply(ctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP, Target: alice}})
	assert.ErrorIs(t, res[0].Err, ErrInjected)
	assert.True(t, f.Holds(alice, ca.FP), "a failed removal removed")

	f.SetUnavailable(errors.New("no certutil"))
	assert.ErrorIs(t, f.Check(ctx), trust.ErrUnavailable)
	f.SetUnavailable(nil)
	assert.NoError(t, f.Check(ctx))

	f.SetListError(boom)
	_, err = f.List(ctx)
	assert.ErrorIs(t, err, boom)
	f.SetListError(nil)

	f.Skip(trust.Target{User: "carol"}, "no NSS database")
	inv, err := f.List(ctx)
	require.NoError(t, err)
	require.Len(t, inv.Skipped, 1)
	assert.Equal(t, "carol", inv.Skipped[0].Target.User)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	res = f.Apply(cctx, []trust.Change{{Op: trust.OpRemove, FP: ca.FP, Target: bob}})
	assert.Equal(t, trust.StatusFailed, res[0].Status)
	assert.ErrorIs(t, res[0].Err, context.Canceled)
}

func TestNewCAOptions(t *testing.T) {
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		opts  []Option
		check func(t *testing.T, x *x509.Certificate)
	}{
		{"default ECDSA P-256 CA", nil, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.ECDSA, x.PublicKeyAlgorithm)
			assert.True(t, x.IsCA)
			assert.True(t, x.BasicConstraintsValid)
			assert.Equal(t, x509.ECDSAWithSHA256, x.SignatureAlgorithm)
			assert.True(t, time.Now().After(x.NotBefore) && time.Now().Before(x.NotAfter))
		}},
		{"RSA 2048", []Option{WithRSA(2048)}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.RSA, x.PublicKeyAlgorithm)
			assert.Equal(t, x509.SHA256WithRSA, x.SignatureAlgorithm)
		}},
		{"P-224", []Option{WithECDSA(elliptic.P224())}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, "P-224", x.PublicKey.(*ecdsa.PublicKey).Curve.Params().Name)
		}},
		{"Ed25519", []Option{WithEd25519()}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.PureEd25519, x.SignatureAlgorithm)
		}},
		{"SHA-1 RSA", []Option{WithRSA(2048), WithSHA1()}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.SHA1WithRSA, x.SignatureAlgorithm)
		}},
		{"SHA-1 ECDSA", []Option{WithSHA1()}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.ECDSAWithSHA1, x.SignatureAlgorithm)
		}},
		{"MD5", []Option{WithRSA(2048), WithMD5()}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, x509.MD5WithRSA, x.SignatureAlgorithm)
			assert.True(t, x.IsCA, "re-signing keeps the extensions")
		}},
		{"not CA", []Option{NotCA()}, func(t *testing.T, x *x509.Certificate) {
			assert.False(t, x.IsCA)
			assert.True(t, x.BasicConstraintsValid)
		}},
		{"no basic constraints", []Option{NoBasicConstraints()}, func(t *testing.T, x *x509.Certificate) {
			assert.False(t, x.BasicConstraintsValid)
		}},
		{"validity", []Option{WithValidity(past, past.Add(time.Hour))}, func(t *testing.T, x *x509.Certificate) {
			assert.True(t, x.NotBefore.Equal(past), "NotBefore: got %v, want %v", x.NotBefore, past)
		}},
		{"expired", []Option{Expired()}, func(t *testing.T, x *x509.Certificate) {
			assert.True(t, x.NotAfter.Before(time.Now()))
		}},
		{"not yet valid", []Option{NotYetValid()}, func(t *testing.T, x *x509.Certificate) {
			assert.True(t, x.NotBefore.After(time.Now()))
		}},
		{"serial and names", []Option{WithSerial(42), WithCommonName("Gateway CA"), WithOrganization("Example")}, func(t *testing.T, x *x509.Certificate) {
			assert.Equal(t, int64(42), x.SerialNumber.Int64())
			assert.Equal(t, "Gateway CA", x.Subject.CommonName)
			assert.Equal(t, []string{"Example"}, x.Subject.Organization)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := NewCA(t, tt.opts...)
			assert.Equal(t, trust.FingerprintOf(ca.X509.Raw), ca.FP)
			back, err := trust.ParseOnePEM(ca.PEM())
			require.NoError(t, err)
			assert.Equal(t, ca.FP, back.FP)
			tt.check(t, ca.X509)
		})
	}
}

func TestSameSerialDifferentIssuer(t *testing.T) {
	r1, r2 := NewCA(t), NewCA(t)
	a := r1.Issue(t, WithSerial(7), AsCA(), WithCommonName("Same"))
	b := r2.Issue(t, WithSerial(7), AsCA(), WithCommonName("Same"))
	assert.NotEqual(t, a.FP, b.FP)
	assert.Equal(t, a.X509.SerialNumber, b.X509.SerialNumber)
	require.NoError(t, a.X509.CheckSignatureFrom(r1.X509))
	require.Error(t, b.X509.CheckSignatureFrom(r1.X509))
}

// TestIssueServesTLS proves a leaf from Issue completes a real handshake
// against a client trusting only its root.
func TestIssueServesTLS(t *testing.T) {
	root := NewCA(t)
	inter := root.Issue(t, AsCA(), WithCommonName("intermediate"))
	leaf := inter.Issue(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	srv.StartTLS()
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: root.Pool()}}}
	resp, err := hc.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	other := NewCA(t)
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool()}}}
	_, err = hc.Get(srv.URL)
	require.Error(t, err, "a client trusting another root must fail")
	assert.NotEmpty(t, leaf.KeyPEM())
	assert.Len(t, mustParse(t, leaf.ChainPEM()), 2)
}

func mustParse(t *testing.T, b []byte) []*trust.Cert {
	t.Helper()
	cs, err := trust.ParsePEM(b)
	require.NoError(t, err)
	return cs
}
