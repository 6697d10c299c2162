package sqlite_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

// Backends with one contract broken each, to prove the conformance suite
// notices: a suite that passes everything proves nothing.

// lyingClaims reports every claim as won, as a backend without the
// conditional UPDATE would.
type lyingClaims struct{ storage.Backend }

func (l lyingClaims) CompleteTransition(ctx context.Context, t storage.Transition, now time.Time) (bool, int64, error) {
	_, rev, err := l.Backend.CompleteTransition(ctx, t, now)
	return err == nil, rev, err
}

// frozenRevision never reports a new revision.
type frozenRevision struct{ storage.Backend }

func (frozenRevision) Revision(context.Context, string) (int64, error) { return 1, nil }

// noInUse forgets to derive in_use from the account.
type noInUse struct{ storage.Backend }

func (n noInUse) Snapshot(ctx context.Context, id string) (storage.Account, []storage.Certificate, error) {
	a, certs, err := n.Backend.Snapshot(ctx, id)
	for i := range certs {
		certs[i].InUse = false
	}
	return a, certs, err
}

var broken = map[string]struct {
	wrap func(storage.Backend) storage.Backend
	// fails names a subtest that must fail.
	fails string
}{
	"lying-claims":    {func(b storage.Backend) storage.Backend { return lyingClaims{b} }, "CompleteOnce"},
	"frozen-revision": {func(b storage.Backend) storage.Backend { return frozenRevision{b} }, "RevisionOnlyOnChange"},
	"no-in-use":       {func(b storage.Backend) storage.Backend { return noInUse{b} }, "InitialCertificate"},
}

// TestBrokenBackendChild runs the suite on the backend named by
// CERTPLANE_BROKEN_BACKEND; it is only meaningful as the child of
// TestSuiteRejectsBrokenBackends.
func TestBrokenBackendChild(t *testing.T) {
	name := os.Getenv("CERTPLANE_BROKEN_BACKEND")
	if name == "" {
		// Only a child process that TestSuiteRejectsBrokenBackends starts does
		// anything here; a plain run returns instead of skipping, so that
		// under CERTAGENT_E2E=1 every reported skip is a real gap.
		return
	}
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return broken[name].wrap(open(t, filepath.Join(t.TempDir(), "certplane.db")))
	})
}

func TestSuiteRejectsBrokenBackends(t *testing.T) {
	for name, b := range broken {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenBackendChild$/^"+b.fails+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CERTPLANE_BROKEN_BACKEND="+name)
			out, err := cmd.CombinedOutput()
			assert.Error(t, err, "the suite passed a backend with %s:\n%s", name, out)
			assert.Contains(t, string(out), "--- FAIL: TestBrokenBackendChild/"+b.fails)
		})
	}
}
