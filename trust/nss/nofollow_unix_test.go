//go:build unix

package nss

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A profiles.ini that is a FIFO or a link is never read (a FIFO would hang
// a root daemon's discovery; a link could point at a root-only file), and a
// regular one is.
func TestFirefoxProfilesReadsOnlyRegularFiles(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "real.ini"), []byte("[Profile0]\nPath=p.default\n"), 0o644))

	fifo := filepath.Join(root, "fifo")
	require.NoError(t, os.MkdirAll(fifo, 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(fifo, "profiles.ini"), 0o644))
	assert.Empty(t, firefoxProfiles(fifo), "a FIFO is skipped, without blocking")

	link := filepath.Join(root, "link")
	require.NoError(t, os.MkdirAll(link, 0o755))
	require.NoError(t, os.Symlink(filepath.Join(root, "real.ini"), filepath.Join(link, "profiles.ini")))
	assert.Empty(t, firefoxProfiles(link), "a symlink is not followed")

	regular := filepath.Join(root, "regular")
	require.NoError(t, os.MkdirAll(regular, 0o755))
	b, err := os.ReadFile(filepath.Join(root, "real.ini"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(regular, "profiles.ini"), b, 0o644))
	assert.Equal(t, []string{filepath.Join(regular, "p.default")}, firefoxProfiles(regular))
}
