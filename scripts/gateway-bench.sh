#!/bin/sh
# Measures the inspection gateway side by side in one run (docs/performance.md, "Inspection
# gateway"): requests/s for a 1 KiB response on kept-alive connections, inspected vs a plain
# CONNECT tunnel to the same origin (alternating rounds, then go test -bench); CONNECT+TLS
# handshake cost with a warm and a cold leaf cache vs a direct handshake with the origin; memory per 1,000 concurrent connections, inspected vs
# tunnelled (clients and origin in a child process, so only the gateway is measured).
set -eu
cd "$(dirname "$0")/.."
N=${N:-1000}
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
CERTPLANE_GATEWAY_ROUNDS="${ROUNDS:-5}" go test -count=1 -run '^TestThroughputSideBySide$' -v ./controlplane/gateway | grep -E 'round|median|^(ok|FAIL|---)'
go test -count=1 -run '^$' -bench 'Requests|Handshake|MintLeaf' -benchtime "${BENCHTIME:-3s}" -benchmem ./controlplane/gateway
CERTPLANE_GATEWAY_MEM="$N" go test -count=1 -run '^TestMemoryPerConnection$' -v ./controlplane/gateway | grep -E 'connections|^(ok|FAIL|---)'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
