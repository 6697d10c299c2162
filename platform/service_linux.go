package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SystemdUnitPath is where kardianos writes the system unit.
const SystemdUnitPath = "/etc/systemd/system/" + ServiceName + ".service"

// serviceFile is the file that makes the service installed for the init
// system kardianos chose (its own configPath, per platform).
func (s *Service) serviceFile() string {
	switch s.svc.Platform() {
	case "linux-systemd":
		return "/etc/systemd/system/" + s.o.Name + ".service"
	case "linux-upstart":
		return "/etc/init/" + s.o.Name + ".conf"
	default: // unix-systemv, linux-openrc, linux-rcs, linux-procd
		return "/etc/init.d/" + s.o.Name
	}
}

// initScript reports whether the platform runs the service from an init
// script that answers "status" itself (SysV-style: exit 0 running).
func (s *Service) initScript() bool {
	switch s.svc.Platform() {
	case "unix-systemv", "linux-rcs", "linux-procd":
		return true
	}
	return false
}

// localState answers State where kardianos cannot: without the service's
// file the service is not installed, whatever the init system's status
// command says (SysV's `service NAME status` fails for an unknown service,
// which kardianos reports as an error, not as "not installed"); and a
// SysV-style script's status is read from its exit code (kardianos takes
// the "Stopped" answer, which exits 1, for an error too). ok is false when
// kardianos' own answer is right (systemd, OpenRC, upstart with the file
// present).
func (s *Service) localState() (st ServiceState, ok bool, err error) {
	if _, err := os.Stat(s.serviceFile()); errors.Is(err, fs.ErrNotExist) {
		return ServiceNotInstalled, true, nil
	}
	if !s.initScript() {
		return "", false, nil
	}
	out, err := exec.Command(s.serviceFile(), "status").CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return ServiceRunning, true, nil
	case errors.As(err, &ee) && (ee.ExitCode() == 3 || (ee.ExitCode() == 1 && strings.HasPrefix(string(out), "Stopped"))):
		// LSB: 3 is "not running"; kardianos' own script says "Stopped", exit 1.
		return ServiceStopped, true, nil
	}
	return ServiceUnknown, true, fmt.Errorf("%s status: %v: %s", s.serviceFile(), err, strings.TrimSpace(string(out)))
}

// prepareReinstall removes the old unit file: kardianos refuses to install
// over it ("Init already exists") and would not truncate it anyway. The
// service stays enabled and running; Install rewrites, re-enables and
// reloads.
func (s *Service) prepareReinstall(ServiceState) error {
	path := s.serviceFile()
	if s.svc.Platform() != "linux-systemd" {
		// Other init systems: stop, then remove the script; Install writes
		// the new one and afterInstall restarts it.
		_ = s.svc.Stop()
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Service) updatedInPlace() (bool, error) { return false, nil }
func (s *Service) postInstall() error            { return nil }

// postUninstall removes the runlevel links kardianos' SysV install made
// (/etc/rcN.d/S50NAME, K02NAME) and its Uninstall leaves dangling; only
// links that point at our script.
func (s *Service) postUninstall() error {
	if !s.initScript() {
		return nil
	}
	script := s.serviceFile()
	links, _ := filepath.Glob("/etc/rc[0-6S].d/[SK][0-9][0-9]" + s.o.Name)
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == script {
			if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// runUnderSCM is Windows-only; kardianos decides alone here.
func (s *Service) runUnderSCM() (bool, error) { return false, nil }
