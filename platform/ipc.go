package platform

import (
	"context"
	"errors"
	"net"
)

// ErrDaemonRunning is returned by Listen when another process already
// answers on the LocalAPI endpoint.
var ErrDaemonRunning = errors.New("platform: another certagent daemon is listening")

// ErrNoPeerCred is returned by PeerCredOf for a connection whose peer the OS
// cannot identify (not a LocalAPI connection, or an unsupported platform).
var ErrNoPeerCred = errors.New("platform: peer credentials unavailable")

// PeerCred identifies the local process on the other end of a LocalAPI
// connection, as the kernel reports it (never as the client claims).
type PeerCred struct {
	// UID is the peer's user id (-1 on Windows, which has SIDs instead).
	UID int `json:"uid"`
	// PID is the peer's process id (0 when the OS does not say).
	PID int `json:"pid,omitempty"`
	// User is the peer's account name when known ("" otherwise).
	User string `json:"user,omitempty"`
	// Admin reports whether the peer may change things: uid 0 on unix, a
	// token in BUILTIN\Administrators (or SYSTEM) on Windows.
	Admin bool `json:"admin"`
}

// ListenLocalAPI opens the LocalAPI endpoint: a unix socket at path (its
// directory created 0755, the socket 0666 so every local user can read
// status; writes are authorised per request from peer credentials), or a
// Windows named pipe whose ACL lets local users connect. A stale socket file
// left by a crashed daemon is replaced; a live one is ErrDaemonRunning.
func ListenLocalAPI(path string) (net.Listener, error) { return listenLocalAPI(path) }

// DialLocalAPI connects to the LocalAPI endpoint at path.
func DialLocalAPI(ctx context.Context, path string) (net.Conn, error) {
	return dialLocalAPI(ctx, path)
}

// PeerCredOf returns the kernel's view of who is on the other end of c, a
// connection accepted from a ListenLocalAPI listener.
func PeerCredOf(c net.Conn) (PeerCred, error) { return peerCredOf(c) }
