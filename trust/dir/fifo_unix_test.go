//go:build unix

package dir

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/trust/trusttest"
)

// TestFIFOIsSkipped: a named pipe called x.pem must not hang List (the
// test would block forever if it did).
func TestFIFOIsSkipped(t *testing.T) {
	d := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(d, "trap.pem"), 0o644))
	ca := trusttest.NewCA(t)
	write(t, d, "ok.pem", ca.PEM())
	inv, err := New(d).List(context.Background())
	require.NoError(t, err)
	require.Len(t, inv.Entries, 1)
	assert.Equal(t, ca.FP, inv.Entries[0].FP)
}
