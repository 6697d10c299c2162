package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteIfChanged(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.pem")

	wrote, err := WriteIfChanged(p, []byte("a"), 0o644)
	require.NoError(t, err)
	require.True(t, wrote, "first write")

	st1, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st1.Mode().Perm())

	wrote, err = WriteIfChanged(p, []byte("a"), 0o644)
	require.NoError(t, err)
	require.False(t, wrote, "same content and mode must not be rewritten")

	wrote, err = WriteIfChanged(p, []byte("a"), 0o600)
	require.NoError(t, err)
	require.True(t, wrote, "mode change must rewrite")

	wrote, err = WriteIfChanged(p, []byte("b"), 0o600)
	require.NoError(t, err)
	require.True(t, wrote)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "b", string(got))

	left, err := filepath.Glob(filepath.Join(dir, ".*tmp-*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary files left behind")

	require.NoError(t, Remove(p))
	require.NoError(t, Remove(p), "removing a missing file is not an error")
}
