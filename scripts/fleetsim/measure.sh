#!/usr/bin/env bash
# Runs the measurements behind docs/performance.md and writes the tables
# and the plot into OUT (default docs/perf), each on SQLite and on
# PostgreSQL: the 304 bench (certplane vs a bare net/http handler, wrk),
# server memory at 10,000 held long-polls (vs a bare server holding as
# many), fleets of 1,000 and 10,000 agents with and without long-poll (and
# 10,000 thin devices that only long-poll), and
# device check-ins (into OUT/checkin).
# Each run is bounded (-timeout) and stops by itself; the whole takes
# about 40 minutes on 2 cores.
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

dbs=(sqlite)
if [ -n "${CERTAGENT_PG_DSN:-}" ]; then
	dbs+=(postgres)
else
	echo "measure: CERTAGENT_PG_DSN unset and not root: PostgreSQL rows left out" >&2
fi
for db in "${dbs[@]}"; do
	fs bench -db "$db" -duration 5s -rounds 5
done
# Server memory with 10,000 long-polls held, against a bare server that
# holds as many (heap and goroutine profiles of both go next to the JSON).
for db in "${dbs[@]}"; do
	fs hold -db "$db" -agents 10000 || echo "measure: hold failed" >&2
done
for db in "${dbs[@]}"; do
	for n in 1000 10000; do
		fs run -db "$db" -agents "$n" -timeout 8m || echo "measure: run failed" >&2
		fs run -db "$db" -agents "$n" -longpoll -timeout 8m || echo "measure: run failed" >&2
	done
	# The control plane's delivery alone: devices that only long-poll, so
	# no agent passes share the cores (docs/performance.md §3).
	fs run -db "$db" -agents 10000 -longpoll -thin -timeout 8m || echo "measure: run failed" >&2
done
# Device check-ins (issue #13): server CPU per check-in next to the list
# request from the same run, and real agents' check-ins per simulated day.
mkdir -p "$out/checkin"
for db in "${dbs[@]}"; do
	"$bin/fleetsim" checkin -db "$db" -agents 10000 -certplane "$bin/certplane" -out "$out/checkin" ||
		echo "measure: checkin failed" >&2
done
"$bin/fleetsim" report -out "$out"
