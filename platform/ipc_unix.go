//go:build !windows

package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

func listenLocalAPI(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("platform: localapi: empty socket path")
	}
	// 0755: the directory must be searchable by users so they can reach the
	// socket; only root may create or replace entries in it.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("platform: localapi: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("platform: localapi: listen %s: %w", path, err)
	}
	// Reads are open to every local user; each write request is checked
	// against the peer's uid, so the socket itself may be world-connectable.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("platform: localapi: chmod %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket deletes a socket file nobody answers on. It refuses to
// delete anything that is not a socket, and refuses when a daemon answers.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("platform: localapi: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("platform: localapi: %s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w on %s", ErrDaemonRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("platform: localapi: remove stale socket: %w", err)
	}
	return nil
}

func dialLocalAPI(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

func peerCredOf(c net.Conn) (PeerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, fmt.Errorf("%w: %T is not a unix socket", ErrNoPeerCred, c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("%w: %v", ErrNoPeerCred, err)
	}
	var pc PeerCred
	var credErr error
	if err := raw.Control(func(fd uintptr) { pc, credErr = sockPeerCred(int(fd)) }); err != nil {
		return PeerCred{}, fmt.Errorf("%w: %v", ErrNoPeerCred, err)
	}
	if credErr != nil {
		return PeerCred{}, fmt.Errorf("%w: %v", ErrNoPeerCred, credErr)
	}
	pc.Admin = pc.UID == 0
	return pc, nil
}
