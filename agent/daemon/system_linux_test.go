package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/internal/nstest"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
	"github.com/certagent/certagent/trust/linuxca"
	"github.com/certagent/certagent/trust/trusttest"
)

// TestDaemonRepairsSystemAnchor runs the daemon with the real Linux system
// store (anchor file plus update-ca-certificates) in the namespace, proves
// trust with curl, deletes the anchor behind the daemon's back, and waits
// for the file watch to restore it and curl to trust the root again.
func TestDaemonRepairsSystemAnchor(t *testing.T) {
	nstest.MinimalDebianStore(t)
	store := linuxca.New(linuxca.Options{})
	require.NoError(t, store.Check(context.Background()))

	ca := trusttest.NewCA(t, trusttest.WithCommonName("Daemon System Root"))
	srv := nstest.Serve(t, ca)
	require.False(t, nstest.CurlTrusts(t, srv), "not trusted before the daemon runs")

	root := t.TempDir()
	e := &env{cfgPath: filepath.Join(root, "config.json"), state: filepath.Join(root, "state"), cp: newFakeCP(t, ca)}
	writeConfig(t, e, "system")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	logs := &syncBuffer{}
	go func() {
		done <- Run(ctx, Options{
			Paths:    platform.Paths{ConfigFile: e.cfgPath, StateDir: e.state, Socket: filepath.Join(root, "s.sock")},
			Logger:   NewLogger(LogOptions{Output: logs, Level: "debug"}),
			Deps:     agent.Deps{OpenStore: func(string) (trust.Store, error) { return store, nil }},
			Debounce: 100 * time.Millisecond,
			Users:    func() ([]platform.User, error) { return nil, nil },
			Ready:    func() { close(ready) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	<-ready

	has := func() bool {
		ok, err := trust.Contains(context.Background(), store, ca.FP)
		return err == nil && ok
	}
	eventually(t, "the root in the system store", has)
	require.True(t, nstest.CurlTrusts(t, srv), "curl trusts the root the daemon installed")

	// Someone deletes our anchor and rebuilds the store (by hand, or a
	// package upgrade runs the refresh): the root is no longer trusted.
	anchors, err := filepath.Glob(filepath.Join(store.Family().AnchorDir, "certagent-"+ca.FP.Hex()+"*"))
	require.NoError(t, err)
	require.Len(t, anchors, 1)
	require.NoError(t, os.Remove(anchors[0]))
	out, err := exec.Command(nstest.UpdateCACertificates).CombinedOutput()
	require.NoError(t, err, "update-ca-certificates: %s", out)
	// The daemon notices (anchor directory and bundle are watched; the
	// poll interval is an hour) and restores file and trust.
	eventually(t, "the deleted anchor file to come back", func() bool {
		_, err := os.Stat(anchors[0])
		return err == nil && has()
	})
	require.True(t, nstest.CurlTrusts(t, srv), "curl trusts the root again after the repair")
}
