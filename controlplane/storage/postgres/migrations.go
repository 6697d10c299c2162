package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certagent/certagent/controlplane/storage"
)

// migrations are applied in order, each once, each in its own transaction.
// Append only: never edit a migration that has shipped.
//
// Times are stored as bigint Unix nanoseconds (0 = unset) rather than
// timestamptz, which keeps only microseconds: a value written and read
// back must compare equal, and the deployer's claim compares due_at exactly.
var migrations = []string{
	// 1: the initial schema.
	`
create table accounts (
	id                text primary key,
	name              text not null,
	created_at        bigint not null,
	revision          bigint not null default 1,
	in_use_id         text not null default '',
	config_created_at bigint not null,
	config_updated_at bigint not null,
	-- every settings collection except "certificate", verbatim JSON text
	settings          text
);
create table certificates (
	id          text primary key,
	account_id  text not null references accounts(id) on delete cascade,
	type        text not null,
	status      text not null,
	der         bytea not null,
	fingerprint text not null,
	issuer_org  text not null,
	issuer_raw  text not null,
	name        text not null,
	created_at  bigint not null,
	updated_at  bigint not null,
	uploaded_on bigint not null,
	expires_on  bigint not null,
	due_at      bigint not null default 0
);
create index certificates_account on certificates (account_id, created_at, id);
create index certificates_due on certificates (due_at) where due_at <> 0;
-- Keys live apart so that nothing that lists certificates ever reads them.
create table certificate_keys (
	cert_id text primary key references certificates(id) on delete cascade,
	sealed  bytea not null
);
create table tokens (
	id         text primary key,
	account_id text not null references accounts(id) on delete cascade,
	hash       bytea not null,
	scope      text not null,
	created_at bigint not null
);
create table generations (
	account_id text not null references accounts(id) on delete cascade,
	at         bigint not null
);
create index generations_account on generations (account_id, at);
`,
	// 2: token revocation (0 = live) and the per-account token listing.
	`
alter table tokens add column revoked_at bigint not null default 0;
create index tokens_account on tokens (account_id, created_at, id);
`,
	// 3: devices, their per-root summaries and the readiness settings.
	`
alter table accounts add column min_readiness double precision not null default 0.95;
alter table accounts add column device_active_days integer not null default 7;
create table devices (
	account_id    text not null references accounts(id) on delete cascade,
	id            text not null,
	secret_hash   bytea not null,
	hostname      text not null,
	os            text not null,
	os_version    text not null,
	agent_version text not null,
	synced_at     bigint not null,
	last_seen     bigint not null,
	created_at    bigint not null,
	roots         text not null, -- the kept report, JSON
	primary key (account_id, id)
);
create index devices_seen on devices (account_id, last_seen);
-- One row per device per certificate of the account, computed at check-in:
-- readiness is then a count over an index range.
create table device_roots (
	account_id  text not null,
	device_id   text not null,
	fingerprint text not null,
	state       smallint not null, -- 0 missing, 1 partial, 2 ready
	last_seen   bigint not null,
	not_ready   text not null,     -- JSON array of targets
	primary key (account_id, device_id, fingerprint),
	foreign key (account_id, device_id) references devices (account_id, id) on delete cascade
);
create index device_roots_readiness on device_roots (account_id, fingerprint, state, last_seen);
`,
	// 4: inspection gateways and the roots each has loaded (sorted
	// fingerprints, space-separated).
	`
create table gateways (
	account_id text not null references accounts(id) on delete cascade,
	id         text not null,
	hostname   text not null,
	listen     text not null,
	version    text not null,
	started_at bigint not null,
	last_seen  bigint not null,
	loaded     text not null,
	signing    text not null,
	revision   bigint not null,
	primary key (account_id, id)
);
create index gateways_last_seen on gateways (last_seen);
`,
	// 5: readiness count buckets (devices per hour last seen; partial and
	// ready devices per root per hour), filled from the rows of 3.
	`
create table device_buckets (
	account_id text not null references accounts(id) on delete cascade,
	hour       bigint not null,
	devices    integer not null,
	primary key (account_id, hour)
);
create table root_buckets (
	account_id  text not null references accounts(id) on delete cascade,
	fingerprint text not null,
	state       smallint not null,
	hour        bigint not null,
	devices     integer not null,
	primary key (account_id, fingerprint, state, hour)
);
insert into device_buckets (account_id, hour, devices)
	select account_id, last_seen / 3600000000000, count(*) from devices group by 1, 2;
insert into root_buckets (account_id, fingerprint, state, hour, devices)
	select account_id, fingerprint, state, last_seen / 3600000000000, count(*) from device_roots where state > 0 group by 1, 2, 3, 4;
`,
}

// Latest returns the schema version this build migrates to.
func Latest() int { return len(migrations) }

// lockMigrate is the advisory lock key that serialises migrations when
// several replicas start at once ("certplan" in ASCII).
const lockMigrate = 0x63657274706c616e

// Migrate brings the schema to the newest version (storage.Migrate, each
// migration in its own transaction). Safe to run from every replica at
// once: an advisory lock lets one migrate while the others wait and then
// find nothing to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("storage/postgres: migrate: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `select pg_advisory_lock($1)`, int64(lockMigrate)); err != nil {
		return fmt.Errorf("storage/postgres: migrate: lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must be released even if ctx ended.
		_, _ = conn.Exec(context.Background(), `select pg_advisory_unlock($1)`, int64(lockMigrate))
	}()
	if err := storage.Migrate(ctx, schemaConn{conn.Conn()}, migrations); err != nil {
		return fmt.Errorf("storage/postgres: migrate: %w", err)
	}
	return nil
}

// schemaConn is storage.Schema on the connection holding the advisory lock.
type schemaConn struct{ conn *pgx.Conn }

func (s schemaConn) Version(ctx context.Context) (int, error) {
	if _, err := s.conn.Exec(ctx, `create table if not exists schema_migrations (
		version    integer primary key,
		applied_at timestamptz not null default now())`); err != nil {
		return 0, err
	}
	var v int
	err := s.conn.QueryRow(ctx, `select coalesce(max(version), 0) from schema_migrations`).Scan(&v)
	return v, err
}

func (s schemaConn) Apply(ctx context.Context, v int, statements string) error {
	return pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, statements); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `insert into schema_migrations (version) values ($1)`, v)
		return err
	})
}

// SchemaVersion returns the applied schema version (0 for none).
func SchemaVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v int
	err := pool.QueryRow(ctx, `select coalesce(max(version), 0) from schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("storage/postgres: schema version: %w", err)
	}
	return v, nil
}
