#!/usr/bin/env bash
# Measures what the certagent daemon costs when nothing changes, with real
# stores: "system" (Debian's full anchor store and update-ca-certificates),
# "nss" (one user's NSS database, real certutil), "dir:" and "bundle:" —
# inside a private mount namespace (tmpfs over the trust directories, a
# passwd with one test user), so the host's stores are never touched.
#
# It builds certagent and certplane, starts certplane on SQLite, runs
# `certagent run` against it, waits until every store holds
# the account's root, then for ROUNDS rounds of WINDOW seconds reads the
# daemon's CPU (schedstat, all threads) and its pass count (`certagent
# status --json`, whose own cost is measured around the call and left
# out), and reports min/median/max of CPU per no-change pass and of RSS.
# Every certutil and update-ca-certificates run is counted through a
# wrapper bind-mounted over the tool. Then it stops the daemon and runs a
# one-shot `certagent sync` with nothing to change, counting the store
# tools it runs.
#
# With PROFILE=1 the daemon runs with --cpuprofile and --memprofile, and
# the script prints where the CPU and the heap went. The profilers cost
# CPU of their own (the CPU profiler's writer wakes every 100 ms, the heap
# profile forces a GC every 30 s), which the rounds then include: measure
# the goals without them.
#
#   sudo scripts/agent-quiet.sh                      # 5 rounds of 30 s, poll_interval 5s
#   ROUNDS=7 WINDOW=60 sudo scripts/agent-quiet.sh
#   PROFILE=1 sudo scripts/agent-quiet.sh            # where it goes
#
# Linux, root (mount namespace, certutil as the user), Debian's
# ca-certificates and libnss3-tools (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
WINDOW=${WINDOW:-30}
POLL=${POLL:-5s}
PROFILE=${PROFILE:-0}

if [ -z "${AGENT_QUIET_INSIDE:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "agent-quiet: needs root (mount namespace)" >&2; exit 2; }
	for t in unshare certutil update-ca-certificates setpriv; do
		command -v "$t" >/dev/null || { echo "agent-quiet: $t missing (scripts/install-deps.sh)" >&2; exit 2; }
	done
	export AGENT_QUIET_INSIDE=1
	exec unshare --mount --propagation private "$0" "$@"
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "agent-quiet: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
chmod 755 "$work"

go build -o "$work/certagent" ./cmd/certagent
CGO_ENABLED=0 go build -o "$work/certplane" ./cmd/certplane

# --- the namespace: private copies of every trust directory --------------
copy_over() { # DIR: a tmpfs over DIR holding a copy of what it held
	local d=$1 keep="$work/keep$(echo "$1" | tr / _)"
	mkdir -p "$d" "$keep"
	cp -a "$d/." "$keep/"
	mount -t tmpfs -o mode=0755 agent-quiet "$d"
	cp -a "$keep/." "$d/"
}
copy_over /etc/ssl/certs
copy_over /usr/local/share/ca-certificates
cp /etc/ca-certificates.conf "$work/ca-certificates.conf"
mount --bind "$work/ca-certificates.conf" /etc/ca-certificates.conf
if [ -d /etc/ca-certificates/update.d ]; then
	# Hooks (Java's keystore) would run on every refresh; not ours to time.
	mount -t tmpfs -o mode=0755 agent-quiet /etc/ca-certificates/update.d
fi
roots=$(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt || true)

# One user with an NSS database (Chrome's ~/.pki/nssdb), on tmpfs.
uid=42777
home="$work/home"
mkdir -p "$home"
chown "$uid:$uid" "$home"
# Only root (with a home of its own here) and the test user: the nss store
# must not find the host's real users' databases.
mkdir -p "$work/roothome"
{
	echo "root:x:0:0:root:$work/roothome:/bin/sh"
	echo "quietuser:x:$uid:$uid:agent-quiet:$home:/bin/sh"
} >"$work/passwd"
mount --bind "$work/passwd" /etc/passwd
# No other homes or sessions: directories there that passwd does not name
# would be looked up with getent on every pass (directory users), which a
# laptop whose one user is in passwd never does.
for d in /home /run/user; do
	[ -d "$d" ] && mount -t tmpfs -o mode=0755 agent-quiet "$d"
done
setpriv --reuid="$uid" --regid="$uid" --clear-groups mkdir -p -m 0700 "$home/.pki/nssdb"
setpriv --reuid="$uid" --regid="$uid" --clear-groups certutil -N -d "sql:$home/.pki/nssdb" --empty-password

# Count every store tool run: a wrapper over each tool logs, then runs it.
tools="$work/tools.log"
: >"$tools"
chmod 666 "$tools"
wrap() { # PATH
	local real="$work/real-$(basename "$1")"
	cp -a "$1" "$real"
	printf '#!/bin/sh\necho "%s $*" >>%s\nexec %s "$@"\n' "$(basename "$1")" "$tools" "$real" >"$work/wrap-$(basename "$1")"
	chmod 755 "$work/wrap-$(basename "$1")"
	mount --bind "$work/wrap-$(basename "$1")" "$1"
}
wrap /usr/bin/certutil
wrap "$(command -v update-ca-certificates)"

# --- control plane and agent ---------------------------------------------
db="sqlite:$work/certplane.db"
acct=$("$work/certplane" account create --db "$db" --data-dir "$work" --name quiet)
token=$("$work/certplane" token create --db "$db" --data-dir "$work" --account "$acct" --scope device)
# A random port, until certplane answers on it (another process may hold
# the first one picked).
for try in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 20000))
	"$work/certplane" serve --listen "127.0.0.1:$port" --db "$db" --data-dir "$work" --log-level warn 2>"$work/certplane.log" &
	cp_pid=$!
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "http://127.0.0.1:$port/" && break
		kill -0 "$cp_pid" 2>/dev/null || break
		sleep 0.1
	done
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	kill "$cp_pid" 2>/dev/null || true
	wait "$cp_pid" 2>/dev/null || true
	[ "$try" = 5 ] && { echo "agent-quiet: certplane never answered:"; cat "$work/certplane.log"; exit 1; }
done
pids+=("$cp_pid")

umask 077
cat >"$work/config.json" <<JSON
{
  "control_plane_url": "http://127.0.0.1:$port/client/v4",
  "account_id": "$acct",
  "api_token": "$token",
  "poll_interval": "$POLL",
  "stores": ["system", "nss", "dir:$work/anchors", "bundle:$work/bundle.pem"],
  "state_dir": "$work/state"
}
JSON
umask 022
export CERTAGENT_CONFIG="$work/config.json" CERTAGENT_MANAGED="$work/managed.json" \
	CERTAGENT_STATE_DIR="$work/state" CERTAGENT_SOCKET="$work/certagent.sock"
prof=()
if [ "$PROFILE" = 1 ]; then
	prof=(--cpuprofile "$work/cpu.prof" --memprofile "$work/mem.prof")
	# Sample the heap from the first allocation, package init included.
	export GODEBUG=memprofilerate=4096
fi
"$work/certagent" run --log-level warn "${prof[@]}" 2>"$work/certagent.log" &
agent=$!
pids+=("$agent")

# The daemon's own status (the LocalAPI, as `certagent status` reads it,
# without the CLI's runtime probes).
status_json() { curl -s --unix-socket "$CERTAGENT_SOCKET" http://certagent/localapi/v0/status || true; }
passes() { status_json | tr ',' '\n' | sed -n 's/.*"passes": *\([0-9]*\).*/\1/p' | head -n1; }
holds_everywhere() {
	compgen -G "$work/anchors/*.pem" >/dev/null &&
		grep -q certagent /usr/local/share/ca-certificates/* 2>/dev/null ||
		ls /usr/local/share/ca-certificates/ | grep -q certagent &&
		"$work/real-certutil" -L -d "sql:$home/.pki/nssdb" | grep -q certagent
}
for _ in $(seq 1 600); do
	holds_everywhere 2>/dev/null && break
	sleep 0.1
done
holds_everywhere 2>/dev/null || { echo "agent-quiet: no first pass; agent log:"; cat "$work/certagent.log"; exit 1; }
sleep $((${POLL%s} * 2)) # let the first pass's own file events and a quiet pass go by
first_tools=$(wc -l <"$tools")

runns() { local s=0 f; for f in /proc/$agent/task/*/schedstat; do s=$((s + $(cut -d' ' -f1 "$f"))); done; echo "$s"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$agent/status"; }

# One status call per round boundary; the CPU the daemon spends answering
# it (measured around the call) is not a pass's.
a=$(runns); p0=$(passes); b=$(runns)
tools0=$(wc -l <"$tools")
per=() rsss=()
for r in $(seq 1 "$ROUNDS"); do
	sleep "$WINDOW"
	[ -n "${KEEP:-}" ] && status_json >"$work/status-$r.json"
	c=$(runns); p1=$(passes); d=$(runns)
	n=$((p1 - p0))
	if [ "$n" -gt 0 ]; then
		per+=("$(awk -v x="$((c - b))" -v n="$n" 'BEGIN {printf "%.3f", x / 1e6 / n}')")
	fi
	rsss+=("$(rss)")
	echo "round $r: $n passes, $(awk -v x="$((c - b))" 'BEGIN {printf "%.2f", x / 1e6}') ms CPU, RSS $(rss) kB" >&2
	b=$d p0=$p1
done
quiet_tools=$(($(wc -l <"$tools") - tools0))

stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "%s / %s / %s", v[1], v[int((NR + 1) / 2)], v[NR]}'; }
profiled=""
[ "$PROFILE" = 1 ] && profiled=", profilers ON (their cost included)"
echo "certagent daemon, stores system (Debian, $roots roots) + nss (1 user) + dir: + bundle:, poll_interval $POLL, $ROUNDS rounds of ${WINDOW}s$profiled:"
echo "  CPU per no-change pass (ms, min / median / max): $(stats "${per[@]}")"
echo "  RSS (MiB, min / median / max): $(stats $(for k in "${rsss[@]}"; do awk -v k="$k" 'BEGIN {printf "%.1f\n", k / 1024}'; done))"
# Anonymous memory is the daemon's own (heap, stacks, runtime); file-backed
# is the pages of the certagent binary it runs, shared and evictable.
echo "  RSS at the end: $(awk '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {printf "anonymous %.1f MiB, file-backed (the binary) %.1f MiB", a / 1024, f / 1024}' "/proc/$agent/status")"
last=$(status_json)
echo "  passes that read every store: last at $(echo "$last" | tr ',' '\n' | sed -n 's/.*"last_verified": *"\([^"]*\)".*/\1/p' | head -n1), last pass at $(echo "$last" | tr ',' '\n' | sed -n 's/.*"last_sync": *"\([^"]*\)".*/\1/p' | head -n1)"
echo "  store tools run by the first pass (install): $first_tools; by the quiet passes: $quiet_tools"

kill -TERM "$agent"
wait "$agent" 2>/dev/null || true
pids=("${pids[@]/$agent/}")

# The floor: the same binary as a daemon with no config (no stores, no
# passes, no control plane), for RSS and idle CPU in the same run.
floor="$work/floor"
mkdir -p "$floor"
CERTAGENT_CONFIG="$floor/none.json" CERTAGENT_MANAGED="$floor/managed.json" CERTAGENT_STATE_DIR="$floor/state" \
	CERTAGENT_SOCKET="$floor/certagent.sock" "$work/certagent" run --log-level error 2>"$floor/log" &
fpid=$!
pids+=("$fpid")
sleep 5
f0=0
for f in /proc/$fpid/task/*/schedstat; do f0=$((f0 + $(cut -d' ' -f1 "$f"))); done
sleep "$WINDOW"
f1=0
for f in /proc/$fpid/task/*/schedstat; do f1=$((f1 + $(cut -d' ' -f1 "$f"))); done
echo "  floor, the same binary as a daemon with no config: RSS $(awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {printf "%.1f MiB (anonymous %.1f, file-backed %.1f)", r / 1024, a / 1024, f / 1024}' "/proc/$fpid/status"), CPU $(awk -v x="$((f1 - f0))" 'BEGIN {printf "%.2f", x / 1e6}') ms in ${WINDOW}s"
kill -TERM "$fpid"
wait "$fpid" 2>/dev/null || true
pids=("${pids[@]/$fpid/}")

# A one-shot sync with the daemon stopped: a new process, nothing to change.
before=$(wc -l <"$tools")
"$work/certagent" sync --json >"$work/sync.json" 2>"$work/sync.log" || { echo "agent-quiet: sync failed:"; cat "$work/sync.log"; }
after=$(wc -l <"$tools")
echo "  store tools run by a one-shot \`certagent sync\` with nothing to change: $((after - before))"
if [ "$((after - before))" -gt 0 ]; then
	tail -n "$((after - before))" "$tools" | sed 's/^/    /'
fi

if [ -s "$work/mem.prof" ]; then
	echo "  the daemon's memory at its last heap profile (runtime figures, bytes):"
	sed 's/^/    /' "$work/mem.prof.txt"
	echo "  live heap by allocation site:"
	go tool pprof -top -inuse_space -nodecount=25 "$work/certagent" "$work/mem.prof" 2>/dev/null | sed 's/^/    /'
fi
if [ -s "$work/cpu.prof" ]; then
	echo "  where a pass's CPU went (the daemon's whole run at 1 kHz; cumulative, passes only):"
	go tool pprof -top -cum -focus='agent\.\(\*Agent\)\.pass$' -nodecount=40 "$work/certagent" "$work/cpu.prof" 2>/dev/null | sed 's/^/    /'
	echo "  and by leaf function:"
	go tool pprof -top -nodecount=20 "$work/certagent" "$work/cpu.prof" 2>/dev/null | sed 's/^/    /'
fi
