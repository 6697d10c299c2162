package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certagent/certagent/controlplane/storage"
)

const deviceCols = `id, account_id, hostname, os, os_version, agent_version, synced_at, last_seen, created_at`

func scanDevice(row pgx.Row, extra ...any) (storage.Device, error) {
	var d storage.Device
	var synced, seen, created int64
	dest := append([]any{&d.ID, &d.AccountID, &d.Hostname, &d.OS, &d.OSVersion, &d.AgentVersion, &synced, &seen, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return d, storage.ErrNotFound
		}
		return d, err
	}
	d.SyncedAt, d.LastSeen, d.CreatedAt = storage.DecodeTime(synced), storage.DecodeTime(seen), storage.DecodeTime(created)
	return d, nil
}

// SaveDevice implements storage.DeviceBackend. The device row is locked
// (FOR UPDATE) while its secret is checked; two first check-ins of one id
// race on the primary key, and the loser is told the secret is wrong.
func (b *Backend) SaveDevice(ctx context.Context, dev storage.Device, rows []storage.DeviceRoot, verify func([]byte) error, register func() error) (bool, error) {
	roots, err := json.Marshal(dev.Roots)
	if err != nil {
		return false, fmt.Errorf("storage/postgres: save device: encode roots: %w", err)
	}
	created := false
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var stored []byte
		var oldSeen int64
		var oldRows []storage.DeviceRoot
		err := tx.QueryRow(ctx, `select secret_hash, last_seen from devices where account_id = $1 and id = $2 for update`, dev.AccountID, dev.ID).Scan(&stored, &oldSeen)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := register(); err != nil {
				return err
			}
			created = true
			_, err = tx.Exec(ctx, `insert into devices (`+deviceCols+`, secret_hash, roots) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				dev.ID, dev.AccountID, dev.Hostname, dev.OS, dev.OSVersion, dev.AgentVersion,
				storage.EncodeTime(dev.SyncedAt), storage.EncodeTime(dev.LastSeen), storage.EncodeTime(dev.CreatedAt), dev.SecretHash, string(roots))
			switch {
			case isForeignKeyViolation(err):
				return storage.ErrNotFound
			case isUniqueViolation(err):
				return storage.ErrDeviceSecret
			case err != nil:
				return err
			}
		case err != nil:
			return err
		default:
			if err := verify(stored); err != nil {
				return err
			}
			if oldRows, err = summaryRows(ctx, tx, dev.AccountID, dev.ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `update devices set hostname = $1, os = $2, os_version = $3, agent_version = $4,
				synced_at = $5, last_seen = $6, roots = $7 where account_id = $8 and id = $9`,
				dev.Hostname, dev.OS, dev.OSVersion, dev.AgentVersion, storage.EncodeTime(dev.SyncedAt),
				storage.EncodeTime(dev.LastSeen), string(roots), dev.AccountID, dev.ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `delete from device_roots where account_id = $1 and device_id = $2`, dev.AccountID, dev.ID); err != nil {
				return err
			}
		}
		seen := storage.EncodeTime(dev.LastSeen)
		if err := applyBuckets(ctx, tx, dev.AccountID, storage.BucketDeltas(!created, oldSeen, oldRows, true, seen, rows)); err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		fps := make([]string, len(rows))
		states := make([]int16, len(rows))
		notReady := make([]string, len(rows))
		for i, r := range rows {
			nr, err := json.Marshal(r.NotReady)
			if err != nil {
				return err
			}
			fps[i], states[i], notReady[i] = r.Fingerprint, int16(r.State), string(nr)
		}
		_, err = tx.Exec(ctx, `insert into device_roots (account_id, device_id, fingerprint, state, last_seen, not_ready)
			select $1, $2, f, s, $3, n from unnest($4::text[], $5::smallint[], $6::text[]) as u(f, s, n)`,
			dev.AccountID, dev.ID, storage.EncodeTime(dev.LastSeen), fps, states, notReady)
		return err
	})
	if err != nil {
		return false, wrap("save device "+dev.ID, err)
	}
	return created, nil
}

// Device implements storage.DeviceBackend.
func (b *Backend) Device(ctx context.Context, accountID, id string) (storage.Device, error) {
	var roots string
	dev, err := scanDevice(b.pool.QueryRow(ctx, `select `+deviceCols+`, roots from devices where account_id = $1 and id = $2`, accountID, id), &roots)
	if err != nil {
		return dev, wrap("device", err)
	}
	if err := json.Unmarshal([]byte(roots), &dev.Roots); err != nil {
		return dev, fmt.Errorf("storage/postgres: device %s: roots: %w", id, err)
	}
	return dev, nil
}

// Devices implements storage.DeviceBackend.
func (b *Backend) Devices(ctx context.Context, q storage.DeviceQuery) ([]storage.Device, int, error) {
	where := `where account_id = $1`
	args := []any{q.AccountID}
	if q.Stale != nil {
		if *q.Stale {
			where += ` and last_seen < $2`
		} else {
			where += ` and last_seen >= $2`
		}
		args = append(args, storage.EncodeTime(q.ActiveSince))
	}
	var total int
	out := []storage.Device{}
	err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		all, err := countDevices(ctx, tx, q.AccountID, 0)
		if err != nil {
			return err
		}
		total = all
		if q.Stale != nil {
			active, err := countDevices(ctx, tx, q.AccountID, storage.EncodeTime(q.ActiveSince))
			if err != nil {
				return err
			}
			total = active
			if *q.Stale {
				total = all - active
			}
		}
		n := len(args)
		rows, err := tx.Query(ctx, fmt.Sprintf(`select `+deviceCols+` from devices `+where+` order by last_seen desc, id limit $%d offset $%d`, n+1, n+2),
			append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			dev, err := scanDevice(rows)
			if err != nil {
				return err
			}
			out = append(out, dev)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, wrap("devices", err)
	}
	return out, total, nil
}

// DeleteDevice implements storage.DeviceBackend.
func (b *Backend) DeleteDevice(ctx context.Context, accountID, id string) (storage.Device, error) {
	var dev storage.Device
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		if dev, err = scanDevice(tx.QueryRow(ctx, `select `+deviceCols+` from devices where account_id = $1 and id = $2 for update`, accountID, id)); err != nil {
			return err
		}
		rows, err := summaryRows(ctx, tx, accountID, id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from devices where account_id = $1 and id = $2`, accountID, id); err != nil {
			return err
		}
		return applyBuckets(ctx, tx, accountID, storage.BucketDeltas(true, storage.EncodeTime(dev.LastSeen), rows, false, 0, nil))
	})
	return dev, wrap("delete device", err)
}

// summaryRows reads a device's counted summary rows (partial and ready).
func summaryRows(ctx context.Context, tx pgx.Tx, accountID, id string) ([]storage.DeviceRoot, error) {
	rows, err := tx.Query(ctx, `select fingerprint, state from device_roots where account_id = $1 and device_id = $2 and state > 0`, accountID, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.DeviceRoot
	for rows.Next() {
		var r storage.DeviceRoot
		var st int16
		if err := rows.Scan(&r.Fingerprint, &st); err != nil {
			return nil, err
		}
		r.State = storage.Readiness(st)
		out = append(out, r)
	}
	return out, rows.Err()
}

// applyBuckets applies count changes in the order given (BucketDeltas'
// total order, so concurrent check-ins lock bucket rows alike).
func applyBuckets(ctx context.Context, tx pgx.Tx, accountID string, ds []storage.BucketDelta) error {
	for _, d := range ds {
		var err error
		if d.Fingerprint == "" {
			_, err = tx.Exec(ctx, `insert into device_buckets (account_id, hour, devices) values ($1, $2, $3)
				on conflict (account_id, hour) do update set devices = device_buckets.devices + excluded.devices`, accountID, d.Hour, d.Delta)
		} else {
			_, err = tx.Exec(ctx, `insert into root_buckets (account_id, fingerprint, state, hour, devices) values ($1, $2, $3, $4, $5)
				on conflict (account_id, fingerprint, state, hour) do update set devices = root_buckets.devices + excluded.devices`,
				accountID, d.Fingerprint, int16(d.State), d.Hour, d.Delta)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countDevices counts the account's devices last seen at or after since
// (0: all): whole buckets after since's, plus an exact count inside it.
func countDevices(ctx context.Context, q querier, accountID string, since int64) (int, error) {
	h := storage.Bucket(since)
	var n int
	err := q.QueryRow(ctx, `select (select coalesce(sum(devices), 0) from device_buckets where account_id = $1 and hour > $2)
		+ (select count(*) from devices where account_id = $1 and last_seen >= $3 and last_seen < $4)`,
		accountID, h, since, (h+1)*int64(storage.BucketWidth)).Scan(&n)
	return n, err
}

// countRoot counts the devices holding fp in state, last seen at or after
// since, the same way.
func countRoot(ctx context.Context, q querier, accountID, fp string, state storage.Readiness, since int64) (int, error) {
	h := storage.Bucket(since)
	var n int
	err := q.QueryRow(ctx, `select (select coalesce(sum(devices), 0) from root_buckets where account_id = $1 and fingerprint = $2 and state = $3 and hour > $4)
		+ (select count(*) from device_roots where account_id = $1 and fingerprint = $2 and state = $3 and last_seen >= $5 and last_seen < $6)`,
		accountID, fp, int16(state), h, since, (h+1)*int64(storage.BucketWidth)).Scan(&n)
	return n, err
}

// Readiness implements storage.DeviceBackend.
func (b *Backend) Readiness(ctx context.Context, q storage.ReadinessQuery) (storage.ReadinessCounts, error) {
	var rc storage.ReadinessCounts
	active := storage.EncodeTime(q.ActiveSince)
	err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		total, err := countDevices(ctx, tx, q.AccountID, 0)
		if err != nil {
			return err
		}
		if rc.Active, err = countDevices(ctx, tx, q.AccountID, active); err != nil {
			return err
		}
		rc.StaleExcluded = total - rc.Active
		if rc.Ready, err = countRoot(ctx, tx, q.AccountID, q.Fingerprint, storage.Ready, active); err != nil {
			return err
		}
		if rc.Partial, err = countRoot(ctx, tx, q.AccountID, q.Fingerprint, storage.Partial, active); err != nil {
			return err
		}
		rc.Missing = rc.Active - rc.Ready - rc.Partial
		rc.NotReady = []storage.NotReadyDevice{}
		if q.Limit <= 0 || rc.Ready == rc.Active {
			return nil
		}
		// Partial first, then missing with a row, then devices not seen
		// since the certificate appeared. Each part is its own query with
		// its own LIMIT, so the planner streams it from its index (under
		// one UNION it built a hash anti-join over every device).
		parts := []string{
			`select r.device_id, d.hostname, r.last_seen, r.not_ready from device_roots r
				join devices d on d.account_id = r.account_id and d.id = r.device_id
				where r.account_id = $1 and r.fingerprint = $2 and r.state = 1 and r.last_seen >= $3 and $4::bigint = $4
				order by r.last_seen desc limit $5`,
			`select r.device_id, d.hostname, r.last_seen, r.not_ready from device_roots r
				join devices d on d.account_id = r.account_id and d.id = r.device_id
				where r.account_id = $1 and r.fingerprint = $2 and r.state = 0 and r.last_seen >= $3 and $4::bigint = $4
				order by r.last_seen desc limit $5`,
			`select d.id, d.hostname, d.last_seen, '["*"]' from devices d
				where d.account_id = $1 and d.last_seen >= $3 and d.last_seen < $4
				and not exists (select 1 from device_roots r where r.account_id = d.account_id and r.device_id = d.id and r.fingerprint = $2)
				order by d.last_seen desc limit $5`,
		}
		skip, need := q.Offset, q.Limit
		for _, part := range parts {
			if need == 0 {
				break
			}
			rows, err := tx.Query(ctx, part, q.AccountID, q.Fingerprint, active, storage.EncodeTime(q.Unsummarized), skip+need)
			if err != nil {
				return err
			}
			got := 0
			for rows.Next() {
				var n storage.NotReadyDevice
				var seen int64
				var missing string
				if err := rows.Scan(&n.DeviceID, &n.Hostname, &seen, &missing); err != nil {
					rows.Close()
					return err
				}
				got++
				if got <= skip {
					continue
				}
				n.LastSeen = storage.DecodeTime(seen)
				if err := json.Unmarshal([]byte(missing), &n.Missing); err != nil {
					rows.Close()
					return fmt.Errorf("storage/postgres: readiness: device %s: %w", n.DeviceID, err)
				}
				rc.NotReady = append(rc.NotReady, n)
				need--
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if got < skip {
				skip -= got
			} else {
				skip = 0
			}
		}
		return nil
	})
	if err != nil {
		return storage.ReadinessCounts{}, wrap("readiness", err)
	}
	return rc, nil
}

// PurgeDevices implements storage.DeviceBackend. The cut is rounded down
// to a bucket boundary, so whole buckets go with their devices.
func (b *Backend) PurgeDevices(ctx context.Context, before time.Time) (int, error) {
	h := storage.Bucket(storage.EncodeTime(before))
	var n int
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `delete from devices where last_seen < $1`, h*int64(storage.BucketWidth))
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		if _, err := tx.Exec(ctx, `delete from device_buckets where hour < $1`, h); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `delete from root_buckets where hour < $1`, h)
		return err
	})
	if err != nil {
		return 0, wrap("purge devices", err)
	}
	return n, nil
}

// DeviceSettings implements storage.DeviceBackend.
func (b *Backend) DeviceSettings(ctx context.Context, accountID string) (storage.DeviceSettings, error) {
	var s storage.DeviceSettings
	err := b.pool.QueryRow(ctx, `select min_readiness, device_active_days from accounts where id = $1`, accountID).Scan(&s.MinReadiness, &s.DeviceActiveDays)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, storage.ErrNotFound
	}
	return s, wrap("device settings", err)
}

// SetDeviceSettings implements storage.DeviceBackend.
func (b *Backend) SetDeviceSettings(ctx context.Context, accountID string, s storage.DeviceSettings) error {
	tag, err := b.pool.Exec(ctx, `update accounts set min_readiness = $1, device_active_days = $2 where id = $3`, s.MinReadiness, s.DeviceActiveDays, accountID)
	if err != nil {
		return wrap("set device settings", err)
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}
