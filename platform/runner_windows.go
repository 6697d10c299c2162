//go:build windows

package platform

import (
	"errors"
	"os"
	"os/exec"
)

var rootDir = os.Getenv("SystemRoot")

func defaultEnv(Cmd) []string {
	// Windows tools need SystemRoot and friends; the service's own
	// environment is already the machine's.
	return os.Environ()
}

// runAs is not supported: per-user stores on Windows live in the registry
// and are not managed by running tools as the user.
func runAs(*exec.Cmd, *User) error {
	return errors.New("platform: running a command as another user is not supported on Windows")
}
