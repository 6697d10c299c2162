package platform

import (
	"errors"
	"io/fs"
	"os"
)

// SystemdUnitPath is where kardianos writes the system unit.
const SystemdUnitPath = "/etc/systemd/system/" + ServiceName + ".service"

// prepareReinstall removes the old unit file: kardianos refuses to install
// over it ("Init already exists") and would not truncate it anyway. The
// service stays enabled and running; Install rewrites, re-enables and
// reloads.
func (s *Service) prepareReinstall(ServiceState) error {
	if s.svc.Platform() != "linux-systemd" {
		// Other init systems: remove and install again.
		_ = s.svc.Stop()
		if err := s.svc.Uninstall(); err != nil {
			return err
		}
		return nil
	}
	path := "/etc/systemd/system/" + s.o.Name + ".service"
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Service) updatedInPlace() (bool, error) { return false, nil }
func (s *Service) postInstall() error            { return nil }
func (s *Service) postUninstall() error          { return nil }
