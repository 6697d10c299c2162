// Package testenv decides, in one place, what a test does when the machine
// lacks something it needs (a tool, root, a database): it skips, except under
// CERTAGENT_E2E=1 (set by .ci/run), where a skip would let CI pass without
// running what it was meant to run, so it fails instead.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// EnvE2E names the variable that turns skips into failures.
const EnvE2E = "CERTAGENT_E2E"

// E2E reports whether CERTAGENT_E2E=1 is set: skips become failures.
func E2E() bool { return os.Getenv(EnvE2E) == "1" }

// Skipf skips t, or fails it under CERTAGENT_E2E=1.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if E2E() {
		t.Fatalf("%s (and %s=1 forbids skipping)", msg, EnvE2E)
	}
	t.Skip(msg)
}

// RequireTool returns the path of the executable name (a command looked up
// in PATH, or a path), or skips t (fails it under CERTAGENT_E2E=1) naming
// the Debian package pkg that provides it.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "%s not found: install %s (scripts/install-deps.sh)", name, pkg)
	}
	return p
}

// RequireRoot skips t (fails it under CERTAGENT_E2E=1) unless the test runs
// as root; why says what root is needed for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root: %s", why)
	}
}

// RequireEnv returns the value of the environment variable name, or skips t
// (fails it under CERTAGENT_E2E=1) with hint, which says how to set it.
func RequireEnv(t testing.TB, name, hint string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Skipf(t, "%s is not set: %s", name, hint)
	}
	return v
}
