package platform

import "golang.org/x/sys/unix"

// sockPeerCred reads LOCAL_PEERCRED (what getpeereid(3) uses) and
// LOCAL_PEERPID.
func sockPeerCred(fd int) (PeerCred, error) {
	x, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return PeerCred{}, err
	}
	pc := PeerCred{UID: int(x.Uid)}
	if pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
		pc.PID = pid
	}
	return pc, nil
}
