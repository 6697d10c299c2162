package keychain

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

// newTestStore returns a store on a fake security tool whose paths exist in
// a temporary directory.
func newTestStore(t testing.TB) (*Store, *fakeSecurity) {
	t.Helper()
	dir := t.TempDir()
	f := newFakeSecurity(dir)
	for _, p := range []string{f.path, f.keychain} {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, nil, 0o644))
	}
	tmp := filepath.Join(dir, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o700))
	s := New(Options{Runner: f, Security: f.path, Keychain: f.keychain, TempDir: tmp})
	return s, f
}

func install(c *trusttest.CA) trust.Change {
	return trust.Change{Op: trust.OpInstall, FP: c.FP, Cert: c.Cert}
}

func remove(fp trust.Fingerprint) trust.Change { return trust.Change{Op: trust.OpRemove, FP: fp} }

func requireOK(t *testing.T, rs []trust.Result) {
	t.Helper()
	for _, r := range rs {
		require.Equalf(t, trust.StatusOK, r.Status, "%s: %v", r.Change, r.Err)
	}
}

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	fakes := map[trust.Store]*fakeSecurity{}
	trusttest.Run(t, func(t *testing.T) trust.Store {
		s, f := newTestStore(t)
		mu.Lock()
		fakes[s] = f
		mu.Unlock()
		return s
	}, trusttest.Options{
		Plant: func(t *testing.T, s trust.Store, c *trust.Cert) {
			mu.Lock()
			f := fakes[s]
			mu.Unlock()
			f.plant(c.X509, true)
		},
		PlantedRemovable: true,
		Untagged:         true, // a keychain item cannot carry our tag
		Parallel:         true,
	})
}

func TestInstallRunsTheToolAsDocumented(t *testing.T) {
	s, f := newTestStore(t)
	ca := trusttest.NewCA(t, trusttest.WithCommonName("Gateway CA"))
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca)}))
	require.True(t, f.has(ca.X509.Raw))
	assert.True(t, f.hasAdminTrust(ca.X509.Raw))

	var add []string
	for _, a := range f.argv {
		if a[0] == "add-trusted-cert" {
			add = a
		}
	}
	require.NotNil(t, add)
	assert.Equal(t, []string{"add-trusted-cert", "-d", "-r", "trustRoot", "-p", "ssl", "-p", "basic", "-k", f.keychain}, add[:len(add)-1])
	for _, a := range f.argv {
		assert.NotContains(t, a, "sudo")
	}

	inv, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	assert.Equal(t, trust.Entry{FP: ca.FP, Subject: "Gateway CA"}, inv.Entries[0])

	entries, err := os.ReadDir(s.opts.TempDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "certificate files are removed")
}

// The macOS ≥ 11 path: root may add the certificate but not trust it.
func TestTrustPending(t *testing.T) {
	s, f := newTestStore(t)
	f.denyTrust = true
	ctx := context.Background()
	ca := trusttest.NewCA(t)

	rs := s.Apply(ctx, []trust.Change{install(ca)})
	require.Len(t, rs, 1)
	require.Equal(t, trust.StatusOK, rs[0].Status, "%v", rs[0].Err)
	assert.Equal(t, ReasonTrustPending, rs[0].Reason)
	assert.True(t, f.has(ca.X509.Raw), "the root stays in the System keychain")
	assert.False(t, f.hasAdminTrust(ca.X509.Raw))
	assert.Equal(t, 1, f.ran("add-certificates"), "the root is added without trust")

	inv, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	assert.True(t, inv.Entries[0].TrustPending, "status can say trust is pending")

	// Installing it again runs no tool that changes anything and still says
	// why it is not done.
	m := f.mutations()
	rs = s.Apply(ctx, []trust.Change{install(ca)})
	require.Equal(t, trust.StatusOK, rs[0].Status)
	assert.Equal(t, ReasonTrustPending, rs[0].Reason)
	assert.Equal(t, m, f.mutations())

	// The MDM profile arrives: trust without an admin trust setting.
	f.mu.Lock()
	f.profile[sha1.Sum(ca.X509.Raw)] = true
	f.mu.Unlock()
	inv, err = s.List(ctx)
	require.NoError(t, err)
	assert.False(t, inv.Entries[0].TrustPending)
	rs = s.Apply(ctx, []trust.Change{install(ca)})
	assert.Empty(t, rs[0].Reason)
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	t.Run("with trust", func(t *testing.T) {
		s, f := newTestStore(t)
		ca := trusttest.NewCA(t)
		requireOK(t, s.Apply(ctx, []trust.Change{install(ca)}))
		requireOK(t, s.Apply(ctx, []trust.Change{remove(ca.FP)}))
		assert.False(t, f.has(ca.X509.Raw))
		assert.False(t, f.hasAdminTrust(ca.X509.Raw), "trust settings go too")
	})
	t.Run("without trust settings", func(t *testing.T) {
		s, f := newTestStore(t)
		ca := trusttest.NewCA(t)
		f.plant(ca.X509, false)
		rs := s.Apply(ctx, []trust.Change{remove(ca.FP)})
		requireOK(t, rs)
		assert.Empty(t, rs[0].Reason)
		assert.False(t, f.has(ca.X509.Raw))
	})
	t.Run("trust removal refused", func(t *testing.T) {
		s, f := newTestStore(t)
		ca := trusttest.NewCA(t)
		requireOK(t, s.Apply(ctx, []trust.Change{install(ca)}))
		f.denyTrust = true
		rs := s.Apply(ctx, []trust.Change{remove(ca.FP)})
		requireOK(t, rs)
		assert.Contains(t, rs[0].Reason, "kept its admin trust setting")
		assert.False(t, f.has(ca.X509.Raw), "the certificate is removed anyway")
	})
	t.Run("absent", func(t *testing.T) {
		s, f := newTestStore(t)
		requireOK(t, s.Apply(ctx, []trust.Change{remove(trusttest.RandomFingerprint(t))}))
		assert.Equal(t, 0, f.mutations())
	})
}

// Two roots with the same serial number and different issuers: only ours
// goes, addressed by the SHA-1 of the entry whose SHA-256 matched.
func TestRemoveSameSerialDifferentIssuer(t *testing.T) {
	s, f := newTestStore(t)
	ours := trusttest.NewCA(t, trusttest.WithCommonName("certagent Gateway CA"), trusttest.WithSerial(4242))
	theirs := trusttest.NewCA(t, trusttest.WithCommonName("Corporate Root CA"), trusttest.WithSerial(4242))
	f.plant(theirs.X509, true)
	ctx := context.Background()
	requireOK(t, s.Apply(ctx, []trust.Change{install(ours)}))
	requireOK(t, s.Apply(ctx, []trust.Change{remove(ours.FP)}))
	assert.False(t, f.has(ours.X509.Raw))
	assert.True(t, f.has(theirs.X509.Raw))
	assert.True(t, f.hasAdminTrust(theirs.X509.Raw))

	sum := sha1.Sum(ours.X509.Raw)
	var deleted []string
	for _, a := range f.argv {
		if a[0] == "delete-certificate" {
			deleted = append(deleted, a[2])
		}
	}
	assert.Equal(t, []string{strings.ToUpper(hex.EncodeToString(sum[:]))}, deleted)
}

// The keychain refuses a second certificate with the same issuer and
// serial; add-trusted-cert still exits 0. The install must not be OK.
func TestInstallShadowedBySameIssuerAndSerial(t *testing.T) {
	s, f := newTestStore(t)
	old := trusttest.NewCA(t, trusttest.WithCommonName("Gateway CA"), trusttest.WithSerial(7))
	renewed := trusttest.NewCA(t, trusttest.WithCommonName("Gateway CA"), trusttest.WithSerial(7), trusttest.WithFreshKey())
	require.NotEqual(t, old.FP, renewed.FP)
	f.plant(old.X509, true)
	rs := s.Apply(context.Background(), []trust.Change{install(renewed)})
	require.Equal(t, trust.StatusFailed, rs[0].Status)
	assert.Contains(t, rs[0].Err.Error(), "same issuer and serial number")
	assert.False(t, f.hasAdminTrust(renewed.X509.Raw), "trust set for it is taken back")
	assert.True(t, f.has(old.X509.Raw))
}

func TestListing(t *testing.T) {
	ctx := context.Background()
	t.Run("empty keychain, errSecItemNotFound", func(t *testing.T) {
		s, f := newTestStore(t)
		f.emptyNotFound = true
		inv, err := s.List(ctx)
		require.NoError(t, err)
		assert.Empty(t, inv.Entries)
		assert.Equal(t, []trust.Target{{}}, inv.Targets)
	})
	t.Run("the tool's hash disagrees with its PEM", func(t *testing.T) {
		s, f := newTestStore(t)
		f.plant(trusttest.NewCA(t).X509, true)
		f.lieSHA256 = true
		_, err := s.List(ctx)
		require.Error(t, err)
		assert.True(t, errors.Is(err, ErrBadListing))
		// Nothing is changed on a listing we cannot trust.
		ca := trusttest.NewCA(t)
		rs := s.Apply(ctx, []trust.Change{install(ca)})
		assert.Equal(t, trust.StatusFailed, rs[0].Status)
		assert.False(t, f.has(ca.X509.Raw))
	})
	t.Run("explicitly denied root is pending", func(t *testing.T) {
		s, f := newTestStore(t)
		ca := trusttest.NewCA(t)
		f.plant(ca.X509, false)
		f.mu.Lock()
		f.admin[sha1.Sum(ca.X509.Raw)] = false
		f.mu.Unlock()
		inv, err := s.List(ctx)
		require.NoError(t, err)
		assert.True(t, inv.Entries[0].TrustPending)
	})
	t.Run("intermediates are not checked for trust", func(t *testing.T) {
		s, f := newTestStore(t)
		root := trusttest.NewCA(t)
		inter := root.Issue(t, trusttest.AsCA())
		f.plant(inter.X509, false)
		inv, err := s.List(ctx)
		require.NoError(t, err)
		assert.False(t, inv.Entries[0].TrustPending)
		assert.Equal(t, 0, f.ran("verify-cert"))
	})
}

func TestInstallThenRemoveInOneBatch(t *testing.T) {
	s, f := newTestStore(t)
	ca := trusttest.NewCA(t)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca), remove(ca.FP)}))
	assert.False(t, f.has(ca.X509.Raw))
	assert.False(t, f.hasAdminTrust(ca.X509.Raw))
}

func TestWatchPaths(t *testing.T) {
	s := New(Options{})
	assert.Equal(t, []string{DefaultKeychain, AdminTrustSettings}, s.WatchPaths())
}

func TestCheck(t *testing.T) {
	s, f := newTestStore(t)
	require.NoError(t, s.Check(context.Background()))

	require.NoError(t, os.Remove(f.keychain))
	err := s.Check(context.Background())
	require.Error(t, err)
	assert.True(t, errors.Is(err, trust.ErrUnavailable))

	rel := New(Options{Runner: f, Security: "security", Keychain: f.keychain})
	err = rel.Check(context.Background())
	assert.True(t, errors.Is(err, trust.ErrUnavailable))
	assert.Contains(t, err.Error(), "absolute")
}

func TestToolMissing(t *testing.T) {
	s, f := newTestStore(t)
	s.opts.Security = "/nonexistent/security"
	rs := s.Apply(context.Background(), []trust.Change{install(trusttest.NewCA(t))})
	require.Equal(t, trust.StatusFailed, rs[0].Status)
	assert.Contains(t, rs[0].Err.Error(), "find-certificate")
	assert.Empty(t, f.calls)
}

func TestEmptyBatchRunsNothing(t *testing.T) {
	s, f := newTestStore(t)
	assert.Empty(t, s.Apply(context.Background(), nil))
	assert.Empty(t, f.calls)
}

func TestNoChangeBatchRunsNoMutation(t *testing.T) {
	s, f := newTestStore(t)
	ca := trusttest.NewCA(t)
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca)}))
	calls, muts := len(f.calls), f.mutations()
	requireOK(t, s.Apply(context.Background(), []trust.Change{install(ca), remove(trusttest.RandomFingerprint(t))}))
	assert.Equal(t, muts, f.mutations(), "a batch with nothing to change changes nothing")
	assert.LessOrEqual(t, len(f.calls)-calls, 3, "a no-change batch only lists")
}

// BenchmarkList lists a System keychain holding 20 roots, all trusted.
func BenchmarkList(b *testing.B) {
	s, f := newTestStore(b)
	for i := 0; i < 20; i++ {
		f.plant(trusttest.NewCA(b).X509, true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		inv, err := s.List(context.Background())
		if err != nil || len(inv.Entries) != 20 {
			b.Fatalf("got %d entries, err %v; want 20", len(inv.Entries), err)
		}
	}
}
