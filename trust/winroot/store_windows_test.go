//go:build windows

package winroot

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

// skipUnlessE2E skips, or fails when CERTAGENT_E2E=1 says the real store
// must be exercised.
func skipUnlessE2E(t *testing.T, why string) {
	t.Helper()
	testenv.Skipf(t, "%s", why)
}

// The real LocalMachine\ROOT, read-only: every user may list it, and the
// machine chain engine trusts what is in it and nothing minted here.
func TestRealStoreReadOnly(t *testing.T) {
	st, err := openSystem(false)
	require.NoError(t, err)
	defer st.Close()
	certs, err := st.Enum()
	require.NoError(t, err)
	require.NotEmpty(t, certs, "LocalMachine\\ROOT is never empty")
	trusted := 0
	for _, c := range certs {
		if st.Verify(c.DER) == nil {
			trusted++
		}
	}
	assert.NotZero(t, trusted, "the chain engine trusts at least one root of LocalMachine\\ROOT")
	assert.Error(t, st.Verify(trusttest.NewCA(t).X509.Raw), "a root that is not in the store is not trusted")

	inv, err := New(Options{}).List(context.Background())
	require.NoError(t, err)
	assert.Len(t, inv.Targets, 1)
	assert.NotEmpty(t, inv.Entries)
}

// The conformance suite against the real store, elevated only (it adds and
// removes minted roots, each case cleaning up after itself).
func TestRealStoreConformance(t *testing.T) {
	s := New(Options{})
	if err := s.Check(context.Background()); err != nil {
		skipUnlessE2E(t, "LocalMachine\\ROOT is not writable: "+err.Error())
	}
	trusttest.Run(t, func(t *testing.T) trust.Store {
		st := New(Options{})
		t.Cleanup(func() {
			inv, err := st.List(context.Background())
			if err != nil {
				return
			}
			var ours []trust.Fingerprint
			for _, e := range inv.Entries {
				if e.Tagged {
					ours = append(ours, e.FP)
				}
			}
			_, _ = trust.Uninstall(context.Background(), st, ours...)
		})
		return st
	}, trusttest.Options{
		// A root an administrator added with certlm.msc: in the registry
		// store, without our friendly name.
		Plant: func(t *testing.T, _ trust.Store, c *trust.Cert) {
			st, err := openSystem(true)
			require.NoError(t, err)
			defer st.Close()
			require.NoError(t, st.Add(c.X509.Raw, "Added by an administrator"))
			t.Cleanup(func() {
				st, err := openSystem(true)
				if err != nil {
					return
				}
				defer st.Close()
				_ = st.Delete(c.X509.Raw)
			})
		},
		PlantedRemovable: true,
	})
}
