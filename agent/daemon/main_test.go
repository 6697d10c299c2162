package daemon

import (
	"testing"

	"github.com/certagent/certagent/internal/nstest"
)

// TestMain runs the package's tests in a private mount namespace when
// root, so the system-store test can change the real Debian store.
func TestMain(m *testing.M) { nstest.Main(m, nstest.Config{}) }
