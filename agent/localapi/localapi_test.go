//go:build !windows

package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/agent"
	"github.com/certagent/certagent/agent/status"
	"github.com/certagent/certagent/internal/testenv"
	"github.com/certagent/certagent/platform"
)

type fakeBackend struct {
	syncs  atomic.Int32
	purges atomic.Int32
}

func (f *fakeBackend) Status(context.Context) (*status.Report, error) {
	return &status.Report{Version: "test", Daemon: status.Daemon{Running: true, PID: 7, Source: "localapi"}}, nil
}

func (f *fakeBackend) CertsPEM(context.Context) ([]byte, error) {
	return []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), nil
}

func (f *fakeBackend) Sync(_ context.Context, dry bool) (*agent.PassReport, error) {
	f.syncs.Add(1)
	if dry {
		return &agent.PassReport{DryRun: true, Changes: 2}, nil
	}
	return &agent.PassReport{Changes: 1}, errors.New("store nss: certutil -A (user alice): exit status 255")
}

func (f *fakeBackend) Purge(context.Context) (*agent.PurgeReport, error) {
	f.purges.Add(1)
	return &agent.PurgeReport{StateRemoved: true}, nil
}

// serve starts a server on a socket in a directory every user can reach.
func serve(t *testing.T, b Backend) string { return serveB(t, b) }

func serveB(t testing.TB, b Backend) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir is 0700 (and so is its parent); the unprivileged client
	// must be able to reach the socket like it reaches /run/certagent.
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	path := filepath.Join(dir, "run", "certagent.sock")
	ln, err := platform.ListenLocalAPI(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return path
}

func TestClientServer(t *testing.T) {
	fb := &fakeBackend{}
	c := NewClient(serve(t, fb))
	ctx := context.Background()

	r, err := c.Status(ctx)
	require.NoError(t, err)
	if got, want := r.Daemon.PID, 7; got != want {
		t.Errorf("pid: got %d, want %d", got, want)
	}
	pem, err := c.CertsPEM(ctx)
	require.NoError(t, err)
	require.Contains(t, string(pem), "BEGIN CERTIFICATE")
	who, err := c.WhoAmI(ctx)
	require.NoError(t, err)
	if got, want := who.UID, os.Getuid(); got != want {
		t.Errorf("whoami uid: got %d, want %d", got, want)
	}

	if os.Getuid() != 0 {
		_, err := c.Sync(ctx, true)
		require.ErrorIs(t, err, ErrForbidden)
		return
	}
	rep, err := c.Sync(ctx, true)
	require.NoError(t, err)
	if rep == nil || !rep.DryRun || rep.Changes != 2 {
		t.Errorf("dry-run report: got %+v, want dry_run with 2 changes", rep)
	}
	// A failed pass still brings back its report.
	rep, err = c.Sync(ctx, false)
	require.ErrorContains(t, err, "certutil -A")
	require.NotNil(t, rep, "report with error")
	if got, want := rep.Changes, 1; got != want {
		t.Errorf("report with error: got %d changes, want %d", got, want)
	}
	_, err = c.Purge(ctx)
	require.NoError(t, err)
	if got, want := fb.purges.Load(), int32(1); got != want {
		t.Errorf("purges: got %d, want %d", got, want)
	}
}

func TestNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "nothing.sock"))
	_, err := c.Status(context.Background())
	require.ErrorIs(t, err, ErrNotRunning)
}

func TestRequestRules(t *testing.T) {
	fb := &fakeBackend{}
	path := serve(t, fb)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return platform.DialLocalAPI(ctx, path)
	}}}
	tests := []struct {
		name     string
		method   string
		path     string
		header   [2]string
		wantCode int
	}{
		{"status", "GET", "/localapi/v0/status", [2]string{}, 200},
		{"origin refused", "GET", "/localapi/v0/status", [2]string{"Origin", "http://evil.example"}, 403},
		{"referer refused", "POST", "/localapi/v0/sync", [2]string{"Referer", "http://evil.example/x"}, 403},
		{"unknown endpoint", "GET", "/localapi/v0/nope", [2]string{}, 404},
		{"outside prefix", "GET", "/status", [2]string{}, 404},
		{"sync needs POST", "GET", "/localapi/v0/sync", [2]string{}, 405},
		{"status is GET", "POST", "/localapi/v0/status", [2]string{}, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://certagent.local"+tt.path, nil)
			require.NoError(t, err)
			if tt.header[0] != "" {
				req.Header.Set(tt.header[0], tt.header[1])
			}
			resp, err := hc.Do(req)
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := resp.StatusCode; got != tt.wantCode {
				t.Errorf("got %d, want %d", got, tt.wantCode)
			}
		})
	}
	if got := fb.syncs.Load(); got != 0 {
		t.Errorf("a refused request reached the backend: %d syncs", got)
	}
}

// TestUnprivilegedClient runs the client as uid nobody in a subprocess:
// reading status works, sync is refused by the daemon's peer-credential
// check (and never reaches the backend).
func TestUnprivilegedClient(t *testing.T) {
	testenv.RequireRoot(t, "to run a client as nobody")
	fb := &fakeBackend{}
	path := serve(t, fb)

	// The test binary lives in a 0700 build directory; copy it somewhere
	// nobody can execute it.
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(filepath.Dir(path), "..", "localapi.test")
	data, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))

	cmd := exec.Command(bin, "-test.run=^TestHelperClient$", "-test.v")
	cmd.Env = []string{"LOCALAPI_HELPER_SOCKET=" + path, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper output:\n%s", out)
	require.Contains(t, string(out), "HELPER status ok uid=65534")
	require.Contains(t, string(out), "HELPER sync forbidden")
	if got := fb.syncs.Load(); got != 0 {
		t.Errorf("unprivileged sync reached the backend: %d syncs", got)
	}
}

// TestHelperClient is the unprivileged side of TestUnprivilegedClient.
func TestHelperClient(t *testing.T) {
	path := os.Getenv("LOCALAPI_HELPER_SOCKET")
	if path == "" {
		// Only a child process that TestUnprivilegedClient starts does
		// anything here; a plain run returns instead of skipping, so that
		// under CERTAGENT_E2E=1 every reported skip is a real gap.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := NewClient(path)
	r, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status as uid %d: %v", os.Getuid(), err)
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("HELPER status ok uid=%d version=%s\n", who.UID, r.Version)
	_, err = c.Sync(ctx, false)
	if errors.Is(err, ErrForbidden) && strings.Contains(err.Error(), "sudo certagent sync") {
		fmt.Println("HELPER sync forbidden")
	} else {
		t.Fatalf("sync as uid %d: got %v, want ErrForbidden", os.Getuid(), err)
	}
}
