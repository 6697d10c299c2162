//go:build !windows

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent/localapi"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust/dir"
	"github.com/certagent/certagent/trust/trusttest"
)

// deadline bounds every wait: generous, because the tests wait for a
// condition and never time it.
const deadline = 30 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type env struct {
	root, cfgPath, state, socket string
	anchors, anchors2            string
	cp                           *fakeCP
	logs                         *syncBuffer
}

func writeConfig(t *testing.T, e *env, stores ...string) {
	t.Helper()
	cfg := map[string]any{
		"control_plane_url": e.cp.URL(), "account_id": testAccount, "api_token": testToken,
		// An hour: anything repaired within the test was repaired by the
		// file watch, not by polling.
		"poll_interval": "1h", "stores": stores, "state_dir": e.state,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	// Replace by rename, like an editor or a config manager.
	tmp := e.cfgPath + ".new"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, e.cfgPath))
}

func startDaemon(t *testing.T, cas ...*trusttest.CA) (*env, *localapi.Client) {
	t.Helper()
	root := t.TempDir()
	// Let an unprivileged client reach the socket, as in /run/certagent.
	require.NoError(t, os.Chmod(root, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(root), 0o755))
	e := &env{
		root: root, cfgPath: filepath.Join(root, "etc", "config.json"), state: filepath.Join(root, "state"),
		socket:  filepath.Join(root, "run", "certagent.sock"),
		anchors: filepath.Join(root, "anchors"), anchors2: filepath.Join(root, "anchors2"),
		cp: newFakeCP(t, cas...), logs: &syncBuffer{},
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(e.cfgPath), 0o755))
	writeConfig(t, e, "dir:"+e.anchors)
	log := NewLogger(LogOptions{Output: e.logs, JSON: true, Level: "debug", Secrets: []string{testToken}})
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Paths:    platform.Paths{ConfigFile: e.cfgPath, StateDir: e.state, Socket: e.socket},
			Logger:   log,
			Debounce: 50 * time.Millisecond,
			Ready:    func() { close(ready) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		if t.Failed() {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
		require.NotContains(t, e.logs.String(), testToken, "the token reached the log")
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon exited: %v", err)
	}
	return e, localapi.NewClient(e.socket)
}

func TestDaemonDriftRepairAndReload(t *testing.T) {
	ca := trusttest.NewCA(t, trusttest.WithCommonName("Daemon Test Root"))
	e, c := startDaemon(t, ca)
	anchor := filepath.Join(e.anchors, dir.FileName(ca.FP))

	eventually(t, "the first pass to install the root", func() bool { return exists(anchor) })

	// A root deleted behind our back comes back within seconds, long
	// before the one-hour poll.
	for range 2 {
		require.NoError(t, os.Remove(anchor))
		eventually(t, "the deleted anchor to come back", func() bool { return exists(anchor) })
	}

	// Status over the socket, once the repair pass recorded its outcome.
	ctx := context.Background()
	var rep *status.Report
	eventually(t, "a clean status", func() bool {
		var err error
		rep, err = c.Status(ctx)
		return err == nil && len(rep.Certificates) == 1 && len(rep.Health) == 0
	})
	require.True(t, rep.Daemon.Running)
	require.Len(t, rep.Certificates, 1)
	require.Equal(t, status.CertAvailable, rep.Certificates[0].State)
	require.Equal(t, "Daemon Test Root", rep.Certificates[0].Subject)
	require.True(t, rep.ControlPlane.Reachable)
	require.Empty(t, rep.Health, "health: %+v", rep.Health)

	// A config change (a second store) is picked up without a restart.
	writeConfig(t, e, "dir:"+e.anchors, "dir:"+e.anchors2)
	anchor2 := filepath.Join(e.anchors2, dir.FileName(ca.FP))
	eventually(t, "the reloaded config to serve the new store", func() bool { return exists(anchor2) })
	// And the new store is watched too.
	require.NoError(t, os.Remove(anchor2))
	eventually(t, "the new store's anchor to come back", func() bool { return exists(anchor2) })

	// An invalid config is rejected with a health warning; the old one
	// keeps working.
	require.NoError(t, os.WriteFile(e.cfgPath+".new", []byte(`{"account_id": "nope",`), 0o600))
	require.NoError(t, os.Rename(e.cfgPath+".new", e.cfgPath))
	eventually(t, "the reload-rejected warning", func() bool {
		rep, err := c.Status(ctx)
		return err == nil && hasCode(rep.Health, status.CodeConfigRejected)
	})
	rep, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, status.ExitCode(rep.Health))
	require.True(t, rep.Config.Valid)
	require.NoError(t, os.Remove(anchor))
	eventually(t, "repair under the previous config", func() bool { return exists(anchor) })

	// Fixing the file clears the warning.
	writeConfig(t, e, "dir:"+e.anchors)
	eventually(t, "the warning to clear", func() bool {
		rep, err := c.Status(ctx)
		return err == nil && !hasCode(rep.Health, status.CodeConfigRejected)
	})

	// certs lists the managed root.
	pem, err := c.CertsPEM(ctx)
	require.NoError(t, err)
	require.Contains(t, string(pem), "BEGIN CERTIFICATE")

	if os.Getuid() != 0 {
		return
	}
	sr, err := c.Sync(ctx, false)
	require.NoError(t, err)
	require.NotNil(t, sr)
	require.Equal(t, "sync", sr.Reason)

	// Purge through the daemon: it stops its loop first, so its own drift
	// repair cannot put back what the purge removes.
	pr, err := c.Purge(ctx)
	require.NoError(t, err)
	require.NotNil(t, pr)
	require.True(t, pr.StateRemoved, "purge report: %+v", pr)
	require.False(t, exists(anchor), "the root is gone after purge")
	rep, err = c.Status(ctx)
	require.NoError(t, err, "status still answers after a purge")
	require.True(t, rep.Daemon.Running)
	// A later sync is refused instead of reinstalling.
	_, err = c.Sync(ctx, false)
	require.ErrorContains(t, err, "purged")
}

func TestDaemonUnprivilegedClient(t *testing.T) {
	testenv.RequireRoot(t, "to run a client as nobody")
	ca := trusttest.NewCA(t)
	e, _ := startDaemon(t, ca)
	// The anchor is written before the pass records its outcome; wait for
	// the outcome.
	eventually(t, "the first pass", func() bool {
		rep, err := localapi.NewClient(e.socket).Status(context.Background())
		return err == nil && len(rep.Certificates) == 1
	})

	self, err := os.Executable()
	require.NoError(t, err)
	data, err := os.ReadFile(self)
	require.NoError(t, err)
	bin := filepath.Join(e.root, "daemon.test")
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "-test.run=^TestHelperUnprivileged$")
	cmd.Env = []string{"DAEMON_HELPER_SOCKET=" + e.socket}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper output:\n%s", out)
	require.Contains(t, string(out), "HELPER read ok uid=65534 certs=1")
	require.Contains(t, string(out), "HELPER sync refused")
	eventually(t, "the refusal to be logged", func() bool {
		return strings.Contains(e.logs.String(), `"@message":"localapi write refused"`) && strings.Contains(e.logs.String(), `"uid":65534`)
	})
}

// TestHelperUnprivileged is the uid-nobody side of
// TestDaemonUnprivilegedClient.
func TestHelperUnprivileged(t *testing.T) {
	sock := os.Getenv("DAEMON_HELPER_SOCKET")
	if sock == "" {
		// Only a child process that TestDaemonUnprivilegedClient starts does
		// anything here; a plain run returns instead of skipping, so that
		// under CERTAGENT_E2E=1 every reported skip is a real gap.
		return
	}
	c := localapi.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status as uid %d: %v", os.Getuid(), err)
	}
	fmt.Printf("HELPER read ok uid=%d certs=%d\n", os.Getuid(), len(rep.Certificates))
	if _, err := c.Sync(ctx, false); errors.Is(err, localapi.ErrForbidden) {
		fmt.Println("HELPER sync refused")
	} else {
		t.Fatalf("sync as uid %d: got %v, want ErrForbidden", os.Getuid(), err)
	}
}

func TestDaemonWaitsForConfig(t *testing.T) {
	root := t.TempDir()
	cfgPath := filepath.Join(root, "config.json")
	socket := filepath.Join(root, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Run(ctx, Options{Paths: platform.Paths{ConfigFile: cfgPath, StateDir: filepath.Join(root, "state"), Socket: socket},
			Logger: hclog.NewNullLogger(), Debounce: 20 * time.Millisecond, Ready: func() { close(ready) }})
	}()
	<-ready
	c := localapi.NewClient(socket)
	rep, err := c.Status(ctx)
	require.NoError(t, err)
	require.False(t, rep.Config.Valid)
	require.Equal(t, 2, status.ExitCode(rep.Health), "no config is misconfigured: %+v", rep.Health)

	// The config arrives (MDM, Ansible) and the agent starts by itself.
	ca := trusttest.NewCA(t)
	e := &env{cfgPath: cfgPath, state: filepath.Join(root, "state"), cp: newFakeCP(t, ca)}
	anchors := filepath.Join(root, "anchors")
	writeConfig(t, e, "dir:"+anchors)
	eventually(t, "the agent to start on the new config", func() bool { return exists(filepath.Join(anchors, dir.FileName(ca.FP))) })
	cancel()
	require.NoError(t, <-done)
}

func hasCode(ws []status.Warning, code string) bool {
	for _, w := range ws {
		if w.Code == code {
			return true
		}
	}
	return false
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
