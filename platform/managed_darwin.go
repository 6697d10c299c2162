package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// readManaged reads the device-wide managed preferences of
// ManagedPreferenceDomain, which macOS writes from MDM profiles
// (p.ManagedFile, when set, wins: tests and CERTAGENT_MANAGED). The plist is
// parsed with howett.net/plist rather than CFPreferences, so no cgo.
func readManaged(p Paths) (Managed, error) {
	if p.ManagedFile != "" {
		return readManagedFile(p.ManagedFile)
	}
	m := Managed{Source: ManagedPreferencesFile}
	fi, err := os.Lstat(ManagedPreferencesFile)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("managed settings: %w", err)
	}
	// Only mdmclient (root) writes there; settings that anyone else could
	// have written must not steer a root daemon.
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return m, fmt.Errorf("managed settings %s: not a regular file", ManagedPreferencesFile)
	case !ok || st.Uid != 0:
		return m, fmt.Errorf("managed settings %s: not owned by root", ManagedPreferencesFile)
	case fi.Mode().Perm()&0o022 != 0:
		return m, fmt.Errorf("managed settings %s: writable by group or others (mode %v)", ManagedPreferencesFile, fi.Mode().Perm())
	}
	return readManagedFile(ManagedPreferencesFile)
}
