#!/usr/bin/env bash
# Starts the Debian PostgreSQL cluster (idempotently) and creates the role and
# database the PostgreSQL storage tests use, then prints the DSN:
#
#   export CERTAGENT_PG_DSN="$(./scripts/pg-start.sh)"
#
# Everything else goes to stderr so the DSN can be captured. Needs root (it
# runs psql as the postgres user) and the postgresql package
# (scripts/install-deps.sh). Re-running it is harmless.
set -euo pipefail

role="${CERTAGENT_PG_ROLE:-certagent_test}"
db="${CERTAGENT_PG_DB:-certagent_test}"
# A throwaway password for a loopback-only test role; not a secret.
pass="${CERTAGENT_PG_PASSWORD:-certagent_test}"

log() { echo "pg-start: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null; then
	log "postgresql-common not installed; run scripts/install-deps.sh"
	exit 1
fi

# The newest installed major version with a cluster; create "main" if none.
read -r ver cluster port status _ < <(pg_lsclusters --no-header | sort -k1,1nr | head -n1) || true
if [ -z "${ver:-}" ]; then
	ver="$(ls /usr/lib/postgresql | sort -n | tail -n1)"
	log "creating cluster $ver/main"
	pg_createcluster "$ver" main >&2
	read -r ver cluster port status _ < <(pg_lsclusters --no-header | sort -k1,1nr | head -n1)
fi

if [ "$status" != "online" ]; then
	log "starting cluster $ver/$cluster on port $port"
	# pg_ctlcluster works without systemd (containers, CI); it is a no-op
	# error if another process started it in the meantime.
	pg_ctlcluster "$ver" "$cluster" start >&2 || pg_lsclusters --no-header | grep -q "^$ver *$cluster .*online"
fi

# Wait until it accepts connections (pg_ctlcluster returns when the
# postmaster is up, but be robust to a concurrent start).
for _ in $(seq 1 50); do
	if runuser -u postgres -- psql -p "$port" -Atqc 'select 1' >/dev/null 2>&1; then
		break
	fi
	sleep 0.2
done

psql_su() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -Atq "$@"; }

if [ "$(psql_su -c "select 1 from pg_roles where rolname = '$role'")" != "1" ]; then
	log "creating role $role"
	psql_su -c "create role \"$role\" login createdb password '$pass'"
fi
if [ "$(psql_su -c "select 1 from pg_database where datname = '$db'")" != "1" ]; then
	log "creating database $db"
	psql_su -c "create database \"$db\" owner \"$role\""
fi

echo "postgres://$role:$pass@127.0.0.1:$port/$db?sslmode=disable"
