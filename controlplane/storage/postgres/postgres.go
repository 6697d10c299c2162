// Package postgres is certplane's PostgreSQL storage backend, for fleets
// that outgrow one SQLite file and for several `certplane serve` replicas
// sharing one database.
//
// Each account's writes are serialised by its row lock (SELECT … FOR
// UPDATE), so the lifecycle rules that storage.Rules checks inside
// Backend.Update hold across replicas. The deployer's transitions are
// claimed with a conditional UPDATE, so exactly one replica completes each.
// Every committed change sends NOTIFY on ChannelChanges with the account
// id, which Listen turns into long-poll wake-ups on every replica.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// ChannelChanges is the NOTIFY channel; the payload is
// "ACCOUNT_ID:REVISION".
const ChannelChanges = "certplane_changes"

// ErrSchemaTooNew means the database was migrated by a newer certplane.
var ErrSchemaTooNew = storage.ErrSchemaTooNew

// Backend is a storage.Backend on PostgreSQL.
type Backend struct {
	pool *pgxpool.Pool
	// listenerName is the application_name of this database's (and
	// search_path's) change listeners, so RevokeToken can count them.
	listenerName string
	// AckTimeout bounds how long RevokeToken waits for every listener's
	// acknowledgement; zero means 3 s.
	AckTimeout time.Duration
}

var _ storage.Backend = (*Backend)(nil)

// IsDSN reports whether s names a PostgreSQL database (postgres:// or
// postgresql://), as --db accepts it.
func IsDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to dsn, migrates the schema and returns the backend. The
// DSN may carry pgx pool settings (pool_max_conns=…) and a search_path.
func Open(ctx context.Context, dsn string) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can echo the DSN, password included; keep ours.
		return nil, fmt.Errorf("storage/postgres: parse DSN: %w", errors.New(redactErr(err.Error(), dsn)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("storage/postgres: connect %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage/postgres: connect %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	name := "certplane-listen"
	if sp := cfg.ConnConfig.RuntimeParams["search_path"]; sp != "" {
		name += " " + sp
	}
	return &Backend{pool: pool, listenerName: name}, nil
}

// redactErr removes a password that pgx may have echoed into msg.
func redactErr(msg, dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 && c+1 < at {
				msg = strings.ReplaceAll(msg, rest[c+1:at], "xxxxx")
			}
		}
	}
	return msg
}

// Pool returns the connection pool (Listen uses its configuration).
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

// Close closes every connection.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

const accountCols = `id, name, created_at, revision, in_use_id, config_created_at, config_updated_at, settings`

func scanAccount(row pgx.Row) (storage.Account, error) {
	var a storage.Account
	var created, cfgCreated, cfgUpdated int64
	var settings *string
	err := row.Scan(&a.ID, &a.Name, &created, &a.Revision, &a.InUseID, &cfgCreated, &cfgUpdated, &settings)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Account{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Account{}, err
	}
	a.CreatedAt, a.ConfigCreatedAt, a.ConfigUpdatedAt = storage.DecodeTime(created), storage.DecodeTime(cfgCreated), storage.DecodeTime(cfgUpdated)
	if settings != nil {
		a.Settings = json.RawMessage(*settings)
	}
	return a, nil
}

const certCols = `id, account_id, type, status, der, fingerprint, issuer_org, issuer_raw, name,
	created_at, updated_at, uploaded_on, expires_on, due_at`

// scanCert reads certCols, then extra columns into extra. InUse is left
// for the caller, who knows the account's in-use id.
func scanCert(row pgx.Row, extra ...any) (storage.Certificate, error) {
	var c storage.Certificate
	var status string
	var created, updated, uploaded, expires, due int64
	dest := append([]any{&c.ID, &c.AccountID, &c.Type, &status, &c.DER, &c.Fingerprint, &c.IssuerOrg,
		&c.IssuerRaw, &c.Name, &created, &updated, &uploaded, &expires, &due}, extra...)
	err := row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Certificate{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Certificate{}, err
	}
	c.Status = api.BindingStatus(status)
	c.CreatedAt, c.UpdatedAt, c.UploadedOn, c.ExpiresOn, c.DueAt = storage.DecodeTime(created), storage.DecodeTime(updated), storage.DecodeTime(uploaded), storage.DecodeTime(expires), storage.DecodeTime(due)
	return c, nil
}

func certificates(ctx context.Context, q querier, accountID, inUseID string) ([]storage.Certificate, error) {
	rows, err := q.Query(ctx, `select `+certCols+` from certificates where account_id = $1 order by created_at, id`, accountID)
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
		c.InUse = inUseID != "" && c.ID == inUseID
		out = append(out, c)
	}
	return out, rows.Err()
}

// CreateAccount inserts a and runs fn in the same transaction.
func (b *Backend) CreateAccount(ctx context.Context, a storage.Account, fn func(storage.Tx) error) error {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var settings *string
		if len(a.Settings) > 0 {
			s := string(a.Settings)
			settings = &s
		}
		_, err := tx.Exec(ctx, `insert into accounts (id, name, created_at, revision, in_use_id, config_created_at, config_updated_at, settings)
			values ($1, $2, $3, 1, $4, $5, $6, $7)`,
			a.ID, a.Name, storage.EncodeTime(a.CreatedAt), a.InUseID, storage.EncodeTime(a.ConfigCreatedAt), storage.EncodeTime(a.ConfigUpdatedAt), settings)
		if isUniqueViolation(err) {
			return storage.ErrExists
		}
		if err != nil {
			return err
		}
		a.Revision = 1
		if fn != nil {
			t := &txn{ctx: ctx, tx: tx, account: a}
			if err := fn(t); err != nil {
				return err
			}
		}
		return notify(ctx, tx, a.ID, 1)
	})
	return wrap("create account", err)
}

// wrap adds the step to database errors and leaves storage's sentinels and
// callers' own errors as they are (Update returns fn's error unwrapped).
func wrap(step string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) || errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("storage/postgres: %s: %w", step, err)
	}
	return err
}

// Account returns one account.
func (b *Backend) Account(ctx context.Context, id string) (storage.Account, error) {
	a, err := scanAccount(b.pool.QueryRow(ctx, `select `+accountCols+` from accounts where id = $1`, id))
	return a, wrap("account", err)
}

// Revision reads only the account's revision: the 304 path's one query.
func (b *Backend) Revision(ctx context.Context, accountID string) (int64, error) {
	var rev int64
	err := b.pool.QueryRow(ctx, `select revision from accounts where id = $1`, accountID).Scan(&rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, storage.ErrNotFound
	}
	return rev, wrap("revision", err)
}

// Snapshot reads the account and its certificates in one repeatable-read
// transaction, so the list and its revision agree.
func (b *Backend) Snapshot(ctx context.Context, accountID string) (storage.Account, []storage.Certificate, error) {
	var a storage.Account
	var certs []storage.Certificate
	err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if a, err = scanAccount(tx.QueryRow(ctx, `select `+accountCols+` from accounts where id = $1`, accountID)); err != nil {
			return err
		}
		certs, err = certificates(ctx, tx, accountID, a.InUseID)
		return err
	})
	if err != nil {
		return storage.Account{}, nil, wrap("snapshot", err)
	}
	return a, certs, nil
}

// Certificate returns one certificate of the account, with InUse read
// from the account row in the same statement.
func (b *Backend) Certificate(ctx context.Context, accountID, certID string) (storage.Certificate, error) {
	var inUse string
	c, err := scanCert(b.pool.QueryRow(ctx, `select `+prefixed("c.", certCols)+`, a.in_use_id
		from certificates c join accounts a on a.id = c.account_id
		where c.account_id = $1 and c.id = $2`, accountID, certID), &inUse)
	if err != nil {
		return storage.Certificate{}, wrap("certificate", err)
	}
	c.InUse = inUse != "" && c.ID == inUse
	return c, nil
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// SealedKey returns the sealed private key of a certificate.
func (b *Backend) SealedKey(ctx context.Context, accountID, certID string) ([]byte, error) {
	var key []byte
	err := b.pool.QueryRow(ctx, `select k.sealed from certificate_keys k join certificates c on c.id = k.cert_id
		where c.account_id = $1 and c.id = $2`, accountID, certID).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, storage.ErrNotFound
	}
	return key, wrap("sealed key", err)
}

// SampleSealedKey implements storage.KeySampler: certplane opens one stored
// key at start-up to prove its seal key is the one the database was sealed
// with, before it seals anything new.
func (b *Backend) SampleSealedKey(ctx context.Context) (accountID, certID string, sealed []byte, ok bool, err error) {
	err = b.pool.QueryRow(ctx, `select c.account_id, c.id, k.sealed from certificate_keys k
		join certificates c on c.id = k.cert_id order by c.created_at, c.id limit 1`).Scan(&accountID, &certID, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", nil, false, nil
	}
	if err != nil {
		return "", "", nil, false, wrap("sample key", err)
	}
	return accountID, certID, sealed, true, nil
}

// CreateToken stores a token.
func (b *Backend) CreateToken(ctx context.Context, t storage.Token) error {
	_, err := b.pool.Exec(ctx, `insert into tokens (id, account_id, hash, scope, created_at) values ($1, $2, $3, $4, $5)`,
		t.ID, t.AccountID, t.Hash, t.Scope, storage.EncodeTime(t.CreatedAt))
	switch {
	case isUniqueViolation(err):
		return storage.ErrExists
	case isForeignKeyViolation(err):
		return storage.ErrNotFound
	}
	return wrap("create token", err)
}

// Token returns a token by id.
func (b *Backend) Token(ctx context.Context, id string) (storage.Token, error) {
	var t storage.Token
	var created, revoked int64
	err := b.pool.QueryRow(ctx, `select id, account_id, hash, scope, created_at, revoked_at from tokens where id = $1`, id).
		Scan(&t.ID, &t.AccountID, &t.Hash, &t.Scope, &created, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Token{}, storage.ErrNotFound
	}
	t.CreatedAt, t.RevokedAt = storage.DecodeTime(created), storage.DecodeTime(revoked)
	return t, wrap("token", err)
}

// Tokens lists an account's tokens without their hashes.
func (b *Backend) Tokens(ctx context.Context, accountID string) ([]storage.Token, error) {
	// The account check rides in the same statement (a left join), so
	// "no tokens" and "no account" are judged on one snapshot.
	rows, err := b.pool.Query(ctx, `select t.id, t.account_id, t.scope, t.created_at, t.revoked_at
		from accounts a left join tokens t on t.account_id = a.id
		where a.id = $1 order by t.created_at, t.id`, accountID)
	if err != nil {
		return nil, wrap("tokens", err)
	}
	defer rows.Close()
	found := false
	var out []storage.Token
	for rows.Next() {
		found = true
		var id, acct, scope *string
		var created, revoked *int64
		if err := rows.Scan(&id, &acct, &scope, &created, &revoked); err != nil {
			return nil, wrap("tokens", err)
		}
		if id == nil { // the account has no tokens
			continue
		}
		out = append(out, storage.Token{ID: *id, AccountID: *acct, Scope: *scope, CreatedAt: storage.DecodeTime(*created), RevokedAt: storage.DecodeTime(*revoked)})
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("tokens", err)
	}
	if !found {
		return nil, storage.ErrNotFound
	}
	return out, nil
}

// RevokeToken marks one of the account's tokens revoked. Every replica may
// hold the token's verification in memory, so before returning it tells
// them all (a NOTIFY in the same transaction) and waits, up to AckTimeout,
// until every listening replica has acknowledged that it dropped it:
// from the next request on, no replica accepts the token. A replica whose
// listener is down is not counted; it serves nothing from memory then.
//
// NOTIFY is database-wide, so certplanes on other schemas of the same
// database hear the revocation too and acknowledge it; only the
// acknowledgements of this schema's listeners, told apart by their
// backend's process id, count.
func (b *Backend) RevokeToken(ctx context.Context, accountID, id string, at time.Time) (storage.Token, error) {
	// A connection of its own (not the pool's): it LISTENs for the
	// acknowledgements, and a pooled connection must not keep listening.
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return storage.Token{}, wrap("revoke token: connect", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, `listen `+ChannelAcks); err != nil {
		return storage.Token{}, wrap("revoke token: listen", err)
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return storage.Token{}, fmt.Errorf("storage/postgres: revoke token: nonce: %w", err)
	}
	nonce := hex.EncodeToString(nb[:])
	var t storage.Token
	var created, revoked int64
	// listeners holds the backend pids of this schema's listeners that
	// have not acknowledged yet.
	listeners := map[uint32]bool{}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// The account_id condition makes another account's token id look
		// exactly like an unknown one; revoked_at is set only the first time.
		err := tx.QueryRow(ctx, `update tokens set revoked_at = case when revoked_at = 0 then $1 else revoked_at end
			where id = $2 and account_id = $3 returning id, account_id, scope, created_at, revoked_at`,
			storage.EncodeTime(at), id, accountID).Scan(&t.ID, &t.AccountID, &t.Scope, &created, &revoked)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `select pg_notify($1, $2)`, ChannelChanges, revokePrefix+id+":"+nonce); err != nil {
			return err
		}
		// Counted inside the transaction: a listener that connects after
		// this point never hears the NOTIFY, but it starts with nothing
		// cached, so it need not acknowledge.
		rows, err := tx.Query(ctx, `select pid from pg_stat_activity where datname = current_database() and application_name = $1`,
			b.listenerName)
		if err != nil {
			return err
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		for _, pid := range pids {
			listeners[uint32(pid)] = true
		}
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Token{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Token{}, wrap("revoke token", err)
	}
	t.CreatedAt, t.RevokedAt = storage.DecodeTime(created), storage.DecodeTime(revoked)
	timeout := b.AckTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for len(listeners) > 0 {
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			// Committed either way; a listener that did not answer in time
			// is stuck or gone, and its next reconnect drops its caches.
			break
		}
		// A listener acknowledges on its own connection, so the
		// notification's sender is the listener's backend.
		if n.Channel == ChannelAcks && n.Payload == nonce {
			delete(listeners, n.PID)
		}
	}
	return t, nil
}

// Update runs fn holding the account's row lock until commit.
func (b *Backend) Update(ctx context.Context, accountID string, fn func(storage.Tx) error) (int64, error) {
	var rev int64
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		a, err := scanAccount(tx.QueryRow(ctx, `select `+accountCols+` from accounts where id = $1 for update`, accountID))
		if err != nil {
			return err
		}
		t := &txn{ctx: ctx, tx: tx, account: a}
		if err := fn(t); err != nil {
			return err
		}
		rev = a.Revision
		if !t.wrote {
			return nil
		}
		if err := tx.QueryRow(ctx, `update accounts set revision = revision + 1 where id = $1 returning revision`, accountID).Scan(&rev); err != nil {
			return err
		}
		return notify(ctx, tx, accountID, rev)
	})
	if err != nil {
		return 0, wrap("update account "+accountID, err)
	}
	return rev, nil
}

// notify queues a change notification; PostgreSQL delivers it at commit
// and drops it on rollback, so listeners never hear of an uncommitted change.
func notify(ctx context.Context, tx pgx.Tx, accountID string, rev int64) error {
	_, err := tx.Exec(ctx, `select pg_notify($1, $2)`, ChannelChanges, accountID+":"+strconv.FormatInt(rev, 10))
	return err
}

// DueTransitions returns pending certificates whose time has come.
func (b *Backend) DueTransitions(ctx context.Context, now time.Time, limit int) ([]storage.Transition, error) {
	rows, err := b.pool.Query(ctx, `select account_id, id, status, due_at from certificates
		where due_at <> 0 and due_at <= $1 and status in ($2, $3) order by due_at, id limit $4`,
		storage.EncodeTime(now), string(api.StatusPendingDeployment), string(api.StatusPendingDeletion), limit)
	if err != nil {
		return nil, wrap("due transitions", err)
	}
	defer rows.Close()
	var out []storage.Transition
	for rows.Next() {
		var t storage.Transition
		var from string
		var due int64
		if err := rows.Scan(&t.AccountID, &t.CertID, &from, &due); err != nil {
			return nil, wrap("due transitions", err)
		}
		t.From, t.DueAt = api.BindingStatus(from), storage.DecodeTime(due)
		to, ok := storage.Target(t.From)
		if !ok {
			continue
		}
		t.To = to
		out = append(out, t)
	}
	return out, wrap("due transitions", rows.Err())
}

// CompleteTransition claims t with a conditional UPDATE: of several
// replicas racing for it, exactly one sees a row affected. The account row
// is locked first, in the same order Update takes its locks, so a claim and
// an admin's request on the same account cannot deadlock.
func (b *Backend) CompleteTransition(ctx context.Context, t storage.Transition, now time.Time) (bool, int64, error) {
	var done bool
	var rev int64
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `select revision from accounts where id = $1 for update`, t.AccountID).Scan(&rev); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // account deleted meanwhile: nothing to do
			}
			return err
		}
		tag, err := tx.Exec(ctx, `update certificates set status = $1, due_at = 0, updated_at = $2
			where account_id = $3 and id = $4 and status = $5 and due_at = $6`,
			string(t.To), storage.EncodeTime(now), t.AccountID, t.CertID, string(t.From), storage.EncodeTime(t.DueAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return nil
		}
		done = true
		if err := tx.QueryRow(ctx, `update accounts set revision = revision + 1 where id = $1 returning revision`, t.AccountID).Scan(&rev); err != nil {
			return err
		}
		return notify(ctx, tx, t.AccountID, rev)
	})
	if err != nil {
		return false, 0, wrap("complete transition "+t.CertID, err)
	}
	return done, rev, nil
}

// NextDue returns the earliest due time of any pending certificate.
func (b *Backend) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due *int64
	err := b.pool.QueryRow(ctx, `select min(due_at) from certificates where due_at <> 0`).Scan(&due)
	if err != nil {
		return time.Time{}, false, wrap("next due", err)
	}
	if due == nil {
		return time.Time{}, false, nil
	}
	return storage.DecodeTime(*due), true, nil
}

// GenerationTimes returns the account's generation times since since.
func (b *Backend) GenerationTimes(ctx context.Context, accountID string, since time.Time) ([]time.Time, error) {
	if _, err := b.Revision(ctx, accountID); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, `select at from generations where account_id = $1 and at >= $2 order by at`,
		accountID, storage.EncodeTime(since))
	if err != nil {
		return nil, wrap("generation times", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, wrap("generation times", err)
		}
		out = append(out, storage.DecodeTime(at))
	}
	return out, wrap("generation times", rows.Err())
}

// txn is storage.Tx on a pgx transaction holding the account's row lock.
type txn struct {
	ctx     context.Context
	tx      pgx.Tx
	account storage.Account
	// wrote reports whether any statement changed the account's data, so
	// Update bumps the revision exactly when the list may have changed.
	wrote bool
}

func (t *txn) Account() storage.Account { return t.account }

func (t *txn) Certificates() ([]storage.Certificate, error) {
	return certificates(t.ctx, t.tx, t.account.ID, t.account.InUseID)
}

func (t *txn) InsertCertificate(c storage.Certificate, sealedKey []byte) error {
	_, err := t.tx.Exec(t.ctx, `insert into certificates (id, account_id, type, status, der, fingerprint, issuer_org,
		issuer_raw, name, created_at, updated_at, uploaded_on, expires_on, due_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		c.ID, t.account.ID, c.Type, string(c.Status), c.DER, c.Fingerprint, c.IssuerOrg, c.IssuerRaw, c.Name,
		storage.EncodeTime(c.CreatedAt), storage.EncodeTime(c.UpdatedAt), storage.EncodeTime(c.UploadedOn), storage.EncodeTime(c.ExpiresOn), storage.EncodeTime(c.DueAt))
	if isUniqueViolation(err) {
		return storage.ErrExists
	}
	if err != nil {
		return err
	}
	if _, err := t.tx.Exec(t.ctx, `insert into certificate_keys (cert_id, sealed) values ($1, $2)`, c.ID, sealedKey); err != nil {
		return err
	}
	t.wrote = true
	return nil
}

func (t *txn) SetStatus(certID string, status api.BindingStatus, dueAt, updatedAt time.Time) error {
	tag, err := t.tx.Exec(t.ctx, `update certificates set status = $1, due_at = $2, updated_at = $3
		where account_id = $4 and id = $5`, string(status), storage.EncodeTime(dueAt), storage.EncodeTime(updatedAt), t.account.ID, certID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	t.wrote = true
	return nil
}

func (t *txn) DeleteCertificate(certID string) error {
	tag, err := t.tx.Exec(t.ctx, `delete from certificates where account_id = $1 and id = $2`, t.account.ID, certID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	t.wrote = true
	return nil
}

func (t *txn) SetConfiguration(inUseID string, settings json.RawMessage, updatedAt time.Time) error {
	var s *string
	if len(settings) > 0 {
		v := string(settings)
		s = &v
	}
	if _, err := t.tx.Exec(t.ctx, `update accounts set in_use_id = $1, settings = $2, config_updated_at = $3 where id = $4`,
		inUseID, s, storage.EncodeTime(updatedAt), t.account.ID); err != nil {
		return err
	}
	// Later reads in this transaction (Certificates' InUse) see the change.
	t.account.InUseID, t.account.Settings, t.account.ConfigUpdatedAt = inUseID, settings, updatedAt
	t.wrote = true
	return nil
}

func (t *txn) Generations(since time.Time) ([]time.Time, error) {
	rows, err := t.tx.Query(t.ctx, `select at from generations where account_id = $1 and at >= $2 order by at`, t.account.ID, storage.EncodeTime(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, err
		}
		out = append(out, storage.DecodeTime(at))
	}
	return out, rows.Err()
}

func (t *txn) RecordGeneration(at time.Time) error {
	if _, err := t.tx.Exec(t.ctx, `delete from generations where account_id = $1 and at < $2`,
		t.account.ID, storage.EncodeTime(at.Add(-storage.GenerationWindow))); err != nil {
		return err
	}
	if _, err := t.tx.Exec(t.ctx, `insert into generations (account_id, at) values ($1, $2)`, t.account.ID, storage.EncodeTime(at)); err != nil {
		return err
	}
	t.wrote = true
	return nil
}

const gatewayCols = `account_id, id, hostname, listen, version, started_at, last_seen, loaded, signing, revision`

// ReportGateway inserts or replaces a gateway's row.
func (b *Backend) ReportGateway(ctx context.Context, g storage.Gateway) error {
	_, err := b.pool.Exec(ctx, `insert into gateways (`+gatewayCols+`) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		on conflict (account_id, id) do update set hostname = excluded.hostname, listen = excluded.listen,
		version = excluded.version, started_at = excluded.started_at, last_seen = excluded.last_seen,
		loaded = excluded.loaded, signing = excluded.signing, revision = excluded.revision`,
		g.AccountID, g.ID, g.Hostname, g.Listen, g.Version, storage.EncodeTime(g.StartedAt), storage.EncodeTime(g.LastSeen),
		storage.EncodeFingerprints(g.Loaded), g.Signing, g.Revision)
	if isForeignKeyViolation(err) {
		return storage.ErrNotFound
	}
	return wrap("report gateway", err)
}

// Gateways lists gateways seen since a time, of one account or all.
func (b *Backend) Gateways(ctx context.Context, accountID string, since time.Time) ([]storage.Gateway, error) {
	rows, err := b.pool.Query(ctx, `select `+gatewayCols+` from gateways
		where ($1 = '' or account_id = $1) and last_seen >= $2 order by account_id, id`,
		accountID, storage.EncodeTime(since))
	if err != nil {
		return nil, wrap("gateways", err)
	}
	defer rows.Close()
	var out []storage.Gateway
	for rows.Next() {
		var g storage.Gateway
		var started, seen int64
		var loaded string
		if err := rows.Scan(&g.AccountID, &g.ID, &g.Hostname, &g.Listen, &g.Version, &started, &seen, &loaded, &g.Signing, &g.Revision); err != nil {
			return nil, wrap("gateways", err)
		}
		g.StartedAt, g.LastSeen, g.Loaded = storage.DecodeTime(started), storage.DecodeTime(seen), storage.DecodeFingerprints(loaded)
		out = append(out, g)
	}
	return out, wrap("gateways", rows.Err())
}

// RemoveGateway deletes one gateway's row.
func (b *Backend) RemoveGateway(ctx context.Context, accountID, id string) error {
	tag, err := b.pool.Exec(ctx, `delete from gateways where account_id = $1 and id = $2`, accountID, id)
	if err != nil {
		return wrap("remove gateway", err)
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}
