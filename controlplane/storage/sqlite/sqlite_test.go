package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

func open(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return open(t, filepath.Join(t.TempDir(), "certplane.db"))
	})
}

func TestOpenCreatesPrivateFileAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certplane.db")
	db := open(t, path)
	v, err := db.Version(context.Background())
	require.NoError(t, err)
	assert.Equal(t, sqlite.SchemaVersion, v)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	if os.PathSeparator == '/' {
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}
	// A second process (or restart) opening the same file re-runs nothing.
	db2 := open(t, path)
	v, err = db2.Version(context.Background())
	require.NoError(t, err)
	assert.Equal(t, sqlite.SchemaVersion, v)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certplane.db")
	db := open(t, path)
	require.NoError(t, db.Close())
	raw, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	raw.Close()
	// Simulate a database migrated by a future certplane.
	require.NoError(t, sqlite.ExecForTest(path, `INSERT INTO schema_version (version) VALUES (999)`))
	_, err = sqlite.Open(context.Background(), path)
	require.ErrorContains(t, err, "newer than this certplane")
}

func TestOpenRejectsBadPath(t *testing.T) {
	for _, p := range []string{"", "x.db?_pragma=foo", "a#b"} {
		_, err := sqlite.Open(context.Background(), p)
		assert.Error(t, err, "path %q", p)
	}
}
