package platform

import (
	"testing"

	"github.com/certagent/certagent/internal/testenv"
)

// TestOSVersionFromOSRelease reads this machine's os-release.
func TestOSVersionFromOSRelease(t *testing.T) {
	r, err := ReadOSRelease("")
	if err != nil {
		testenv.Skipf(t, "no os-release here: %v", err)
	}
	if got, want := OSVersion(), linuxVersion(r); got != want || got == "" {
		t.Errorf("got %q, want %q (not empty)", got, want)
	}
}
