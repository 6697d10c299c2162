#!/usr/bin/env bash
# Runs the measurements behind docs/performance.md and writes the tables
# and the plot into OUT (default docs/perf): the 304 bench (certplane vs a
# bare net/http handler, wrk), then fleets of 1,000 and 10,000 agents with
# and without long-poll on SQLite, and 10,000 long-polling agents on
# PostgreSQL, and server memory at 10,000 held long-polls. Each run is bounded (-timeout) and stops by itself; the whole
# takes about 25 minutes on 2 cores.
#
#   scripts/fleetsim/measure.sh [OUT]
#
# PostgreSQL: run as root, or export CERTAGENT_PG_DSN yourself.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-docs/perf}"
mkdir -p "$out"

if [ -z "${CERTAGENT_PG_DSN:-}" ] && [ "$(id -u)" = 0 ]; then
	CERTAGENT_PG_DSN="$(./scripts/pg-start.sh)"
	export CERTAGENT_PG_DSN
fi
# 10,000 held connections on each side of loopback.
ulimit -n "$(ulimit -Hn)"

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$bin/certplane" ./cmd/certplane
# fleetsim is a module of its own (the product go.mod lists no plotting).
(cd scripts/fleetsim && go build -o "$bin/fleetsim" .)
fs() { "$bin/fleetsim" "$@" -certplane "$bin/certplane" -out "$out"; }

fs bench -db sqlite -duration 5s -rounds 5
if [ -n "${CERTAGENT_PG_DSN:-}" ]; then
	fs bench -db postgres -duration 5s -rounds 5
fi
for n in 1000 10000; do
	fs run -db sqlite -agents "$n" -timeout 8m || echo "measure: run failed" >&2
	fs run -db sqlite -agents "$n" -longpoll -timeout 8m || echo "measure: run failed" >&2
done
if [ -n "${CERTAGENT_PG_DSN:-}" ]; then
	fs run -db postgres -agents 10000 -longpoll -timeout 8m || echo "measure: run failed" >&2
fi
# Server memory with 10,000 long-polls held, against a bare server that
# holds as many.
fs hold -db sqlite -agents 10000 || echo "measure: hold failed" >&2
"$bin/fleetsim" report -out "$out"
