package winroot

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
)

// mintCA makes a self-signed CA with the given common name and serial.
func mintCA(t testing.TB, cn string, serial int64) *trust.Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"certagent test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return trust.NewCert(c)
}

func install(c *trust.Cert) trust.Change {
	return trust.Change{Op: trust.OpInstall, FP: c.FP, Cert: c}
}

func remove(fp trust.Fingerprint) trust.Change {
	return trust.Change{Op: trust.OpRemove, FP: fp}
}

func requireOK(t *testing.T, rs []trust.Result) {
	t.Helper()
	for _, r := range rs {
		require.Equalf(t, trust.StatusOK, r.Status, "%s: %v", r.Change, r.Err)
	}
}

func TestInstallListRemove(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ctx := context.Background()
	ca := mintCA(t, "Gateway CA", 1)

	requireOK(t, s.Apply(ctx, []trust.Change{install(ca)}))
	require.True(t, m.has(ca.FP))
	assert.Equal(t, "certagent "+ca.FP.Hex(), m.certs[0].friendly, "our entries carry the tag")

	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []trust.Target{{}}, inv.Targets)
	require.Len(t, inv.Entries, 1)
	e := inv.Entries[0]
	assert.Equal(t, ca.FP, e.FP)
	assert.Equal(t, "Gateway CA", e.Subject)
	assert.True(t, e.Tagged)
	assert.False(t, e.TrustPending)

	// Installing a present root is OK and adds nothing.
	requireOK(t, s.Apply(ctx, []trust.Change{install(ca)}))
	assert.Equal(t, 1, m.adds)
	assert.Equal(t, 1, m.count())

	requireOK(t, s.Apply(ctx, []trust.Change{remove(ca.FP)}))
	assert.False(t, m.has(ca.FP))
	// Removing an absent root is OK and deletes nothing.
	requireOK(t, s.Apply(ctx, []trust.Change{remove(ca.FP)}))
	assert.Equal(t, 1, m.deletes)
	assert.Equal(t, m.opens, m.closes, "every store handle is closed")
}

// truststore deletes every root whose serial matches; we delete by SHA-256.
func TestRemoveSameSerialDifferentIssuer(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ctx := context.Background()
	ours := mintCA(t, "certagent Gateway CA", 4242)
	theirs := mintCA(t, "Corporate Root CA", 4242)
	require.Equal(t, 0, ours.X509.SerialNumber.Cmp(theirs.X509.SerialNumber))
	m.seed(theirs.X509.Raw, "Corporate Root")

	requireOK(t, s.Apply(ctx, []trust.Change{install(ours)}))
	require.True(t, m.has(ours.FP))

	requireOK(t, s.Apply(ctx, []trust.Change{remove(ours.FP)}))
	assert.False(t, m.has(ours.FP), "ours is removed")
	assert.True(t, m.has(theirs.FP), "the other issuer's root with the same serial stays")
	assert.Equal(t, 1, m.deletes)

	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	assert.Equal(t, theirs.FP, inv.Entries[0].FP)
	assert.False(t, inv.Entries[0].Tagged, "someone else's root is not ours")
}

// A retired root someone else installed is removed by its exact fingerprint.
func TestRemoveForeignRootByFingerprint(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	retired := mintCA(t, "Old Root", 7)
	keep := mintCA(t, "Keep Root", 7)
	m.seed(retired.X509.Raw, "")
	m.seed(keep.X509.Raw, "")
	requireOK(t, s.Apply(context.Background(), []trust.Change{remove(retired.FP)}))
	assert.False(t, m.has(retired.FP))
	assert.True(t, m.has(keep.FP))
}

// Another process deleted the root between our listing and our delete: the
// removal is done, not failed.
func TestRemoveVanishedRoot(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ca := mintCA(t, "CA", 1)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca)}))
	m.vanishBeforeDelete = true
	requireOK(t, s.Apply(context.Background(), []trust.Change{remove(ca.FP)}))
	assert.False(t, m.has(ca.FP))
	assert.Equal(t, 0, m.deletes)
}

// TestRemovalStillTrustedIsNotDone: our copy deleted, but the machine
// still trusts the root through Group Policy's copy: the removal is
// skipped with that reason, not reported done; another root of the batch
// is removed as asked.
func TestRemovalStillTrustedIsNotDone(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ca, other := mintCA(t, "CA", 1), mintCA(t, "Other", 2)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca), install(other)}))
	m.policyTrusted[ca.FP] = true
	rs := s.Apply(context.Background(), []trust.Change{remove(ca.FP), remove(other.FP)})
	require.Len(t, rs, 2)
	assert.Equal(t, trust.StatusSkipped, rs[0].Status)
	assert.Contains(t, rs[0].Reason, "still trusts it")
	assert.Equal(t, trust.StatusOK, rs[1].Status)
	assert.False(t, m.has(ca.FP), "our copy is gone")
}

func TestPresentRootKeepsItsProperties(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ca := mintCA(t, "Shared Root", 9)
	m.seed(ca.X509.Raw, "Installed by IT")
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca)}))
	assert.Equal(t, 0, m.adds)
	assert.Equal(t, "Installed by IT", m.certs[0].friendly)
}

func TestWriteFailures(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		setup    func(m *fakeMachine)
		preload  bool // ours is already installed
		op       trust.Op
		wantStep string
		present  bool // whether ours is in the store afterwards
	}{
		{"unelevated install", func(m *fakeMachine) { m.admin = false }, false, trust.OpInstall, "CertOpenStore", false},
		{"unelevated remove", func(m *fakeMachine) { m.admin = false }, true, trust.OpRemove, "CertOpenStore", true},
		{"add denied", func(m *fakeMachine) { m.denyAdd = true }, false, trust.OpInstall, "CertAddCertificateContextToStore", false},
		{"delete denied", func(m *fakeMachine) { m.denyDelete = true }, true, trust.OpRemove, "CertDeleteCertificateFromStore", true},
		{"friendly name refused", func(m *fakeMachine) { m.failFriendlyName = true }, false, trust.OpInstall, "CertSetCertificateContextProperty", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFakeMachine()
			s := newStore(m.open, Options{})
			ca := mintCA(t, "CA", 1)
			if tt.preload {
				requireOK(t, s.Apply(ctx, []trust.Change{install(ca)}))
			}
			tt.setup(m)
			ch := install(ca)
			if tt.op == trust.OpRemove {
				ch = remove(ca.FP)
			}
			rs := s.Apply(ctx, []trust.Change{ch})
			require.Len(t, rs, 1)
			require.Equal(t, trust.StatusFailed, rs[0].Status)
			err := rs[0].Err
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantStep, "the error names the step")
			var w *Win32Error
			require.True(t, errors.As(err, &w), "the error carries the Win32 code: %v", err)
			assert.Equal(t, uint32(codeAccessDenied), w.Code)
			assert.True(t, errors.Is(err, ErrAccessDenied))
			assert.Contains(t, err.Error(), "0x00000005")
			assert.Equal(t, tt.present, m.has(ca.FP), "store unchanged")
			assert.Equal(t, m.opens, m.closes)
		})
	}
}

func TestCheck(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	require.NoError(t, s.Check(context.Background()))

	m.admin = false
	err := s.Check(context.Background())
	require.Error(t, err)
	assert.True(t, errors.Is(err, trust.ErrUnavailable))
	assert.Contains(t, err.Error(), "LocalSystem")
	assert.Contains(t, err.Error(), "0x00000005")
}

func TestDistrustedRootIsNotReportedOK(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ca := mintCA(t, "Distrusted", 3)
	m.distrusted[ca.FP] = true
	rs := s.Apply(context.Background(), []trust.Change{install(ca)})
	require.Equal(t, trust.StatusFailed, rs[0].Status)
	assert.Contains(t, rs[0].Err.Error(), "does not trust")

	inv, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	assert.True(t, inv.Entries[0].Tagged)
	assert.True(t, inv.Entries[0].TrustPending, "status can tell it is present but untrusted")
}

func TestBadChangesChangeNothing(t *testing.T) {
	ca := mintCA(t, "CA", 1)
	other := mintCA(t, "Other", 2)
	tests := []struct {
		name string
		c    trust.Change
		want string
	}{
		{"install without cert", trust.Change{Op: trust.OpInstall, FP: ca.FP}, "no certificate"},
		{"fingerprint mismatch", trust.Change{Op: trust.OpInstall, FP: ca.FP, Cert: other}, "fingerprint is"},
		{"unknown target", trust.Change{Op: trust.OpInstall, FP: ca.FP, Cert: ca, Target: trust.Target{User: "alice"}}, "unknown target"},
		{"unknown op", trust.Change{Op: "upgrade", FP: ca.FP, Cert: ca}, "unknown operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFakeMachine()
			s := newStore(m.open, Options{})
			rs := s.Apply(context.Background(), []trust.Change{tt.c})
			require.Len(t, rs, 1)
			require.Equal(t, trust.StatusFailed, rs[0].Status)
			assert.Contains(t, rs[0].Err.Error(), tt.want)
			assert.Equal(t, 0, m.count())
		})
	}
}

func TestBatchResultsInOrder(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	a, b, c := mintCA(t, "A", 1), mintCA(t, "B", 2), mintCA(t, "C", 3)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(a)}))
	changes := []trust.Change{install(b), remove(a.FP), {Op: trust.OpInstall, FP: c.FP}, install(c)}
	rs := s.Apply(context.Background(), changes)
	require.Len(t, rs, len(changes))
	for i, r := range rs {
		assert.Equal(t, changes[i], r.Change)
	}
	assert.Equal(t, []trust.Status{trust.StatusOK, trust.StatusOK, trust.StatusFailed, trust.StatusOK},
		[]trust.Status{rs[0].Status, rs[1].Status, rs[2].Status, rs[3].Status})
	assert.Equal(t, 4, m.opens, "per batch that adds: one writing open, then one to verify after the writer closed")
}

func TestInstallThenRemoveInOneBatch(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ca := mintCA(t, "CA", 1)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca), remove(ca.FP), install(ca)}))
	assert.True(t, m.has(ca.FP))
	requireOK(t, s.Apply(context.Background(), []trust.Change{remove(ca.FP), install(ca), remove(ca.FP)}))
	assert.False(t, m.has(ca.FP))
	assert.Equal(t, 3, m.adds)
	assert.Equal(t, 3, m.deletes)
}

func TestEmptyBatchOpensNothing(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	assert.Empty(t, s.Apply(context.Background(), nil))
	assert.Equal(t, 0, m.opens)
}

func TestCancelledContext(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs := s.Apply(ctx, []trust.Change{install(mintCA(t, "CA", 1))})
	require.Equal(t, trust.StatusFailed, rs[0].Status)
	assert.True(t, errors.Is(rs[0].Err, context.Canceled))
	assert.Equal(t, 0, m.count())
}

func TestConcurrentUse(t *testing.T) {
	m := newFakeMachine()
	s := newStore(m.open, Options{})
	const n = 8
	cas := make([]*trust.Cert, n)
	for i := range cas {
		cas[i] = mintCA(t, fmt.Sprintf("CA %d", i), int64(i+1))
	}
	var wg sync.WaitGroup
	for _, ca := range cas {
		wg.Add(2)
		go func() {
			defer wg.Done()
			requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca)}))
		}()
		go func() {
			defer wg.Done()
			_, err := s.List(context.Background())
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	for _, ca := range cas {
		assert.True(t, m.has(ca.FP))
	}
	assert.Equal(t, n, m.count())
}

func TestWin32ErrorText(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &Win32Error{Step: "CertOpenStore", Code: codeAccessDenied, Msg: "Access is denied."})
	assert.Equal(t, "wrapped: CertOpenStore: Access is denied. (0x00000005)", err.Error())
	assert.True(t, errors.Is(err, ErrAccessDenied))
	assert.False(t, errors.Is(err, ErrExists))
	assert.Equal(t, "CertEnumCertificatesInStore: error 0x80092004", (&Win32Error{Step: "CertEnumCertificatesInStore", Code: codeNotFound}).Error())
}

// BenchmarkList measures a List of a store the size of a real
// LocalMachine\ROOT (a few hundred roots, a handful of them ours).
func BenchmarkList(b *testing.B) {
	m := newFakeMachine()
	for i := 0; i < 300; i++ {
		friendly := ""
		if i%60 == 0 {
			friendly = "x"
		}
		ca := mintCA(b, fmt.Sprintf("Root %d", i), int64(i+1))
		if friendly != "" {
			friendly = friendlyName(ca.FP)
		}
		m.seed(ca.X509.Raw, friendly)
	}
	s := newStore(m.open, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		inv, err := s.List(context.Background())
		if err != nil || len(inv.Entries) != 300 {
			b.Fatalf("got %v entries, err %v; want 300", len(inv.Entries), err)
		}
	}
}
