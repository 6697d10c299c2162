//go:build !unix

package nstest

import "os/exec"

// setCredential is a no-op where processes have no uid.
func setCredential(*exec.Cmd, int, int) {}
