// Package sqlite is certplane's embedded storage backend: SQLite through the
// pure-Go modernc.org/sqlite driver, so certplane builds without cgo.
//
// Writes go through one connection whose transactions begin IMMEDIATE: a
// writer takes SQLite's database-wide write lock before reading anything,
// which is what makes the lifecycle rules race-free between goroutines and
// between processes sharing the file (busy_timeout makes the others wait).
// Reads use a separate pool and, under WAL, never block on the writer.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a storage.Backend on one SQLite file.
type DB struct {
	w *sql.DB // single connection, BEGIN IMMEDIATE
	r *sql.DB // readers

	// Prepared once on r: the hot reads of every API call (token, revision,
	// list) would otherwise spend a third of their time in SQLite's parser.
	stmtRevision, stmtToken, stmtAccount, stmtCerts *sql.Stmt

	// shm is the WAL-index file, read by Stamp; nil if it could not be
	// opened.
	shm *os.File
}

var _ storage.Backend = (*DB)(nil)

// Open opens (creating it 0600 if needed) and migrates the database at path.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("storage/sqlite: path %q: must be a plain file path", path)
	}
	// The file holds sealed keys and token hashes: create it private
	// before SQLite does (SQLite gives its -wal and -shm files the same mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: create %s: %w", path, err)
	}
	f.Close()
	pragmas := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&"+pragmas)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("storage/sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	d := &DB{w: w, r: r}
	if err := d.migrate(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("storage/sqlite: migrate %s: %w", path, err)
	}
	if err := d.prepare(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("storage/sqlite: prepare: %w", err)
	}
	d.openShm(path)
	return d, nil
}

func (d *DB) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&d.stmtRevision, `SELECT revision FROM accounts WHERE id = ?`},
		{&d.stmtToken, `SELECT id, account_id, hash, scope, created_at, revoked_at FROM tokens WHERE id = ?`},
		{&d.stmtAccount, `SELECT ` + accountCols + ` FROM accounts WHERE id = ?`},
		{&d.stmtCerts, `SELECT ` + certCols + certFrom + `WHERE c.account_id = ? ORDER BY c.created_at, c.id`},
	} {
		st, err := d.r.PrepareContext(ctx, p.q)
		if err != nil {
			return err
		}
		*p.dst = st
	}
	return nil
}

// Close closes both pools.
func (d *DB) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{d.stmtRevision, d.stmtToken, d.stmtAccount, d.stmtCerts} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if d.shm != nil {
		errs = append(errs, d.shm.Close())
	}
	return errors.Join(append(errs, d.w.Close(), d.r.Close())...)
}

// migrations are applied in order; entry i brings the schema to version i+1.
// Never edit a released entry: append a new one.
var migrations = []string{
	`CREATE TABLE accounts (
		id                TEXT PRIMARY KEY,
		name              TEXT NOT NULL,
		created_at        INTEGER NOT NULL,
		revision          INTEGER NOT NULL DEFAULT 0,
		in_use_id         TEXT NOT NULL DEFAULT '',
		config_created_at INTEGER NOT NULL,
		config_updated_at INTEGER NOT NULL,
		settings          TEXT
	);
	CREATE TABLE certificates (
		id          TEXT PRIMARY KEY,
		account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		type        TEXT NOT NULL,
		status      TEXT NOT NULL,
		der         BLOB NOT NULL,
		fingerprint TEXT NOT NULL,
		issuer_org  TEXT NOT NULL,
		issuer_raw  TEXT NOT NULL,
		name        TEXT NOT NULL,
		created_at  INTEGER NOT NULL,
		updated_at  INTEGER NOT NULL,
		uploaded_on INTEGER NOT NULL,
		expires_on  INTEGER NOT NULL,
		due_at      INTEGER,
		sealed_key  BLOB NOT NULL
	);
	CREATE INDEX certificates_account ON certificates(account_id, created_at, id);
	CREATE INDEX certificates_due ON certificates(due_at) WHERE due_at IS NOT NULL;
	CREATE TABLE tokens (
		id         TEXT PRIMARY KEY,
		account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		hash       BLOB NOT NULL,
		scope      TEXT NOT NULL CHECK (scope IN ('read', 'write')),
		created_at INTEGER NOT NULL
	);
	CREATE TABLE generations (
		account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		at         INTEGER NOT NULL
	);
	CREATE INDEX generations_account ON generations(account_id, at);`,
	// 2: token revocation (0 = live) and the per-account token listing.
	`ALTER TABLE tokens ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX tokens_account ON tokens(account_id, created_at, id);`,
	// 3: devices, their per-root summaries, readiness settings, and the
	// device token scope (SQLite cannot alter a CHECK: rebuild tokens).
	`CREATE TABLE tokens_v3 (
		id         TEXT PRIMARY KEY,
		account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		hash       BLOB NOT NULL,
		scope      TEXT NOT NULL CHECK (scope IN ('read', 'write', 'device')),
		created_at INTEGER NOT NULL,
		revoked_at INTEGER NOT NULL DEFAULT 0
	);
	INSERT INTO tokens_v3 (id, account_id, hash, scope, created_at, revoked_at)
		SELECT id, account_id, hash, scope, created_at, revoked_at FROM tokens;
	DROP TABLE tokens;
	ALTER TABLE tokens_v3 RENAME TO tokens;
	CREATE INDEX tokens_account ON tokens(account_id, created_at, id);
	ALTER TABLE accounts ADD COLUMN min_readiness REAL NOT NULL DEFAULT 0.95;
	ALTER TABLE accounts ADD COLUMN device_active_days INTEGER NOT NULL DEFAULT 7;
	CREATE TABLE devices (
		account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		id            TEXT NOT NULL,
		secret_hash   BLOB NOT NULL,
		hostname      TEXT NOT NULL,
		os            TEXT NOT NULL,
		os_version    TEXT NOT NULL,
		agent_version TEXT NOT NULL,
		synced_at     INTEGER NOT NULL,
		last_seen     INTEGER NOT NULL,
		created_at    INTEGER NOT NULL,
		roots         TEXT NOT NULL, -- the kept report, JSON
		PRIMARY KEY (account_id, id)
	);
	CREATE INDEX devices_seen ON devices(account_id, last_seen);
	-- One row per device per certificate of the account, computed at
	-- check-in: readiness is then a count over an index range.
	CREATE TABLE device_roots (
		account_id  TEXT NOT NULL,
		device_id   TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		state       INTEGER NOT NULL, -- 0 missing, 1 partial, 2 ready
		last_seen   INTEGER NOT NULL,
		not_ready   TEXT NOT NULL,    -- JSON array of targets
		PRIMARY KEY (account_id, device_id, fingerprint),
		FOREIGN KEY (account_id, device_id) REFERENCES devices(account_id, id) ON DELETE CASCADE
	) WITHOUT ROWID;
	CREATE INDEX device_roots_readiness ON device_roots(account_id, fingerprint, state, last_seen);`,
	// 4: inspection gateways and the roots each has loaded (sorted
	// fingerprints, space-separated).
	`CREATE TABLE gateways (
		account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		id         TEXT NOT NULL,
		hostname   TEXT NOT NULL,
		listen     TEXT NOT NULL,
		version    TEXT NOT NULL,
		started_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		loaded     TEXT NOT NULL,
		signing    TEXT NOT NULL,
		revision   INTEGER NOT NULL,
		PRIMARY KEY (account_id, id)
	);
	CREATE INDEX gateways_last_seen ON gateways(last_seen);`,
	// 5: readiness count buckets (devices per hour last seen; partial and
	// ready devices per root per hour), filled from the rows of 3.
	`CREATE TABLE device_buckets (
		account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		hour       INTEGER NOT NULL,
		devices    INTEGER NOT NULL,
		PRIMARY KEY (account_id, hour)
	) WITHOUT ROWID;
	CREATE TABLE root_buckets (
		account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
		fingerprint TEXT NOT NULL,
		state       INTEGER NOT NULL,
		hour        INTEGER NOT NULL,
		devices     INTEGER NOT NULL,
		PRIMARY KEY (account_id, fingerprint, state, hour)
	) WITHOUT ROWID;
	INSERT INTO device_buckets (account_id, hour, devices)
		SELECT account_id, last_seen / 3600000000000, COUNT(*) FROM devices GROUP BY 1, 2;
	INSERT INTO root_buckets (account_id, fingerprint, state, hour, devices)
		SELECT account_id, fingerprint, state, last_seen / 3600000000000, COUNT(*) FROM device_roots WHERE state > 0 GROUP BY 1, 2, 3, 4;`,
}

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations)

// migrate runs storage.Migrate in one transaction on the write
// connection: its BEGIN IMMEDIATE holds the write lock from reading the
// version to the commit, so two processes opening a fresh file migrate it
// once, and a failed migration leaves the file as it was.
func (d *DB) migrate(ctx context.Context) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := storage.Migrate(ctx, schemaTx{tx}, migrations); err != nil {
		return err
	}
	return tx.Commit()
}

// schemaTx is storage.Schema inside migrate's transaction.
type schemaTx struct{ tx *sql.Tx }

func (s schemaTx) Version(ctx context.Context) (int, error) {
	if _, err := s.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, err
	}
	var v int
	err := s.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

func (s schemaTx) Apply(ctx context.Context, v int, statements string) error {
	if _, err := s.tx.ExecContext(ctx, statements); err != nil {
		return err
	}
	_, err := s.tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, v)
	return err
}

// Version returns the schema version recorded in the database.
func (d *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := d.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// stmtQuerier runs a prepared statement through the querier interface
// listCerts takes (the query text is fixed by the statement).
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

func (s stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.st.QueryRowContext(ctx, args...)
}

const accountCols = `id, name, created_at, revision, in_use_id, config_created_at, config_updated_at, settings`

func scanAccount(row interface{ Scan(...any) error }) (storage.Account, error) {
	var a storage.Account
	var created, cc, cu int64
	var settings sql.NullString
	if err := row.Scan(&a.ID, &a.Name, &created, &a.Revision, &a.InUseID, &cc, &cu, &settings); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return a, storage.ErrNotFound
		}
		return a, err
	}
	a.CreatedAt, a.ConfigCreatedAt, a.ConfigUpdatedAt = storage.DecodeTime(created), storage.DecodeTime(cc), storage.DecodeTime(cu)
	if settings.Valid && settings.String != "" {
		a.Settings = json.RawMessage(settings.String)
	}
	return a, nil
}

const certCols = `c.id, c.account_id, c.type, c.status, c.der, c.fingerprint, c.issuer_org, c.issuer_raw, c.name,
	c.created_at, c.updated_at, c.uploaded_on, c.expires_on, c.due_at, (a.in_use_id = c.id)`

const certFrom = ` FROM certificates c JOIN accounts a ON a.id = c.account_id `

func scanCert(row interface{ Scan(...any) error }) (storage.Certificate, error) {
	var c storage.Certificate
	var status string
	var created, updated, uploaded, expires int64
	var due sql.NullInt64
	if err := row.Scan(&c.ID, &c.AccountID, &c.Type, &status, &c.DER, &c.Fingerprint, &c.IssuerOrg, &c.IssuerRaw, &c.Name,
		&created, &updated, &uploaded, &expires, &due, &c.InUse); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, storage.ErrNotFound
		}
		return c, err
	}
	c.Status = api.BindingStatus(status)
	c.CreatedAt, c.UpdatedAt, c.UploadedOn, c.ExpiresOn = storage.DecodeTime(created), storage.DecodeTime(updated), storage.DecodeTime(uploaded), storage.DecodeTime(expires)
	if due.Valid {
		c.DueAt = storage.DecodeTime(due.Int64)
	}
	return c, nil
}

func listCerts(ctx context.Context, q querier, accountID string) ([]storage.Certificate, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+certCols+certFrom+`WHERE c.account_id = ? ORDER BY c.created_at, c.id`, accountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isForeignKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// CreateAccount implements storage.Backend.
func (d *DB) CreateAccount(ctx context.Context, a storage.Account, fn func(storage.Tx) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage/sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	var settings any
	if len(a.Settings) > 0 {
		settings = string(a.Settings)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Name, storage.EncodeTime(a.CreatedAt), a.Revision, a.InUseID, storage.EncodeTime(a.ConfigCreatedAt), storage.EncodeTime(a.ConfigUpdatedAt), settings)
	if isUnique(err) {
		return storage.ErrExists
	}
	if err != nil {
		return fmt.Errorf("storage/sqlite: insert account: %w", err)
	}
	if fn != nil {
		if err := fn(&tx0{ctx: ctx, tx: tx, a: a}); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage/sqlite: commit: %w", err)
	}
	return nil
}

// Account implements storage.Backend.
func (d *DB) Account(ctx context.Context, id string) (storage.Account, error) {
	a, err := scanAccount(d.r.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return a, fmt.Errorf("storage/sqlite: account: %w", err)
	}
	return a, err
}

// Revision implements storage.Backend.
func (d *DB) Revision(ctx context.Context, accountID string) (int64, error) {
	var rev int64
	err := d.stmtRevision.QueryRowContext(ctx, accountID).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, storage.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("storage/sqlite: revision: %w", err)
	}
	return rev, nil
}

// Snapshot implements storage.Backend.
func (d *DB) Snapshot(ctx context.Context, accountID string) (storage.Account, []storage.Certificate, error) {
	tx, err := d.r.BeginTx(ctx, nil)
	if err != nil {
		return storage.Account{}, nil, fmt.Errorf("storage/sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	a, err := scanAccount(tx.StmtContext(ctx, d.stmtAccount).QueryRowContext(ctx, accountID))
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return a, nil, err
		}
		return a, nil, fmt.Errorf("storage/sqlite: account: %w", err)
	}
	certs, err := listCerts(ctx, stmtQuerier{tx.StmtContext(ctx, d.stmtCerts)}, accountID)
	if err != nil {
		return a, nil, fmt.Errorf("storage/sqlite: certificates: %w", err)
	}
	return a, certs, nil
}

// Certificate implements storage.Backend.
func (d *DB) Certificate(ctx context.Context, accountID, certID string) (storage.Certificate, error) {
	c, err := scanCert(d.r.QueryRowContext(ctx, `SELECT `+certCols+certFrom+`WHERE c.account_id = ? AND c.id = ?`, accountID, certID))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return c, fmt.Errorf("storage/sqlite: certificate: %w", err)
	}
	return c, err
}

// SealedKey implements storage.Backend.
func (d *DB) SealedKey(ctx context.Context, accountID, certID string) ([]byte, error) {
	var k []byte
	err := d.r.QueryRowContext(ctx, `SELECT sealed_key FROM certificates WHERE account_id = ? AND id = ?`, accountID, certID).Scan(&k)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: sealed key: %w", err)
	}
	return k, nil
}

// CreateToken implements storage.Backend.
func (d *DB) CreateToken(ctx context.Context, t storage.Token) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO tokens (id, account_id, hash, scope, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.AccountID, t.Hash, t.Scope, storage.EncodeTime(t.CreatedAt))
	switch {
	case isUnique(err):
		return storage.ErrExists
	case isForeignKey(err):
		return storage.ErrNotFound
	case err != nil:
		return fmt.Errorf("storage/sqlite: insert token: %w", err)
	}
	return nil
}

// Token implements storage.Backend.
func (d *DB) Token(ctx context.Context, id string) (storage.Token, error) {
	var t storage.Token
	var created, revoked int64
	err := d.stmtToken.QueryRowContext(ctx, id).Scan(&t.ID, &t.AccountID, &t.Hash, &t.Scope, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return t, storage.ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("storage/sqlite: token: %w", err)
	}
	t.CreatedAt, t.RevokedAt = storage.DecodeTime(created), storage.DecodeTime(revoked)
	return t, nil
}

// Tokens implements storage.Backend.
func (d *DB) Tokens(ctx context.Context, accountID string) ([]storage.Token, error) {
	// One read transaction, so "no rows" and "no account" are judged on
	// the same snapshot.
	tx, err := d.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: tokens: begin: %w", err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE id = ?`, accountID).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, storage.ErrNotFound
		}
		return nil, fmt.Errorf("storage/sqlite: tokens: account: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, account_id, scope, created_at, revoked_at FROM tokens
		WHERE account_id = ? ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: tokens: %w", err)
	}
	defer rows.Close()
	var out []storage.Token
	for rows.Next() {
		var t storage.Token
		var created, revoked int64
		if err := rows.Scan(&t.ID, &t.AccountID, &t.Scope, &created, &revoked); err != nil {
			return nil, fmt.Errorf("storage/sqlite: tokens: %w", err)
		}
		t.CreatedAt, t.RevokedAt = storage.DecodeTime(created), storage.DecodeTime(revoked)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage/sqlite: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken implements storage.Backend.
func (d *DB) RevokeToken(ctx context.Context, accountID, id string, at time.Time) (storage.Token, error) {
	var t storage.Token
	var created, revoked int64
	// The account_id condition makes another account's token id look
	// exactly like an unknown one; revoked_at is set only the first time.
	err := d.w.QueryRowContext(ctx, `UPDATE tokens SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END
		WHERE id = ? AND account_id = ? RETURNING id, account_id, scope, created_at, revoked_at`,
		storage.EncodeTime(at), id, accountID).Scan(&t.ID, &t.AccountID, &t.Scope, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Token{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Token{}, fmt.Errorf("storage/sqlite: revoke token: %w", err)
	}
	t.CreatedAt, t.RevokedAt = storage.DecodeTime(created), storage.DecodeTime(revoked)
	return t, nil
}

// Update implements storage.Backend.
func (d *DB) Update(ctx context.Context, accountID string, fn func(storage.Tx) error) (int64, error) {
	tx, err := d.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock is ours from here
	if err != nil {
		return 0, fmt.Errorf("storage/sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	a, err := scanAccount(tx.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, accountID))
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return 0, err
		}
		return 0, fmt.Errorf("storage/sqlite: account: %w", err)
	}
	t := &tx0{ctx: ctx, tx: tx, a: a}
	if err := fn(t); err != nil {
		return 0, err
	}
	rev := a.Revision
	if t.changed {
		rev++
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET revision = ? WHERE id = ?`, rev, accountID); err != nil {
			return 0, fmt.Errorf("storage/sqlite: bump revision: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("storage/sqlite: commit: %w", err)
	}
	return rev, nil
}

// DueTransitions implements storage.Backend.
func (d *DB) DueTransitions(ctx context.Context, now time.Time, limit int) ([]storage.Transition, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT account_id, id, status, due_at FROM certificates
		WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?`, storage.EncodeTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: due transitions: %w", err)
	}
	defer rows.Close()
	var out []storage.Transition
	for rows.Next() {
		var t storage.Transition
		var status string
		var due int64
		if err := rows.Scan(&t.AccountID, &t.CertID, &status, &due); err != nil {
			return nil, fmt.Errorf("storage/sqlite: due transitions: %w", err)
		}
		t.From, t.DueAt = api.BindingStatus(status), storage.DecodeTime(due)
		to, ok := storage.Target(t.From)
		if !ok {
			continue // a due time on a settled status: nothing to complete
		}
		t.To = to
		out = append(out, t)
	}
	return out, rows.Err()
}

// CompleteTransition implements storage.Backend.
func (d *DB) CompleteTransition(ctx context.Context, t storage.Transition, now time.Time) (bool, int64, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return false, 0, fmt.Errorf("storage/sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE certificates SET status = ?, due_at = NULL, updated_at = ?
		WHERE account_id = ? AND id = ? AND status = ? AND due_at = ?`,
		string(t.To), storage.EncodeTime(now), t.AccountID, t.CertID, string(t.From), storage.EncodeTime(t.DueAt))
	if err != nil {
		return false, 0, fmt.Errorf("storage/sqlite: complete %s: %w", t.CertID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, 0, err
	}
	var rev int64
	if err := tx.QueryRowContext(ctx, `UPDATE accounts SET revision = revision + 1 WHERE id = ? RETURNING revision`, t.AccountID).Scan(&rev); err != nil {
		return false, 0, fmt.Errorf("storage/sqlite: bump revision: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, 0, fmt.Errorf("storage/sqlite: commit: %w", err)
	}
	return true, rev, nil
}

// NextDue implements storage.Backend.
func (d *DB) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due sql.NullInt64
	if err := d.r.QueryRowContext(ctx, `SELECT MIN(due_at) FROM certificates WHERE due_at IS NOT NULL`).Scan(&due); err != nil {
		return time.Time{}, false, fmt.Errorf("storage/sqlite: next due: %w", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return storage.DecodeTime(due.Int64), true, nil
}

// GenerationTimes implements storage.Backend.
func (d *DB) GenerationTimes(ctx context.Context, accountID string, since time.Time) ([]time.Time, error) {
	if _, err := d.Revision(ctx, accountID); err != nil {
		return nil, err
	}
	rows, err := d.r.QueryContext(ctx, `SELECT at FROM generations WHERE account_id = ? AND at >= ? ORDER BY at`,
		accountID, storage.EncodeTime(since))
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: generation times: %w", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, fmt.Errorf("storage/sqlite: generation times: %w", err)
		}
		out = append(out, storage.DecodeTime(at))
	}
	return out, rows.Err()
}

// tx0 is the storage.Tx of one Update or CreateAccount.
type tx0 struct {
	ctx     context.Context
	tx      *sql.Tx
	a       storage.Account
	changed bool
}

func (t *tx0) Account() storage.Account { return t.a }

func (t *tx0) Certificates() ([]storage.Certificate, error) {
	certs, err := listCerts(t.ctx, t.tx, t.a.ID)
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: certificates: %w", err)
	}
	return certs, nil
}

func (t *tx0) InsertCertificate(c storage.Certificate, sealedKey []byte) error {
	var due any
	if !c.DueAt.IsZero() {
		due = storage.EncodeTime(c.DueAt)
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO certificates (id, account_id, type, status, der, fingerprint, issuer_org,
		issuer_raw, name, created_at, updated_at, uploaded_on, expires_on, due_at, sealed_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, t.a.ID, c.Type, string(c.Status), c.DER, c.Fingerprint, c.IssuerOrg, c.IssuerRaw, c.Name,
		storage.EncodeTime(c.CreatedAt), storage.EncodeTime(c.UpdatedAt), storage.EncodeTime(c.UploadedOn), storage.EncodeTime(c.ExpiresOn), due, sealedKey)
	if isUnique(err) {
		return storage.ErrExists
	}
	if err != nil {
		return fmt.Errorf("storage/sqlite: insert certificate: %w", err)
	}
	t.changed = true
	return nil
}

func (t *tx0) affected(res sql.Result, err error, step string) error {
	if err != nil {
		return fmt.Errorf("storage/sqlite: %s: %w", step, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("storage/sqlite: %s: %w", step, err)
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	t.changed = true
	return nil
}

func (t *tx0) SetStatus(certID string, status api.BindingStatus, dueAt, updatedAt time.Time) error {
	var due any
	if _, pending := storage.Target(status); pending {
		due = storage.EncodeTime(dueAt)
	}
	res, err := t.tx.ExecContext(t.ctx, `UPDATE certificates SET status = ?, due_at = ?, updated_at = ? WHERE account_id = ? AND id = ?`,
		string(status), due, storage.EncodeTime(updatedAt), t.a.ID, certID)
	return t.affected(res, err, "set status")
}

func (t *tx0) DeleteCertificate(certID string) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM certificates WHERE account_id = ? AND id = ?`, t.a.ID, certID)
	return t.affected(res, err, "delete certificate")
}

func (t *tx0) SetConfiguration(inUseID string, settings json.RawMessage, updatedAt time.Time) error {
	var s any
	if len(settings) > 0 {
		s = string(settings)
	}
	res, err := t.tx.ExecContext(t.ctx, `UPDATE accounts SET in_use_id = ?, settings = ?, config_updated_at = ? WHERE id = ?`,
		inUseID, s, storage.EncodeTime(updatedAt), t.a.ID)
	return t.affected(res, err, "set configuration")
}

func (t *tx0) Generations(since time.Time) ([]time.Time, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT at FROM generations WHERE account_id = ? AND at >= ? ORDER BY at`, t.a.ID, storage.EncodeTime(since))
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: read generations: %w", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, fmt.Errorf("storage/sqlite: read generations: %w", err)
		}
		out = append(out, storage.DecodeTime(at))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage/sqlite: read generations: %w", err)
	}
	return out, nil
}

func (t *tx0) RecordGeneration(at time.Time) error {
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM generations WHERE account_id = ? AND at < ?`, t.a.ID, storage.EncodeTime(at.Add(-2*storage.GenerationWindow))); err != nil {
		return fmt.Errorf("storage/sqlite: prune generations: %w", err)
	}
	if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO generations (account_id, at) VALUES (?, ?)`, t.a.ID, storage.EncodeTime(at)); err != nil {
		return fmt.Errorf("storage/sqlite: record generation: %w", err)
	}
	t.changed = true
	return nil
}

// SampleSealedKey implements storage.KeySampler.
func (d *DB) SampleSealedKey(ctx context.Context) (string, string, []byte, bool, error) {
	var a, c string
	var k []byte
	err := d.r.QueryRowContext(ctx, `SELECT account_id, id, sealed_key FROM certificates ORDER BY created_at LIMIT 1`).Scan(&a, &c, &k)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil, false, nil
	}
	if err != nil {
		return "", "", nil, false, fmt.Errorf("storage/sqlite: sample key: %w", err)
	}
	return a, c, k, true, nil
}

const gatewayCols = `account_id, id, hostname, listen, version, started_at, last_seen, loaded, signing, revision`

// ReportGateway implements storage.GatewayRegistry.
func (d *DB) ReportGateway(ctx context.Context, g storage.Gateway) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO gateways (`+gatewayCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (account_id, id) DO UPDATE SET hostname = excluded.hostname, listen = excluded.listen,
		version = excluded.version, started_at = excluded.started_at, last_seen = excluded.last_seen,
		loaded = excluded.loaded, signing = excluded.signing, revision = excluded.revision`,
		g.AccountID, g.ID, g.Hostname, g.Listen, g.Version, storage.EncodeTime(g.StartedAt), storage.EncodeTime(g.LastSeen),
		storage.EncodeFingerprints(g.Loaded), g.Signing, g.Revision)
	if isForeignKey(err) {
		return storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage/sqlite: report gateway: %w", err)
	}
	return nil
}

// Gateways implements storage.GatewayRegistry.
func (d *DB) Gateways(ctx context.Context, accountID string, since time.Time) ([]storage.Gateway, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+gatewayCols+` FROM gateways
		WHERE (? = '' OR account_id = ?) AND last_seen >= ? ORDER BY account_id, id`,
		accountID, accountID, storage.EncodeTime(since))
	if err != nil {
		return nil, fmt.Errorf("storage/sqlite: gateways: %w", err)
	}
	defer rows.Close()
	var out []storage.Gateway
	for rows.Next() {
		var g storage.Gateway
		var started, seen int64
		var loaded string
		if err := rows.Scan(&g.AccountID, &g.ID, &g.Hostname, &g.Listen, &g.Version, &started, &seen, &loaded, &g.Signing, &g.Revision); err != nil {
			return nil, fmt.Errorf("storage/sqlite: gateways: %w", err)
		}
		g.StartedAt, g.LastSeen, g.Loaded = storage.DecodeTime(started), storage.DecodeTime(seen), storage.DecodeFingerprints(loaded)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage/sqlite: gateways: %w", err)
	}
	return out, nil
}

// RemoveGateway implements storage.GatewayRegistry.
func (d *DB) RemoveGateway(ctx context.Context, accountID, id string) error {
	res, err := d.w.ExecContext(ctx, `DELETE FROM gateways WHERE account_id = ? AND id = ?`, accountID, id)
	if err != nil {
		return fmt.Errorf("storage/sqlite: remove gateway: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("storage/sqlite: remove gateway: %w", err)
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}
