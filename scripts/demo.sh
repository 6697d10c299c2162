#!/usr/bin/env bash
# make demo: the control plane and the agent end to end, on this machine, with
# no root and nothing outside a temporary directory.
#
#   1. certplane on embedded SQLite, an account, a read token (for the agent)
#      and a write token (for the admin steps below)
#   2. a second, generated root is activated; a third, custom root is made
#      here with openssl, uploaded (BYO-PKI) and turned on for inspection
#   3. certagent syncs into a dir: store and a bundle: store
#   4. a local HTTPS server whose leaf the in-use root signed is fetched with
#      curl --cacert <the agent's bundle>: a real TLS handshake
#   5. roots are deactivated; the agent removes them and the handshake fails
#   6. the daemon (certagent run) repairs a deleted root, reports status, and
#      keeps everything when the control plane goes away (fail static)
#
# Every wait is for a condition (a server's own "listening" line, a TLS
# handshake, a socket, a file), never for a fixed time: on a loaded machine
# it waits longer, and after DEMO_TIMEOUT seconds (default 120) or when the
# process it waits for has died, it stops with a message saying what it was
# waiting for and the end of that process's log.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
if [[ ! -x $BIN/certagent || ! -x $BIN/certplane ]]; then
	make build >/dev/null
fi
for tool in openssl curl; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is needed (scripts/install-deps.sh installs it)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/certagent-demo.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -t 1 ]]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'; else B= G= R= N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
ok() { printf '%s  ✓ %s%s\n' "$G" "$*" "$N"; }
die() { printf '%s  ✗ %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
run() { printf '  $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; return "${PIPESTATUS[0]}"; }

DEMO_TIMEOUT=${DEMO_TIMEOUT:-120}
# wait_for WHAT PID LOG CMD...: run CMD until it succeeds. Dies, naming WHAT
# and showing the end of LOG, when PID has exited or DEMO_TIMEOUT passes.
wait_for() {
	local what=$1 pid=$2 log=$3
	shift 3
	local deadline=$((SECONDS + DEMO_TIMEOUT))
	until "$@" 2>/dev/null; do
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			[[ -n $log ]] && tail -n 20 "$log" | sed 's/^/    | /' >&2
			die "$what: the process ($pid) exited before it was ready (the end of $log is above)"
		fi
		if ((SECONDS >= deadline)); then
			[[ -n $log ]] && tail -n 20 "$log" | sed 's/^/    | /' >&2
			die "$what: still not ready after ${DEMO_TIMEOUT}s (DEMO_TIMEOUT); the end of $log is above"
		fi
		sleep 0.1
	done
}

DATA=$WORK/certplane
DB=sqlite:$DATA/certplane.db
cp_() { "$BIN/certplane" "$@" --db "$DB" --data-dir "$DATA"; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }

step "certplane: a control plane on embedded SQLite in $WORK"
mkdir -p "$DATA"
ACCOUNT=$(cp_ account create --name demo 2>/dev/null)
DEVICE_TOKEN=$(cp_ token create --account "$ACCOUNT" --scope device 2>/dev/null)
WRITE_TOKEN=$(cp_ token create --account "$ACCOUNT" --scope write 2>/dev/null)
ok "account $ACCOUNT, a device token for the agent (list and check in, nothing else), a write token for the admin"
"$BIN/certplane" serve --listen 127.0.0.1:0 --db "$DB" --data-dir "$DATA" --deploy-delay 1s >"$WORK/certplane.log" 2>&1 &
CERTPLANE=$!
PIDS+=("$CERTPLANE")
URL=
# certplane logs "listening" with the URL once its socket is bound.
certplane_url() { URL=$(json_field url <"$WORK/certplane.log"); [[ -n $URL ]]; }
wait_for "certplane serve (its \"listening\" line)" "$CERTPLANE" "$WORK/certplane.log" certplane_url
wait_for "certplane serve (GET /healthz)" "$CERTPLANE" "$WORK/certplane.log" curl -fsS -o /dev/null "${URL%/client/v4}/healthz"
ok "serving $URL"
DASHBOARD=${URL%/client/v4}/dashboard/
curl -fsS -o /dev/null "${DASHBOARD}login" || die "the dashboard does not answer at $DASHBOARD"
ok "dashboard at $DASHBOARD (log in with the write token)"
API=$URL/accounts/$ACCOUNT
admin() { curl -sS -H "Authorization: Bearer $WRITE_TOKEN" -H 'Content-Type: application/json' "$@"; }

# Output is captured before it is searched: with pipefail, `cmd | grep -q`
# fails by chance when grep exits first and cmd dies of SIGPIPE.
is_available() {
	local out
	out=$(cp_ cert list --account "$ACCOUNT" 2>/dev/null) || return 1
	grep -Eq "^$1[[:space:]]+available" <<<"$out"
}
wait_available() { # id
	wait_for "certificate $1 to become available (the deployer)" "$CERTPLANE" "$WORK/certplane.log" is_available "$1"
}

step "admin: generate and activate a second root (the account started with one)"
SECOND=$(admin -X POST -d '{"validity_period_days":365}' "$API/gateway/certificates" | json_field id)
admin -X POST -d '{}' "$API/gateway/certificates/$SECOND/activate" >/dev/null
wait_available "$SECOND"
ok "generated $SECOND: inactive → pending_deployment → available"

step "admin: make our own root with openssl, upload it (BYO-PKI) and turn it on"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
	-subj "/O=certagent demo/CN=certagent demo inspection root" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout "$WORK/root.key" -out "$WORK/root.pem" 2>/dev/null
pem_json() { awk '{printf "%s\\n", $0}' "$1"; }
UPLOAD=$(printf '{"name":"demo root","ca":true,"certificates":"%s","private_key":"%s"}' "$(pem_json "$WORK/root.pem")" "$(pem_json "$WORK/root.key")")
CUSTOM=$(admin -X POST -d "$UPLOAD" "$API/mtls_certificates" | json_field id)
[[ -n $CUSTOM ]] || die "upload failed"
admin -X POST -d '{}' "$API/gateway/certificates/$CUSTOM/activate" >/dev/null
wait_available "$CUSTOM"
ORIGINAL=$(cp_ cert list --account "$ACCOUNT" 2>/dev/null | awk '$3=="yes"{print $1}')
admin -X PATCH -d "{\"settings\":{\"certificate\":{\"id\":\"$CUSTOM\",\"in_use\":true}}}" "$API/gateway/configuration" >/dev/null
ok "custom root $CUSTOM uploaded, available and in use for inspection"
run cp_ cert list --account "$ACCOUNT"

step "certagent: config with a 0600 token file, a dir: store and a bundle: store"
umask 077
printf '%s\n' "$DEVICE_TOKEN" >"$WORK/token"
umask 022
cat >"$WORK/config.json" <<EOF
{
  "control_plane_url": "$URL",
  "account_id": "$ACCOUNT",
  "api_token_file": "$WORK/token",
  "stores": ["dir:$WORK/anchors", "bundle:$WORK/bundle.pem"],
  "state_dir": "$WORK/state",
  "poll_interval": "60s"
}
EOF
export CERTAGENT_CONFIG=$WORK/config.json CERTAGENT_MANAGED=$WORK/managed.json CERTAGENT_SOCKET=$WORK/certagent.sock
sed 's/^/    /' "$WORK/config.json"

step "certagent sync --dry-run: the plan, nothing changed"
run "$BIN/certagent" sync --dry-run || true

step "certagent sync: install every available root"
run "$BIN/certagent" sync || true
ls "$WORK/anchors" | sed 's/^/    anchors\//'
[[ $(ls "$WORK/anchors" | wc -l) -eq 3 ]] || die "want 3 roots in the dir: store"
ok "3 roots in the dir: store"

step "rotation readiness: the agent checked in; certplane knows which roots it trusts"
run cp_ devices list --account "$ACCOUNT"
run cp_ cert readiness --account "$ACCOUNT" --id "$CUSTOM"
READINESS=$(cp_ cert readiness --account "$ACCOUNT" --id "$CUSTOM" 2>/dev/null) || die "certplane cert readiness failed"
grep -q 'ready on 1 of 1 active devices' <<<"$READINESS" || die "the device's check-in did not count"
ok "ready on 1 of 1 active devices"

# The bundle: store is the system roots plus ours in one PEM, what
# NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE or curl --cacert take.
CAFILE=$WORK/bundle.pem
[[ -s $CAFILE ]] || die "the bundle: store wrote nothing"
ok "bundle.pem holds $(grep -c 'BEGIN CERTIFICATE' "$CAFILE") certificates (system roots + ours)"

step "a second pass has nothing to do and writes nothing"
before=$(stat -c '%i %Y' "$WORK/state/ledger.json")
run "$BIN/certagent" sync | tail -n 1 || true
[[ $(stat -c '%i %Y' "$WORK/state/ledger.json") == "$before" ]] || die "the ledger was rewritten"
ok "ledger untouched"

step "TLS: a local HTTPS server whose leaf the in-use root signed"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
	-keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/root.pem" -CAkey "$WORK/root.key" -CAcreateserial \
	-days 30 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null
# Port 0: the kernel picks a free one and s_server prints it ("ACCEPT
# 127.0.0.1:PORT") once it listens.
openssl s_server -accept 127.0.0.1:0 -cert "$WORK/leaf.pem" -key "$WORK/leaf.key" -www >"$WORK/s_server.log" 2>&1 &
S_SERVER=$!
PIDS+=("$S_SERVER")
PORT=
s_server_port() { PORT=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$WORK/s_server.log" | head -n1); [[ -n $PORT ]]; }
wait_for "the test TLS server (openssl s_server's ACCEPT line)" "$S_SERVER" "$WORK/s_server.log" s_server_port
# Ready means a TLS handshake completes, not just an open port.
wait_for "a TLS handshake with the test server on port $PORT" "$S_SERVER" "$WORK/s_server.log" \
	curl -fsSk -o /dev/null "https://localhost:$PORT/"
if run curl -sS -o /dev/null -w 'HTTP %{http_code}, verify result %{ssl_verify_result}\n' --cacert "$CAFILE" "https://localhost:$PORT/"; then
	ok "curl trusts https://localhost:$PORT through the roots certagent installed"
else
	die "the TLS handshake failed"
fi

step "admin: withdraw the second root and the custom one (after switching inspection back)"
admin -X PATCH -d "{\"settings\":{\"certificate\":{\"id\":\"$ORIGINAL\",\"in_use\":true}}}" "$API/gateway/configuration" >/dev/null
admin -X POST -d '{}' "$API/gateway/certificates/$SECOND/deactivate" >/dev/null
admin -X POST -d '{}' "$API/gateway/certificates/$CUSTOM/deactivate" >/dev/null
run cp_ cert list --account "$ACCOUNT"

step "certagent sync: the withdrawn roots are removed (only ours, only those)"
run "$BIN/certagent" sync || true
[[ $(ls "$WORK/anchors" | wc -l) -eq 1 ]] || die "want 1 root left in the dir: store"
ok "1 root left"
if curl -sS -o /dev/null --cacert "$CAFILE" "https://localhost:$PORT/" 2>"$WORK/curl.err"; then
	die "the withdrawn root is still trusted"
fi
sed 's/^/    /' "$WORK/curl.err"
ok "the handshake now fails: the custom root is no longer trusted"

step "certagent run: the daemon in the background (LocalAPI on $WORK/certagent.sock)"
"$BIN/certagent" run >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
wait_for "certagent run (its LocalAPI socket)" "$DAEMON" "$WORK/daemon.log" test -S "$WORK/certagent.sock"
ok "daemon $DAEMON up"

step "drift: delete the root behind the agent's back; the daemon puts it back"
ROOTFILE=$(ls "$WORK"/anchors/*.pem)
rm -f "$ROOTFILE"
wait_for "the daemon to restore the deleted $(basename "$ROOTFILE")" "$DAEMON" "$WORK/daemon.log" test -e "$ROOTFILE"
ok "restored $(basename "$ROOTFILE")"

step "certagent status (from the running daemon)"
run "$BIN/certagent" status || true

step "fail static: the control plane goes away, nothing is removed"
kill "$CERTPLANE"; wait "$CERTPLANE" 2>/dev/null || true
run "$BIN/certagent" sync || true
[[ $(ls "$WORK/anchors" | wc -l) -eq 1 ]] || die "a root was removed while the control plane was down"
ok "still 1 root"

step "certagent certs: what it manages"
"$BIN/certagent" certs | openssl x509 -noout -subject -fingerprint -sha256 | sed 's/^/    /'

step "stop the daemon (SIGTERM)"
kill -TERM "$DAEMON"
wait "$DAEMON" 2>/dev/null && ok "stopped cleanly" || die "the daemon did not stop cleanly"

printf '\n%sdemo complete%s (everything lived in %s, now removed)\n' "$B" "$N" "$WORK"
