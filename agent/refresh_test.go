package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust/bundle"
	"github.com/certagent/certagent/trust/trusttest"
)

// A bundle follows the distro's roots: when they change, the next pass
// rewrites it even though the plan has nothing to do, and a pass after
// that writes nothing.
func TestPassRefreshesDerivedStores(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	system := filepath.Join(dir, "distro.crt")
	sysA, sysB := trusttest.NewCA(t), trusttest.NewCA(t)
	require.NoError(t, os.WriteFile(system, sysA.PEM(), 0o644))
	bundlePath := filepath.Join(dir, "bundle.pem")
	r.stores["bundle"] = bundle.New(bundlePath, bundle.WithSystemRoots(system))
	r.cfg.Stores = []string{"bundle"}

	ours := trusttest.NewCA(t)
	r.plane.add(ours, api.StatusAvailable)
	a := r.agent()
	r.sync(a)

	content := func() string {
		b, err := os.ReadFile(bundlePath)
		require.NoError(t, err)
		return string(b)
	}
	require.Contains(t, content(), string(sysA.PEM()))
	require.Contains(t, content(), string(ours.PEM()))

	// The distro's roots change; the control plane's do not.
	require.NoError(t, os.WriteFile(system, sysB.PEM(), 0o644))
	rep := r.sync(a)
	require.Zero(t, rep.Changes, "the plan has nothing to do")
	require.Contains(t, content(), string(sysB.PEM()), "the bundle follows the distro")
	require.NotContains(t, content(), string(sysA.PEM()))
	require.Contains(t, content(), string(ours.PEM()))

	st1, err := os.Stat(bundlePath)
	require.NoError(t, err)
	r.sync(a)
	st2, err := os.Stat(bundlePath)
	require.NoError(t, err)
	require.True(t, os.SameFile(st1, st2), "a quiet pass does not rewrite the bundle")
	require.Equal(t, st1.ModTime(), st2.ModTime())
}
