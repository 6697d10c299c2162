package filestamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStampTellsVersionsApart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cert9.db")
	require.NoError(t, os.WriteFile(p, []byte("one"), 0o600))
	a, err := Of(p)
	require.NoError(t, err)

	again, err := Of(p)
	require.NoError(t, err)
	require.Equal(t, a, again, "an untouched file keeps its stamp")

	// Same size, new time: an in-place rewrite.
	require.NoError(t, os.WriteFile(p, []byte("two"), 0o600))
	require.NoError(t, os.Chtimes(p, a.ModTime.Add(time.Second), a.ModTime.Add(time.Second)))
	b, err := Of(p)
	require.NoError(t, err)
	require.NotEqual(t, a, b)

	// Renamed over, same size and time: only the inode differs.
	q := filepath.Join(dir, "new")
	require.NoError(t, os.WriteFile(q, []byte("two"), 0o600))
	require.NoError(t, os.Chtimes(q, b.ModTime, b.ModTime))
	require.NoError(t, os.Rename(q, p))
	c, err := Of(p)
	require.NoError(t, err)
	if b.Inode != 0 {
		require.NotEqual(t, b, c, "a rename over the file changes the inode")
	}

	_, err = Of(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
