package agent

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust/runtimes"
	"github.com/certagent/certagent/trust/trusttest"
)

// rigWithRuntimes adds a runtimes store whose every path is under root.
func rigWithRuntimes(t *testing.T) (*rig, string) {
	r := newRig(t)
	root := t.TempDir()
	sys := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	require.NoError(t, os.MkdirAll(filepath.Dir(sys), 0o755))
	require.NoError(t, os.WriteFile(sys, trusttest.NewCA(t).Cert.PEM(), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/profile.d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/profile.d/vte.sh"), []byte("# someone's\n"), 0o644))
	r.stores[runtimes.Name] = runtimes.New(runtimes.Options{
		Dir: filepath.Join(root, "usr/local/share/certagent/runtimes"), SystemRoots: []string{sys}, Root: root,
	})
	r.cfg.Stores = []string{"one", runtimes.Name}
	return r, root
}

func files(t *testing.T, root string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	}))
	return out
}

// TestRuntimesStoreDroppedFromConfig: the store dropped from the config is
// emptied by the next pass, and with its last root its wiring goes, so the
// machine is as it was.
func TestRuntimesStoreDroppedFromConfig(t *testing.T) {
	r, root := rigWithRuntimes(t)
	before := files(t, root)
	ca := trusttest.NewCA(t)
	r.plane.add(ca, api.StatusAvailable)
	r.sync(r.agent())
	assert.FileExists(t, filepath.Join(root, runtimes.ProfileScript))
	assert.FileExists(t, filepath.Join(root, runtimes.EnvironmentD))

	r.cfg.Stores = []string{"one"}
	r.sync(r.agent())
	assert.Equal(t, before, files(t, root))
	for _, e := range r.ledger().Entries {
		assert.NotEqual(t, runtimes.Name, e.Store, "the ledger forgets the dropped store's roots")
	}
}

// TestRuntimesStorePurged: uninstall --purge restores every file.
func TestRuntimesStorePurged(t *testing.T) {
	r, root := rigWithRuntimes(t)
	before := files(t, root)
	r.plane.add(trusttest.NewCA(t), api.StatusAvailable)
	r.sync(r.agent())
	assert.FileExists(t, filepath.Join(root, runtimes.PipConf))
	rep, err := Purge(context.Background(), r.cfg, Deps{OpenStore: r.open})
	require.NoError(t, err)
	assert.True(t, rep.StateRemoved)
	assert.Equal(t, before, files(t, root))
}
