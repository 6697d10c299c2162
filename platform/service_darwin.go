package platform

import (
	"errors"
	"io/fs"
	"os"
)

// prepareReinstall unloads the daemon and removes its plist: kardianos
// refuses to install over it. Install writes the new plist and the
// restart that follows loads it.
func (s *Service) prepareReinstall(ServiceState) error {
	_ = s.svc.Stop()
	path := "/Library/LaunchDaemons/" + s.o.Name + ".plist"
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Service) updatedInPlace() (bool, error) { return false, nil }
func (s *Service) postInstall() error            { return nil }
func (s *Service) postUninstall() error          { return nil }

// localState: kardianos' own status is right here.
func (s *Service) localState() (ServiceState, bool, error) { return "", false, nil }

// runUnderSCM is Windows-only; kardianos decides alone here.
func (s *Service) runUnderSCM() (bool, error) { return false, nil }
