//go:build !windows

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent/localapi"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/seal"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/platform"
)

// TestDaemonAgainstCertplane runs the daemon against the real control
// plane (controlplane.Service over SQLite, served over HTTP): the
// account's first root is installed, a root generated and activated later
// arrives without waiting for the one-hour poll (long-poll), a deleted
// anchor comes back, and status reports the control plane reachable.
func TestDaemonAgainstCertplane(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "certplane.db"))
	require.NoError(t, err)
	defer db.Close()
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	require.NoError(t, err)
	svc, err := controlplane.New(db, controlplane.Options{Sealer: sealer, DeployDelay: -1, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler(ctx))
	defer srv.Close()
	acct, err := svc.CreateAccount(ctx, "acme")
	require.NoError(t, err)
	// A device token, as agents are given: it lists and checks in.
	token, err := svc.CreateToken(ctx, acct.ID, storage.ScopeDevice)
	require.NoError(t, err)

	root := t.TempDir()
	anchors := filepath.Join(root, "anchors")
	cfgPath := filepath.Join(root, "config.json")
	cfg, _ := json.Marshal(map[string]any{
		"control_plane_url": srv.URL + controlplane.APIPrefix, "account_id": acct.ID, "api_token": token,
		"poll_interval": "1h", "stores": []string{"dir:" + anchors}, "state_dir": filepath.Join(root, "state"),
	})
	require.NoError(t, os.WriteFile(cfgPath, cfg, 0o600))
	socket := filepath.Join(root, "certagent.sock")
	logs := &syncBuffer{}
	done := make(chan error, 1)
	ready := make(chan struct{})
	dctx, dcancel := context.WithCancel(ctx)
	go func() {
		done <- Run(dctx, Options{Paths: platform.Paths{ConfigFile: cfgPath, StateDir: filepath.Join(root, "state"), Socket: socket},
			Logger:   NewLogger(LogOptions{Output: logs, JSON: true, Level: "debug", Secrets: []string{token}}),
			Debounce: 50 * time.Millisecond, Ready: func() { close(ready) }})
	}()
	defer func() {
		dcancel()
		require.NoError(t, <-done)
		require.NotContains(t, logs.String(), token)
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	}()
	<-ready

	anchorFiles := func() []string {
		m, _ := filepath.Glob(filepath.Join(anchors, "certagent-*.pem"))
		return m
	}
	eventually(t, "the account's first root", func() bool { return len(anchorFiles()) == 1 })
	first := anchorFiles()[0]

	// An admin generates and activates a second root; the long-poll brings
	// it here long before the hourly poll.
	c2, err := svc.Generate(ctx, acct.ID, controlplane.GenerateRequest{})
	require.NoError(t, err)
	_, err = svc.Rules().Activate(ctx, acct.ID, c2.ID)
	require.NoError(t, err)
	eventually(t, "the newly activated root", func() bool { return len(anchorFiles()) == 2 })

	require.NoError(t, os.Remove(first))
	eventually(t, "the deleted anchor to come back", func() bool { return exists(first) })

	rep, err := localapi.NewClient(socket).Status(ctx)
	require.NoError(t, err)
	require.True(t, rep.ControlPlane.Reachable, "%+v", rep.ControlPlane)
	require.Len(t, rep.Certificates, 2)
	inUse := 0
	for _, c := range rep.Certificates {
		require.Equal(t, status.CertAvailable, c.State)
		if c.InUse {
			inUse++
		}
	}
	require.Equal(t, 1, inUse)
	require.Equal(t, 0, status.ExitCode(rep.Health), "%+v", rep.Health)
	// The daemon checked in: status shows the device, and certplane knows it.
	require.Eventually(t, func() bool {
		rep, err = localapi.NewClient(socket).Status(ctx)
		return err == nil && rep.Device.Accepted
	}, 10*time.Second, 10*time.Millisecond, "%+v", rep.Device)
	_, err = svc.Device(ctx, acct.ID, rep.Device.ID)
	require.NoError(t, err)
	require.False(t, strings.Contains(logs.String(), `"@level":"error"`), "no errors logged")
}
