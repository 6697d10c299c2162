//go:build !windows

package platform

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLocalAPIPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "certagent.sock")
	ln, err := ListenLocalAPI(path)
	require.NoError(t, err)
	defer ln.Close()

	fi, err := os.Stat(path)
	require.NoError(t, err)
	if got, want := fi.Mode().Perm(), os.FileMode(0o666); got != want {
		t.Errorf("socket mode: got %v, want %v", got, want)
	}
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	if got, want := di.Mode().Perm(), os.FileMode(0o755); got != want {
		t.Errorf("socket dir mode: got %v, want %v", got, want)
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := DialLocalAPI(context.Background(), path)
	require.NoError(t, err)
	defer c.Close()
	sc, ok := <-accepted
	require.True(t, ok)
	defer sc.Close()

	pc, err := PeerCredOf(sc)
	require.NoError(t, err)
	if got, want := pc.UID, os.Getuid(); got != want {
		t.Errorf("uid: got %d, want %d", got, want)
	}
	if got, want := pc.PID, os.Getpid(); got != want && pc.PID != 0 {
		t.Errorf("pid: got %d, want %d", got, want)
	}
	if got, want := pc.Admin, os.Getuid() == 0; got != want {
		t.Errorf("admin: got %v, want %v", got, want)
	}
}

func TestLocalAPIPeerCredNotUnix(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := PeerCredOf(a); !errors.Is(err, ErrNoPeerCred) {
		t.Errorf("got %v, want ErrNoPeerCred", err)
	}
}

func TestListenLocalAPIStaleAndLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")

	// A socket left behind by a dead daemon is replaced.
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = os.Lstat(path)
	require.NoError(t, err, "stale socket must exist for this test")
	ln2, err := ListenLocalAPI(path)
	require.NoError(t, err)

	// A live daemon is not displaced.
	_, err = ListenLocalAPI(path)
	if !errors.Is(err, ErrDaemonRunning) {
		t.Errorf("second listen: got %v, want ErrDaemonRunning", err)
	}
	ln2.Close()

	// Something that is not a socket is never deleted.
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("keep"), 0o600))
	_, err = ListenLocalAPI(file)
	require.Error(t, err)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	if string(b) != "keep" {
		t.Errorf("file content: got %q, want %q", b, "keep")
	}
}
