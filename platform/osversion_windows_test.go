package platform

import (
	"strings"
	"testing"
)

// TestOSVersionFromTheRegistry reads the real CurrentVersion key.
func TestOSVersionFromTheRegistry(t *testing.T) {
	got := OSVersion()
	t.Logf("OSVersion() = %q", got)
	if !strings.Contains(got, "Windows") || !strings.Contains(got, "(build ") {
		t.Errorf("got %q, want a Windows release with its build", got)
	}
}
