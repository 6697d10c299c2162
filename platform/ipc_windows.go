package platform

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// pipeSDDL is the named pipe's ACL. SYSTEM and Administrators get full
// control. Authenticated users get read and write on the pipe object,
// because an HTTP request needs both directions even to read status; what a
// non-admin may do is decided per request from the client's token (see
// peerCredOf), like the unix socket's 0666 plus SO_PEERCRED.
const pipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)"

func listenLocalAPI(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("platform: localapi: empty pipe name")
	}
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: pipeSDDL})
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("%w on %s: %v", ErrDaemonRunning, path, err)
		}
		return nil, fmt.Errorf("platform: localapi: listen %s: %w", path, err)
	}
	if err := consumeFirstInstance(path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("platform: localapi: listen %s: %w", path, err)
	}
	return ln, nil
}

// consumeFirstInstance connects to the new pipe once and hangs up. go-winio
// hands its first pipe instance, created at listen time, to the first
// Accept; where a client connected to that instance before the overlapped
// ConnectNamedPipe was issued, the call stays pending instead of reporting
// ERROR_PIPE_CONNECTED (Windows 7 and Server 2008 R2, and Wine: go-winio
// issue 313), and the daemon never answers its first client. Taken by a
// throwaway client, the instance fails its ConnectNamedPipe with
// ERROR_NO_DATA, which go-winio answers with a fresh instance.
func consumeFirstInstance(path string) error {
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	h, err := windows.CreateFile(name, 0, 0, nil, windows.OPEN_EXISTING, windows.SECURITY_SQOS_PRESENT|windows.SECURITY_ANONYMOUS, 0)
	if errors.Is(err, windows.ERROR_PIPE_BUSY) {
		return nil // a client already took it
	}
	if err != nil {
		return fmt.Errorf("connect to the first instance: %w", err)
	}
	return windows.CloseHandle(h)
}

func dialLocalAPI(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, path)
}

// peerCredOf asks the pipe for its client's process id, then checks that
// process's token for Administrators (deny-only under UAC unless elevated,
// which CheckTokenMembership honours) or SYSTEM.
func peerCredOf(c net.Conn) (PeerCred, error) {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return PeerCred{}, fmt.Errorf("%w: %T is not a named pipe", ErrNoPeerCred, c)
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(windows.Handle(f.Fd()), &pid); err != nil {
		return PeerCred{}, fmt.Errorf("%w: GetNamedPipeClientProcessId: %v", ErrNoPeerCred, err)
	}
	pc := PeerCred{UID: -1, PID: int(pid)}
	admin, user, err := processIsAdmin(pid)
	if err != nil {
		return PeerCred{}, fmt.Errorf("%w: pid %d: %v", ErrNoPeerCred, pid, err)
	}
	pc.Admin, pc.User = admin, user
	return pc, nil
}

func processIsAdmin(pid uint32) (admin bool, user string, err error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return false, "", fmt.Errorf("OpenProcess: %w", err)
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY|windows.TOKEN_DUPLICATE, &tok); err != nil {
		return false, "", fmt.Errorf("OpenProcessToken: %w", err)
	}
	defer tok.Close()
	if tu, err := tok.GetTokenUser(); err == nil {
		if acct, dom, _, err := tu.User.Sid.LookupAccount(""); err == nil {
			user = dom + `\` + acct
		}
		if tu.User.Sid.IsWellKnown(windows.WinLocalSystemSid) {
			return true, user, nil
		}
	}
	// CheckTokenMembership needs an impersonation token.
	var imp windows.Token
	if err := windows.DuplicateTokenEx(tok, windows.TOKEN_QUERY, nil, windows.SecurityIdentification, windows.TokenImpersonation, &imp); err != nil {
		return false, user, fmt.Errorf("DuplicateTokenEx: %w", err)
	}
	defer imp.Close()
	admins, err := windows.CreateWellKnownSid(windows.WinBuiltinAdministratorsSid)
	if err != nil {
		return false, user, err
	}
	ok, err := imp.IsMember(admins)
	if err != nil {
		return false, user, fmt.Errorf("CheckTokenMembership: %w", err)
	}
	return ok, user, nil
}
