#!/usr/bin/env bash
# Measures what the certagent daemon costs a laptop when nothing changes:
# its resident memory and the CPU it burns per no-change poll, read from
# the real process (/proc/PID/status VmRSS, /proc/PID/stat utime+stime).
#
# It builds certagent and certplane, starts certplane on SQLite in a temp
# dir, runs `certagent run` against it with a dir: store and a short poll
# interval, waits for the first pass, then samples for DURATION seconds and
# counts the polls the control plane served. Linux only; no root needed.
#
#   scripts/daemon-idle.sh            # 60 s at poll_interval 5s (the minimum)
#   DURATION=120 POLL=10s scripts/daemon-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
POLL=${POLL:-5s}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/certagent" ./cmd/certagent
go build -o "$work/certplane" ./cmd/certplane

db="sqlite:$work/certplane.db"
acct=$("$work/certplane" account create --db "$db" --data-dir "$work" --name idle)
token=$("$work/certplane" token create --db "$db" --data-dir "$work" --account "$acct" --scope device)
port=$(( 20000 + RANDOM % 20000 ))
"$work/certplane" serve --listen "127.0.0.1:$port" --db "$db" --data-dir "$work" 2>"$work/certplane.log" &
pids+=($!)

umask 077
cat >"$work/config.json" <<JSON
{
  "control_plane_url": "http://127.0.0.1:$port/client/v4",
  "account_id": "$acct",
  "api_token": "$token",
  "poll_interval": "$POLL",
  "stores": ["dir:$work/anchors"],
  "state_dir": "$work/state"
}
JSON
CERTAGENT_CONFIG="$work/config.json" CERTAGENT_MANAGED="$work/managed.json" \
CERTAGENT_STATE_DIR="$work/state" CERTAGENT_SOCKET="$work/certagent.sock" \
	"$work/certagent" run --log-level info 2>"$work/certagent.log" &
agent=$!
pids+=("$agent")

# The account's first root lands in the dir: store on the first pass.
for _ in $(seq 1 300); do
	compgen -G "$work/anchors/certagent-*.pem" >/dev/null && break
	sleep 0.1
done
compgen -G "$work/anchors/certagent-*.pem" >/dev/null || { echo "no first pass; agent log:"; cat "$work/certagent.log"; exit 1; }
sleep 3 # let the first pass's own file events settle

tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$agent/status"; }
polls() { grep -c '"path":"/client/v4/accounts/[0-9a-f]*/gateway/certificates"' "$work/certplane.log" || true; }

# schedstat's first field is the nanoseconds the task ran: utime+stime's
# 10 ms ticks are too coarse for an idle daemon.
runns() { local s=0; for f in /proc/$agent/task/*/schedstat; do s=$((s + $(cut -d' ' -f1 "$f"))); done; echo "$s"; }

touch "$work/mark"
cpu0=$(cpu); ns0=$(runns); polls0=$(polls); rss0=$(rss)
sleep "$DURATION"
cpu1=$(cpu); ns1=$(runns); polls1=$(polls); rss1=$(rss)

n=$((polls1 - polls0))
ticks=$((cpu1 - cpu0))
ms=$(awk -v t="$ticks" -v h="$tck" 'BEGIN {printf "%.1f", t * 1000 / h}')
per=$(awk -v t="$ticks" -v h="$tck" -v n="$n" 'BEGIN {if (n > 0) printf "%.2f", t * 1000 / h / n; else print "n/a"}')
writes=$(find "$work/state" "$work/anchors" -newer "$work/mark" -type f | wc -l)
nsms=$(awk -v a="$ns0" -v b="$ns1" 'BEGIN {printf "%.2f", (b - a) / 1e6}')
nsper=$(awk -v a="$ns0" -v b="$ns1" -v n="$n" 'BEGIN {if (n > 0) printf "%.3f", (b - a) / 1e6 / n; else print "n/a"}')
echo "certagent idle over ${DURATION}s at poll_interval $POLL:"
echo "  control-plane requests served: $n (interval polls plus long-poll renewals)"
echo "  CPU: ${nsms} ms total, ${nsper} ms per request (schedstat, all threads)"
echo "       ${ms} ms total by utime+stime (CLK_TCK=$tck ticks), ${per} ms per request"
echo "  files written in state dir and store: $writes (a no-change poll writes nothing)"
echo "  RSS: ${rss0} kB at start, ${rss1} kB at end (VmRSS)"
echo "  errors logged: $(grep -c '"@level":"error"' "$work/certagent.log" || true)"

# The same real process, as a user would meet it.
export CERTAGENT_CONFIG="$work/config.json" CERTAGENT_MANAGED="$work/managed.json" \
	CERTAGENT_STATE_DIR="$work/state" CERTAGENT_SOCKET="$work/certagent.sock"
code=0; "$work/certagent" status >/dev/null || code=$?
echo "  certagent status: exit $code"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$work"
	code=0; setpriv --reuid=65534 --regid=65534 --clear-groups "$work/certagent" status >/dev/null 2>&1 || code=$?
	echo "  certagent status as nobody: exit $code (reads are open to users)"
	code=0; setpriv --reuid=65534 --regid=65534 --clear-groups "$work/certagent" sync >/dev/null 2>&1 || code=$?
	echo "  certagent sync as nobody: exit $code (writes need root)"
fi
