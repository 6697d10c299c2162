package platform

import (
	"fmt"
	"os"
)

// CheckSettingsFile refuses a settings file (config.json, managed.json)
// that someone other than root could have written: whoever writes it
// chooses the control plane and the stores, and so which roots a root
// daemon makes every program trust. Owned by root (or by the user running
// the agent, for tests and unprivileged runs) and not writable by group or
// others, like sshd's StrictModes. Windows relies on the directory's ACL.
func CheckSettingsFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := checkSettingsFile(fi); err != nil {
		return fmt.Errorf("%s: %w (a root daemon takes its settings only from a file root alone can write)", path, err)
	}
	return nil
}
