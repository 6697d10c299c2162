package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
	"github.com/certagent/certagent/controlplane/storage/postgres"
	"github.com/certagent/certagent/controlplane/storage/postgres/pgtest"
	"github.com/certagent/certagent/controlplane/storage/sqlite"
	"github.com/certagent/certagent/controlplane/storage/storagetest"
)

// benchDevices is the fleet size the readiness target (≤ 50 ms) is for.
const benchDevices = 100_000

// A realistic stored report: two roots, each in system and two users' NSS.
const benchRoots = `[{"fingerprint":"%[1]s","stores":[{"store":"system","state":"trusted"},{"store":"nss","user":"alice","state":"trusted"},{"store":"nss","user":"bob","state":"trusted"}]},` +
	`{"fingerprint":"%[2]s","stores":[{"store":"system","state":"trusted"},{"store":"nss","user":"alice","state":"trusted"},{"store":"nss","user":"bob","state":"trusted"}]}]`

type readinessFleet struct {
	store   *storage.Rules
	account string
	// inUse is held by every device; next by 96% (1% partial, 3% missing);
	// fresh was created after every check-in, so no device has a row for it.
	inUse, next, fresh string
	// bytesPerDevice is what the device tables and their indexes take.
	bytesPerDevice float64
}

// seedReadiness builds an account with benchDevices devices: 90% active
// (seen within 7 days), 10% stale. Rows are written with one set-based
// INSERT per table, exactly as check-ins would have left them.
func seedReadiness(b *testing.B, kind string) *readinessFleet {
	ctx := context.Background()
	clock := storagetest.NewClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	var backend storage.Backend
	var exec func(q string) error
	var size func() float64
	if kind == "sqlite" {
		path := filepath.Join(b.TempDir(), "c.db")
		db, err := sqlite.Open(ctx, path)
		require.NoError(b, err)
		backend = db
		raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		require.NoError(b, err)
		b.Cleanup(func() { raw.Close() })
		exec = func(q string) error { _, err := raw.Exec(q); return err }
		size = func() float64 {
			require.NoError(b, exec(`PRAGMA wal_checkpoint(TRUNCATE)`))
			st, err := os.Stat(path)
			require.NoError(b, err)
			return float64(st.Size())
		}
	} else {
		pg, err := postgres.Open(ctx, pgtest.DSN(b))
		require.NoError(b, err)
		backend = pg
		exec = func(q string) error { _, err := pg.Pool().Exec(ctx, q); return err }
		size = func() float64 {
			var n int64
			require.NoError(b, pg.Pool().QueryRow(ctx, `select pg_total_relation_size('devices') + pg_total_relation_size('device_roots')
				+ pg_total_relation_size('device_buckets') + pg_total_relation_size('root_buckets')`).Scan(&n))
			return float64(n)
		}
	}
	b.Cleanup(func() { backend.Close() })
	st := storage.New(backend, storage.Options{Now: clock.Now, DeployDelay: time.Minute})
	f := &readinessFleet{store: st, account: storagetest.AccountID()}
	first := storagetest.Cert(api.TypeGatewayManaged)
	_, err := st.CreateAccount(ctx, f.account, "bench", first)
	require.NoError(b, err)
	next := storagetest.Cert(api.TypeGatewayManaged)
	_, err = st.Generate(ctx, f.account, next)
	require.NoError(b, err)
	f.inUse, f.next = first.ID, next.ID
	// The devices checked in after both roots appeared, as in a real fleet.
	clock.Advance(7 * 24 * time.Hour)
	before := size()

	now := clock.Now().UnixNano()
	day := int64(24 * time.Hour)
	roots := fmt.Sprintf(benchRoots, first.Fingerprint, next.Fingerprint)
	// Device i: last seen (i % 10) × 16 hours ago for i%10 < 9 (active,
	// within 6 days), 20 days ago otherwise (stale).
	seen := fmt.Sprintf(`(%d - (CASE WHEN i %% 10 < 9 THEN (i %% 10) * %d ELSE 20 * %d END) - i)`, now, 16*int64(time.Hour), day)
	if kind == "sqlite" {
		require.NoError(b, exec(fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO devices (account_id, id, secret_hash, hostname, os, os_version, agent_version, synced_at, last_seen, created_at, roots)
			SELECT '%s', printf('%%08x-0000-4000-8000-%%012x', i, i), randomblob(32), 'laptop-' || i, 'linux',
				'Debian GNU/Linux 13 (trixie)', '1.4.0', %s, %s, %d, '%s' FROM n`,
			benchDevices-1, f.account, seen, seen, now, roots)))
		for _, c := range []struct {
			fp    string
			state string
		}{
			{first.Fingerprint, `2`},
			{next.Fingerprint, `CASE WHEN i % 100 < 96 THEN 2 WHEN i % 100 < 97 THEN 1 ELSE 0 END`},
		} {
			require.NoError(b, exec(fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
				INSERT INTO device_roots (account_id, device_id, fingerprint, state, last_seen, not_ready)
				SELECT '%s', printf('%%08x-0000-4000-8000-%%012x', i, i), '%s', %s, %s,
					CASE WHEN %s = 2 THEN '[]' ELSE '["nss:bob"]' END FROM n`,
				benchDevices-1, f.account, c.fp, c.state, seen, c.state)))
		}
		require.NoError(b, exec(`ANALYZE`))
	} else {
		require.NoError(b, exec(fmt.Sprintf(`insert into devices (account_id, id, secret_hash, hostname, os, os_version, agent_version, synced_at, last_seen, created_at, roots)
			select '%s', format('%%s-0000-4000-8000-%%s', lpad(to_hex(i), 8, '0'), lpad(to_hex(i), 12, '0')), sha256(i::text::bytea), 'laptop-' || i, 'linux',
				'Debian GNU/Linux 13 (trixie)', '1.4.0', %s, %s, %d, '%s' from generate_series(0, %d) as i`,
			f.account, seen, seen, now, roots, benchDevices-1)))
		for _, c := range []struct {
			fp    string
			state string
		}{
			{first.Fingerprint, `2`},
			{next.Fingerprint, `CASE WHEN i % 100 < 96 THEN 2 WHEN i % 100 < 97 THEN 1 ELSE 0 END`},
		} {
			require.NoError(b, exec(fmt.Sprintf(`insert into device_roots (account_id, device_id, fingerprint, state, last_seen, not_ready)
				select '%s', format('%%s-0000-4000-8000-%%s', lpad(to_hex(i), 8, '0'), lpad(to_hex(i), 12, '0')), '%s', %s, %s,
					CASE WHEN %s = 2 THEN '[]' ELSE '["nss:bob"]' END from generate_series(0, %d) as i`,
				f.account, c.fp, c.state, seen, c.state, benchDevices-1)))
		}
		require.NoError(b, exec(`vacuum analyze devices`))
		require.NoError(b, exec(`vacuum analyze device_roots`))
	}
	// The count buckets check-ins keep, as migration 5 fills them.
	require.NoError(b, exec(`INSERT INTO device_buckets (account_id, hour, devices)
		SELECT account_id, last_seen / 3600000000000, COUNT(*) FROM devices GROUP BY 1, 2`))
	require.NoError(b, exec(`INSERT INTO root_buckets (account_id, fingerprint, state, hour, devices)
		SELECT account_id, fingerprint, state, last_seen / 3600000000000, COUNT(*) FROM device_roots WHERE state > 0 GROUP BY 1, 2, 3, 4`))
	if kind == "sqlite" {
		require.NoError(b, exec(`ANALYZE`))
	} else {
		require.NoError(b, exec(`vacuum analyze device_buckets`))
		require.NoError(b, exec(`vacuum analyze root_buckets`))
	}
	f.bytesPerDevice = (size() - before) / benchDevices
	clock.Advance(time.Hour)
	fresh := storagetest.Cert(api.TypeGatewayManaged)
	_, err = st.Generate(ctx, f.account, fresh)
	require.NoError(b, err)
	f.fresh = fresh.ID
	return f
}

// BenchmarkReadiness100k is one certificate's readiness (counts and the
// first page of not-ready devices) over 100,000 device records, the answer
// behind GET …/readiness and the guard on turning a root on. Target: ≤ 50 ms.
// Compare with BenchmarkList304 (the plain list request) from the same run.
func BenchmarkReadiness100k(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			f := seedReadiness(b, kind)
			for _, c := range []struct{ name, id string }{
				{"in-use-all-ready", f.inUse}, {"next-96pct", f.next}, {"fresh-none", f.fresh},
			} {
				b.Run(c.name, func(b *testing.B) {
					ctx := context.Background()
					_, rc, _, err := f.store.CertReadiness(ctx, f.account, c.id, 0, 20)
					require.NoError(b, err)
					require.Equal(b, benchDevices*9/10, rc.Active, "%+v", rc)
					for b.Loop() {
						if _, _, _, err := f.store.CertReadiness(ctx, f.account, c.id, 0, 20); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed())/1e6/float64(b.N), "ms/readiness")
					b.ReportMetric(f.bytesPerDevice, "B/device")
				})
			}
		})
	}
}
