//go:build !windows

package atomicfile

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestWriteLeavesNothingBeside: after a write the directory holds the
// target alone; the private directory is gone again.
func TestWriteLeavesNothingBeside(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		require.NoError(t, Write(filepath.Join(dir, "a.pem"), []byte("x"), 0o644))
	}
	assert.Equal(t, []string{"a.pem"}, names(t, dir))
}

// TestWriteRefusesALinkedTempDir: a link in place of the private directory
// would send our temporary files elsewhere.
func TestWriteRefusesALinkedTempDir(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(dir, TempDirName)))
	err := Write(filepath.Join(dir, "a.pem"), []byte("x"), 0o644)
	require.ErrorContains(t, err, "not a directory")
	assert.Empty(t, names(t, elsewhere))
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, TempDirName)
	require.NoError(t, os.Mkdir(tmp, 0o700))
	plant := func(p string) string {
		require.NoError(t, os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----"), 0o600))
		return p
	}
	oursNew := plant(filepath.Join(tmp, "a.pem.tmp-123"))
	oursOld := plant(filepath.Join(dir, ".a.pem.tmp-456"))
	theirsNew := plant(filepath.Join(tmp, "b.pem.tmp-1"))
	theirsOld := plant(filepath.Join(dir, ".b.pem.tmp-2"))
	notTemp := plant(filepath.Join(dir, ".a.pem.tmp-x"))
	target := plant(filepath.Join(dir, "a.pem"))
	// A write in progress: its file is locked by a live writer.
	live := plant(filepath.Join(tmp, "a.pem.tmp-789"))
	f, err := os.Open(live)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, lockTemp(f))

	removed, err := Sweep(dir, func(b string) bool { return b == "a.pem" })
	require.NoError(t, err)
	sort.Strings(removed)
	assert.Equal(t, []string{oursOld, oursNew}, removed)
	for _, p := range []string{theirsNew, theirsOld, notTemp, target, live} {
		assert.FileExists(t, p)
	}
	f.Close()
	removed, err = Sweep(dir, func(b string) bool { return b == "a.pem" })
	require.NoError(t, err)
	assert.Equal(t, []string{live}, removed, "once its writer is gone, it is a leftover")

	_, err = Sweep(filepath.Join(dir, "missing"), func(string) bool { return true })
	assert.NoError(t, err)
}
