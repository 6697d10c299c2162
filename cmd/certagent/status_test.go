package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// TestStatusDaemonDown: with nothing on the socket, status reads the state
// the daemon saved, says the daemon is down with an OS hint, and exits 2.
func TestStatusDaemonDown(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "config.json")
	cfg := map[string]any{"control_plane_url": "https://certplane.example.com/client/v4",
		"account_id": "0123456789abcdef0123456789abcdef", "api_token": "cfut_status_test_token",
		"stores": []string{"dir:" + filepath.Join(dir, "anchors")}, "state_dir": state}
	b, _ := json.Marshal(cfg)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))
	fp := trust.FingerprintOf([]byte("root"))
	snap := agent.Snapshot{Version: "t", ControlPlaneURL: "https://certplane.example.com/client/v4", PollInterval: "1m0s",
		Stores:   []string{"dir:" + filepath.Join(dir, "anchors")},
		LastPoll: time.Now().Add(-time.Hour), LastPollStatus: "ok", LastSuccess: time.Now().Add(-time.Hour),
		Desired: []agent.CertInfo{{ID: "c1", FP: fp, Subject: "Saved Root", NotAfter: time.Now().Add(400 * 24 * time.Hour), InUse: true}},
		Results: []agent.TargetResult{{Store: "dir:" + filepath.Join(dir, "anchors"), FP: fp, Status: trust.StatusOK, Reason: "present"}},
	}
	sb, _ := json.Marshal(snap)
	require.NoError(t, os.MkdirAll(state, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(state, "status.json"), sb, 0o644))

	paths := platform.Paths{ConfigFile: cfgPath, StateDir: state, Socket: filepath.Join(dir, "none.sock")}
	rep := gatherStatus(context.Background(), paths)
	require.False(t, rep.Daemon.Running)
	require.Equal(t, "state file", rep.Daemon.Source)
	require.Equal(t, 2, status.ExitCode(rep.Health))
	require.Equal(t, status.CodeDaemonDown, rep.Health[0].Code)
	require.Equal(t, status.StartHint(runtime.GOOS), rep.Health[0].Fix)
	require.Len(t, rep.Certificates, 1)
	require.Equal(t, "Saved Root", rep.Certificates[0].Subject)
	require.Equal(t, status.PlacementInstalled, rep.Certificates[0].Placements[0].State)
}

// TestStatusMisconfigured: an invalid config is reported with the key at
// fault even with the daemon down and no saved state.
func TestStatusMisconfigured(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(`{"control_plane_url":"https://x.example/client/v4","account_id":"not-hex","api_token":"abcdefgh","state_dir":"`+filepath.Join(dir, "state")+`"}`), 0o600))
	rep := gatherStatus(context.Background(), platform.Paths{ConfigFile: cfgPath, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "none.sock")})
	require.False(t, rep.Config.Valid)
	require.NotEmpty(t, rep.Config.Problems)
	require.Contains(t, rep.Config.Problems[0], "account_id")
	require.Equal(t, 2, status.ExitCode(rep.Health))
}
