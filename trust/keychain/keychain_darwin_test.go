//go:build darwin

package keychain

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/trusttest"
)

func skipUnlessE2E(t *testing.T, why string) {
	t.Helper()
	testenv.Skipf(t, "%s", why)
}

// The real System keychain through the real /usr/bin/security: listing works
// for anyone; as root, a minted root is installed (trusted, or trust pending
// where macOS refuses trust without a user) and removed again.
func TestRealSystemKeychain(t *testing.T) {
	ctx := context.Background()
	s := New(Options{})
	if err := s.Check(ctx); err != nil {
		skipUnlessE2E(t, err.Error())
	}
	inv, err := s.List(ctx)
	require.NoError(t, err)
	assert.Len(t, inv.Targets, 1)

	if os.Geteuid() != 0 {
		skipUnlessE2E(t, "writing the System keychain needs root")
	}
	ca := trusttest.NewCA(t, trusttest.WithCommonName("certagent e2e test root"))
	t.Cleanup(func() { _, _ = trust.Uninstall(ctx, s, ca.FP) })
	rs, err := trust.Install(ctx, s, ca.Cert)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, trust.StatusOK, rs[0].Status, "%v", rs[0].Err)
	t.Logf("install: reason %q", rs[0].Reason)
	held, err := trust.Contains(ctx, s, ca.FP)
	require.NoError(t, err)
	assert.True(t, held)

	rs, err = trust.Uninstall(ctx, s, ca.FP)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, trust.StatusOK, rs[0].Status, "%v", rs[0].Err)
	held, err = trust.Contains(ctx, s, ca.FP)
	require.NoError(t, err)
	assert.False(t, held)
}
