package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// A database made by a certplane before token revocation (schema 1, with a
// token in it) upgrades in place: the token stays live and can be revoked.
func TestUpgradeKeepsTokensLive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "certplane.db")
	for _, stmt := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		sqlite.MigrationsForTest[0],
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO accounts (id, name, created_at, config_created_at, config_updated_at) VALUES ('acct', 'old', 1, 1, 1)`,
		`INSERT INTO tokens (id, account_id, hash, scope, created_at) VALUES ('0123456789abcdef', 'acct', x'00', 'read', 5)`,
	} {
		require.NoError(t, sqlite.ExecForTest(path, stmt))
	}
	db := open(t, path)
	v, err := db.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, sqlite.SchemaVersion, v)
	tok, err := db.Token(ctx, "0123456789abcdef")
	require.NoError(t, err)
	assert.False(t, tok.Revoked(), "an existing token must stay live after the upgrade")
	_, err = db.RevokeToken(ctx, "acct", tok.ID, time.Unix(100, 0))
	require.NoError(t, err)
	tok, err = db.Token(ctx, tok.ID)
	require.NoError(t, err)
	assert.True(t, tok.Revoked())
	// Schema 3 rebuilt tokens to admit the device scope, and gave the old
	// account the default readiness settings.
	require.NoError(t, db.CreateToken(ctx, storage.Token{ID: "fedcba9876543210", AccountID: "acct", Hash: []byte{1}, Scope: storage.ScopeDevice}))
	set, err := db.DeviceSettings(ctx, "acct")
	require.NoError(t, err)
	assert.Equal(t, storage.DefaultDeviceSettings(), set)
}

// A database whose devices were checked in before the count buckets
// (schema 4) gets them filled by migration 5: readiness counts the same.
func TestUpgradeFillsReadinessBuckets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "certplane.db")
	now := time.Date(2026, 12, 4, 12, 30, 0, 0, time.UTC)
	stmts := []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}
	for i := 0; i < 4; i++ {
		stmts = append(stmts, sqlite.MigrationsForTest[i], fmt.Sprintf(`INSERT INTO schema_version (version) VALUES (%d)`, i+1))
	}
	stmts = append(stmts,
		`INSERT INTO accounts (id, name, created_at, config_created_at, config_updated_at) VALUES ('acct', 'old', 1, 1, 1)`,
		`INSERT INTO certificates (id, account_id, type, status, der, fingerprint, issuer_org, issuer_raw, name, created_at, updated_at, uploaded_on, expires_on, sealed_key)
			VALUES ('c1', 'acct', 'gateway_managed', 'available', x'00', 'FP', '', '', '', 1, 1, 0, 0, x'00')`)
	for i, seen := range []time.Time{now, now.Add(-time.Hour), now.Add(-3 * 24 * time.Hour), now.Add(-10 * 24 * time.Hour)} {
		id := fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i)
		stmts = append(stmts,
			fmt.Sprintf(`INSERT INTO devices (account_id, id, secret_hash, hostname, os, os_version, agent_version, synced_at, last_seen, created_at, roots)
				VALUES ('acct', '%s', x'00', 'h', 'linux', '', '', 0, %d, 0, '[]')`, id, seen.UnixNano()),
			fmt.Sprintf(`INSERT INTO device_roots (account_id, device_id, fingerprint, state, last_seen, not_ready)
				VALUES ('acct', '%s', 'FP', %d, %d, '[]')`, id, []int{2, 1, 2, 2}[i], seen.UnixNano()))
	}
	for _, stmt := range stmts {
		require.NoError(t, sqlite.ExecForTest(path, stmt))
	}
	db := open(t, path)
	rc, err := db.Readiness(ctx, storage.ReadinessQuery{AccountID: "acct", Fingerprint: "FP", ActiveSince: now.Add(-7 * 24 * time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, storage.ReadinessCounts{Active: 3, Ready: 2, Partial: 1, StaleExcluded: 1, NotReady: []storage.NotReadyDevice{}}, rc)
}
