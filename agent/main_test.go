package agent

import (
	"os"
	"testing"
)

// TestMain runs the tests, or, in a process TestKillAtEveryWrite started,
// the one pass it kills.
func TestMain(m *testing.M) {
	if base := os.Getenv(killChildEnv); base != "" {
		os.Exit(killChild(base, os.Getenv(killURLEnv)))
	}
	os.Exit(m.Run())
}
