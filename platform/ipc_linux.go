package platform

import "golang.org/x/sys/unix"

// sockPeerCred reads SO_PEERCRED: the uid and pid the kernel recorded when
// the client connected.
func sockPeerCred(fd int) (PeerCred, error) {
	u, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return PeerCred{}, err
	}
	return PeerCred{UID: int(u.Uid), PID: int(u.Pid)}, nil
}
