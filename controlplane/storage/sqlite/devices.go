package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certagent/certagent/controlplane/storage"
)

const deviceCols = `id, account_id, hostname, os, os_version, agent_version, synced_at, last_seen, created_at`

func scanDevice(row interface{ Scan(...any) error }, extra ...any) (storage.Device, error) {
	var d storage.Device
	var synced, seen, created int64
	dest := append([]any{&d.ID, &d.AccountID, &d.Hostname, &d.OS, &d.OSVersion, &d.AgentVersion, &synced, &seen, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, storage.ErrNotFound
		}
		return d, err
	}
	d.SyncedAt, d.LastSeen, d.CreatedAt = storage.DecodeTime(synced), storage.DecodeTime(seen), storage.DecodeTime(created)
	return d, nil
}

// SaveDevice implements storage.DeviceBackend.
func (d *DB) SaveDevice(ctx context.Context, dev storage.Device, rows []storage.DeviceRoot, verify func([]byte) error, register func() error) (bool, error) {
	roots, err := json.Marshal(dev.Roots)
	if err != nil {
		return false, fmt.Errorf("storage/sqlite: save device: encode roots: %w", err)
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("storage/sqlite: save device: begin: %w", err)
	}
	defer tx.Rollback()
	var stored []byte
	var oldSeen int64
	var oldRows []storage.DeviceRoot
	created := false
	err = tx.QueryRowContext(ctx, `SELECT secret_hash, last_seen FROM devices WHERE account_id = ? AND id = ?`, dev.AccountID, dev.ID).Scan(&stored, &oldSeen)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := register(); err != nil {
			return false, err
		}
		created = true
		_, err = tx.ExecContext(ctx, `INSERT INTO devices (`+deviceCols+`, secret_hash, roots) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			dev.ID, dev.AccountID, dev.Hostname, dev.OS, dev.OSVersion, dev.AgentVersion,
			storage.EncodeTime(dev.SyncedAt), storage.EncodeTime(dev.LastSeen), storage.EncodeTime(dev.CreatedAt), dev.SecretHash, string(roots))
		if isForeignKey(err) {
			return false, storage.ErrNotFound
		}
		if err != nil {
			return false, fmt.Errorf("storage/sqlite: insert device: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("storage/sqlite: read device: %w", err)
	default:
		if err := verify(stored); err != nil {
			return false, err
		}
		if oldRows, err = summaryRows(ctx, tx, dev.AccountID, dev.ID); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET hostname = ?, os = ?, os_version = ?, agent_version = ?,
			synced_at = ?, last_seen = ?, roots = ? WHERE account_id = ? AND id = ?`,
			dev.Hostname, dev.OS, dev.OSVersion, dev.AgentVersion, storage.EncodeTime(dev.SyncedAt),
			storage.EncodeTime(dev.LastSeen), string(roots), dev.AccountID, dev.ID); err != nil {
			return false, fmt.Errorf("storage/sqlite: update device: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_roots WHERE account_id = ? AND device_id = ?`, dev.AccountID, dev.ID); err != nil {
			return false, fmt.Errorf("storage/sqlite: clear device roots: %w", err)
		}
	}
	if len(rows) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO device_roots (account_id, device_id, fingerprint, state, last_seen, not_ready) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return false, fmt.Errorf("storage/sqlite: device roots: %w", err)
		}
		defer st.Close()
		seen := storage.EncodeTime(dev.LastSeen)
		for _, r := range rows {
			nr, err := json.Marshal(r.NotReady)
			if err != nil {
				return false, fmt.Errorf("storage/sqlite: device roots: %w", err)
			}
			if _, err := st.ExecContext(ctx, dev.AccountID, dev.ID, r.Fingerprint, int(r.State), seen, string(nr)); err != nil {
				return false, fmt.Errorf("storage/sqlite: insert device root: %w", err)
			}
		}
	}
	seen := storage.EncodeTime(dev.LastSeen)
	if err := applyBuckets(ctx, tx, dev.AccountID, storage.BucketDeltas(!created, oldSeen, oldRows, true, seen, rows)); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("storage/sqlite: save device: commit: %w", err)
	}
	return created, nil
}

// Device implements storage.DeviceBackend.
func (d *DB) Device(ctx context.Context, accountID, id string) (storage.Device, error) {
	var roots string
	dev, err := scanDevice(d.r.QueryRowContext(ctx, `SELECT `+deviceCols+`, roots FROM devices WHERE account_id = ? AND id = ?`, accountID, id), &roots)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return dev, err
		}
		return dev, fmt.Errorf("storage/sqlite: device: %w", err)
	}
	if err := json.Unmarshal([]byte(roots), &dev.Roots); err != nil {
		return dev, fmt.Errorf("storage/sqlite: device %s: roots: %w", id, err)
	}
	return dev, nil
}

// Devices implements storage.DeviceBackend.
func (d *DB) Devices(ctx context.Context, q storage.DeviceQuery) ([]storage.Device, int, error) {
	where := `WHERE account_id = ?`
	args := []any{q.AccountID}
	if q.Stale != nil {
		if *q.Stale {
			where += ` AND last_seen < ?`
		} else {
			where += ` AND last_seen >= ?`
		}
		args = append(args, storage.EncodeTime(q.ActiveSince))
	}
	tx, err := d.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("storage/sqlite: devices: begin: %w", err)
	}
	defer tx.Rollback()
	all, err := countDevices(ctx, tx, q.AccountID, 0)
	if err != nil {
		return nil, 0, err
	}
	total := all
	if q.Stale != nil {
		active, err := countDevices(ctx, tx, q.AccountID, storage.EncodeTime(q.ActiveSince))
		if err != nil {
			return nil, 0, err
		}
		total = active
		if *q.Stale {
			total = all - active
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices `+where+` ORDER BY last_seen DESC, id LIMIT ? OFFSET ?`,
		append(args, q.Limit, q.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("storage/sqlite: devices: %w", err)
	}
	defer rows.Close()
	out := []storage.Device{}
	for rows.Next() {
		dev, err := scanDevice(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("storage/sqlite: devices: %w", err)
		}
		out = append(out, dev)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("storage/sqlite: devices: %w", err)
	}
	return out, total, nil
}

// DeleteDevice implements storage.DeviceBackend.
func (d *DB) DeleteDevice(ctx context.Context, accountID, id string) (storage.Device, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return storage.Device{}, fmt.Errorf("storage/sqlite: delete device: begin: %w", err)
	}
	defer tx.Rollback()
	rows, err := summaryRows(ctx, tx, accountID, id)
	if err != nil {
		return storage.Device{}, err
	}
	dev, err := scanDevice(tx.QueryRowContext(ctx, `DELETE FROM devices WHERE account_id = ? AND id = ? RETURNING `+deviceCols, accountID, id))
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return dev, err
		}
		return dev, fmt.Errorf("storage/sqlite: delete device: %w", err)
	}
	if err := applyBuckets(ctx, tx, accountID, storage.BucketDeltas(true, storage.EncodeTime(dev.LastSeen), rows, false, 0, nil)); err != nil {
		return dev, err
	}
	if err := tx.Commit(); err != nil {
		return dev, fmt.Errorf("storage/sqlite: delete device: commit: %w", err)
	}
	return dev, nil
}

// summaryRows reads a device's counted summary rows (partial and ready).
func summaryRows(ctx context.Context, tx *sql.Tx, accountID, id string) ([]storage.DeviceRoot, error) {
	rows, err := tx.QueryContext(ctx, `SELECT fingerprint, state FROM device_roots WHERE account_id = ? AND device_id = ? AND state > 0`, accountID, id)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: device roots: %w", err)
	}
	defer rows.Close()
	var out []storage.DeviceRoot
	for rows.Next() {
		var r storage.DeviceRoot
		var st int
		if err := rows.Scan(&r.Fingerprint, &st); err != nil {
			return nil, fmt.Errorf("storage/sqlite: device roots: %w", err)
		}
		r.State = storage.Readiness(st)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage/sqlite: device roots: %w", err)
	}
	return out, nil
}

// applyBuckets applies count changes, in the order given.
func applyBuckets(ctx context.Context, tx *sql.Tx, accountID string, ds []storage.BucketDelta) error {
	for _, b := range ds {
		var err error
		if b.Fingerprint == "" {
			_, err = tx.ExecContext(ctx, `INSERT INTO device_buckets (account_id, hour, devices) VALUES (?, ?, ?)
				ON CONFLICT (account_id, hour) DO UPDATE SET devices = devices + excluded.devices`, accountID, b.Hour, b.Delta)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO root_buckets (account_id, fingerprint, state, hour, devices) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (account_id, fingerprint, state, hour) DO UPDATE SET devices = devices + excluded.devices`,
				accountID, b.Fingerprint, int(b.State), b.Hour, b.Delta)
		}
		if err != nil {
			return fmt.Errorf("storage/sqlite: count buckets: %w", err)
		}
	}
	return nil
}

// countDevices counts the account's devices last seen at or after since
// (0: all): whole buckets after since's, plus an exact count inside it.
func countDevices(ctx context.Context, tx *sql.Tx, accountID string, since int64) (int, error) {
	var full, edge int
	h := storage.Bucket(since)
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(devices), 0) FROM device_buckets WHERE account_id = ? AND hour > ?`, accountID, h).Scan(&full); err != nil {
		return 0, fmt.Errorf("storage/sqlite: count devices: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE account_id = ? AND last_seen >= ? AND last_seen < ?`,
		accountID, since, (h+1)*int64(storage.BucketWidth)).Scan(&edge); err != nil {
		return 0, fmt.Errorf("storage/sqlite: count devices: %w", err)
	}
	return full + edge, nil
}

// countRoot counts the account's devices holding fp in state, last seen
// at or after since, the same way.
func countRoot(ctx context.Context, tx *sql.Tx, accountID, fp string, state storage.Readiness, since int64) (int, error) {
	var full, edge int
	h := storage.Bucket(since)
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(devices), 0) FROM root_buckets WHERE account_id = ? AND fingerprint = ? AND state = ? AND hour > ?`,
		accountID, fp, int(state), h).Scan(&full); err != nil {
		return 0, fmt.Errorf("storage/sqlite: count %s: %w", state, err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM device_roots WHERE account_id = ? AND fingerprint = ? AND state = ? AND last_seen >= ? AND last_seen < ?`,
		accountID, fp, int(state), since, (h+1)*int64(storage.BucketWidth)).Scan(&edge); err != nil {
		return 0, fmt.Errorf("storage/sqlite: count %s: %w", state, err)
	}
	return full + edge, nil
}

// Readiness implements storage.DeviceBackend.
func (d *DB) Readiness(ctx context.Context, q storage.ReadinessQuery) (storage.ReadinessCounts, error) {
	var rc storage.ReadinessCounts
	tx, err := d.r.BeginTx(ctx, nil)
	if err != nil {
		return rc, fmt.Errorf("storage/sqlite: readiness: begin: %w", err)
	}
	defer tx.Rollback()
	active := storage.EncodeTime(q.ActiveSince)
	total, err := countDevices(ctx, tx, q.AccountID, 0)
	if err != nil {
		return rc, err
	}
	if rc.Active, err = countDevices(ctx, tx, q.AccountID, active); err != nil {
		return rc, err
	}
	rc.StaleExcluded = total - rc.Active
	if rc.Ready, err = countRoot(ctx, tx, q.AccountID, q.Fingerprint, storage.Ready, active); err != nil {
		return rc, err
	}
	if rc.Partial, err = countRoot(ctx, tx, q.AccountID, q.Fingerprint, storage.Partial, active); err != nil {
		return rc, err
	}
	rc.Missing = rc.Active - rc.Ready - rc.Partial
	rc.NotReady = []storage.NotReadyDevice{}
	if q.Limit <= 0 || rc.Ready == rc.Active {
		return rc, nil
	}
	// Partial first, then missing with a row, then devices not seen since
	// the certificate appeared; each part streams from its own index.
	rows, err := tx.QueryContext(ctx, `
		SELECT * FROM (SELECT r.device_id, d.hostname, r.last_seen, r.not_ready FROM device_roots r
			JOIN devices d ON d.account_id = r.account_id AND d.id = r.device_id
			WHERE r.account_id = ?1 AND r.fingerprint = ?2 AND r.state = 1 AND r.last_seen >= ?3
			ORDER BY r.last_seen DESC)
		UNION ALL
		SELECT * FROM (SELECT r.device_id, d.hostname, r.last_seen, r.not_ready FROM device_roots r
			JOIN devices d ON d.account_id = r.account_id AND d.id = r.device_id
			WHERE r.account_id = ?1 AND r.fingerprint = ?2 AND r.state = 0 AND r.last_seen >= ?3
			ORDER BY r.last_seen DESC)
		UNION ALL
		SELECT * FROM (SELECT d.id, d.hostname, d.last_seen, '["*"]' FROM devices d
			WHERE d.account_id = ?1 AND d.last_seen >= ?3 AND d.last_seen < ?4
			AND NOT EXISTS (SELECT 1 FROM device_roots r WHERE r.account_id = d.account_id AND r.device_id = d.id AND r.fingerprint = ?2)
			ORDER BY d.last_seen DESC)
		LIMIT ?5 OFFSET ?6`,
		q.AccountID, q.Fingerprint, active, storage.EncodeTime(q.Unsummarized), q.Limit, q.Offset)
	if err != nil {
		return rc, fmt.Errorf("storage/sqlite: readiness: not ready: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n storage.NotReadyDevice
		var seen int64
		var missing string
		if err := rows.Scan(&n.DeviceID, &n.Hostname, &seen, &missing); err != nil {
			return rc, fmt.Errorf("storage/sqlite: readiness: not ready: %w", err)
		}
		n.LastSeen = storage.DecodeTime(seen)
		if err := json.Unmarshal([]byte(missing), &n.Missing); err != nil {
			return rc, fmt.Errorf("storage/sqlite: readiness: device %s: %w", n.DeviceID, err)
		}
		rc.NotReady = append(rc.NotReady, n)
	}
	if err := rows.Err(); err != nil {
		return rc, fmt.Errorf("storage/sqlite: readiness: not ready: %w", err)
	}
	return rc, nil
}

// PurgeDevices implements storage.DeviceBackend. The cut is rounded down
// to a bucket boundary, so whole buckets go with their devices.
func (d *DB) PurgeDevices(ctx context.Context, before time.Time) (int, error) {
	h := storage.Bucket(storage.EncodeTime(before))
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("storage/sqlite: purge devices: begin: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE last_seen < ?`, h*int64(storage.BucketWidth))
	if err != nil {
		return 0, fmt.Errorf("storage/sqlite: purge devices: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("storage/sqlite: purge devices: %w", err)
	}
	for _, q := range []string{`DELETE FROM device_buckets WHERE hour < ?`, `DELETE FROM root_buckets WHERE hour < ?`} {
		if _, err := tx.ExecContext(ctx, q, h); err != nil {
			return 0, fmt.Errorf("storage/sqlite: purge buckets: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("storage/sqlite: purge devices: commit: %w", err)
	}
	return int(n), nil
}

// DeviceSettings implements storage.DeviceBackend.
func (d *DB) DeviceSettings(ctx context.Context, accountID string) (storage.DeviceSettings, error) {
	var s storage.DeviceSettings
	err := d.r.QueryRowContext(ctx, `SELECT min_readiness, device_active_days FROM accounts WHERE id = ?`, accountID).Scan(&s.MinReadiness, &s.DeviceActiveDays)
	if errors.Is(err, sql.ErrNoRows) {
		return s, storage.ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("storage/sqlite: device settings: %w", err)
	}
	return s, nil
}

// SetDeviceSettings implements storage.DeviceBackend.
func (d *DB) SetDeviceSettings(ctx context.Context, accountID string, s storage.DeviceSettings) error {
	res, err := d.w.ExecContext(ctx, `UPDATE accounts SET min_readiness = ?, device_active_days = ? WHERE id = ?`, s.MinReadiness, s.DeviceActiveDays, accountID)
	if err != nil {
		return fmt.Errorf("storage/sqlite: set device settings: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("storage/sqlite: set device settings: %w", err)
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}
