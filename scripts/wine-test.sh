#!/usr/bin/env bash
# The Wine tier: certagent's Windows code run for real, between the fakes
# that the Linux tests use and a real Windows machine (docs/windows.md says
# what this proves and what it cannot).
#
#   scripts/wine-test.sh            unit tiers + end to end
#   scripts/wine-test.sh --mutant   also prove the tier fails when the ROOT
#                                   adapter's Win32 delete is broken
#
# 1. Debian's Wine 8 and mingw-w64 (installed here if missing).
# 2. bcryptprimitives.dll built from scripts/wine/processprng.c: Go 1.22+
#    needs ProcessPrng, which Wine 8 lacks. It goes in system32 (the Go
#    runtime loads it with LOAD_LIBRARY_SEARCH_SYSTEM32).
# 3. A pristine prefix, made once per Wine version and stub (cached under
#    $CERTAGENT_WINE_CACHE), copied afresh for every test binary.
# 4. The Windows test binaries of the packages with Windows code, under
#    CERTAGENT_E2E=1: the real LocalMachine\ROOT through crypt32, the
#    registry policy key, the LocalAPI named pipe.
# 5. End to end against a real certplane on this side of loopback: managed
#    settings in HKLM\SOFTWARE\Policies\certagent, certagent sync with store
#    system, status; the service through the SCM (install with recovery
#    actions, start, status over the pipe, stop, uninstall); the MSI with
#    msiexec (install with properties, upgrade without, uninstall purges).
#
# A test that skips is a failure here, as under CERTAGENT_E2E=1 elsewhere,
# except the ones named in WINE_SKIP below, each with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MUTANT=0
[[ ${1:-} == --mutant ]] && MUTANT=1

log() { printf 'wine-test: %s\n' "$*" >&2; }
die() { printf 'wine-test: FAIL: %s\n' "$*" >&2; exit 1; }

# --- 1. tools -------------------------------------------------------------
need=()
for p in wine wine64 gcc-mingw-w64-x86-64; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
export WINEDEBUG=-all WINEARCH=win64
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go

CACHE=${CERTAGENT_WINE_CACHE:-/var/tmp/certagent-wine}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certagent-wine.XXXXXX")
CP_PID=
cleanup() {
	[[ -n ${WINEPREFIX:-} && -d ${WINEPREFIX:-} ]] && wineserver -k 2>/dev/null || true
	[[ -n $CP_PID ]] && kill "$CP_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$CACHE"

# --- 2. the ProcessPrng stub ----------------------------------------------
stub_src=(scripts/wine/processprng.c scripts/wine/bcryptprimitives.def)
stub_key=$( (wine --version; cat "${stub_src[@]}") | sha256sum | cut -c1-16)
STUB=$CACHE/bcryptprimitives-$stub_key.dll
if [[ ! -f $STUB ]]; then
	x86_64-w64-mingw32-gcc -shared -O2 -Wall -o "$STUB.tmp" "${stub_src[@]}" -ladvapi32
	mv "$STUB.tmp" "$STUB"
fi

# --- 3. the pristine prefix -----------------------------------------------
PRISTINE=$CACHE/prefix-$stub_key
if [[ ! -f $PRISTINE/.ready ]]; then
	log "making a pristine prefix (once per Wine version)"
	rm -rf "$PRISTINE"
	WINEPREFIX=$PRISTINE wineboot -i >/dev/null 2>&1
	# The registry reaches disk when the server exits: copy only after.
	timeout 300 env WINEPREFIX=$PRISTINE wineserver -w || die "wineboot did not finish within 300s"
	cp "$STUB" "$PRISTINE/drive_c/windows/system32/bcryptprimitives.dll"
	touch "$PRISTINE/.ready"
fi
fresh_prefix() {
	[[ -n ${WINEPREFIX:-} ]] && { wineserver -k 2>/dev/null || true; }
	export WINEPREFIX=$WORK/prefix
	rm -rf "$WINEPREFIX"
	cp -a --reflink=auto "$PRISTINE" "$WINEPREFIX"
}

# --- 4. test binaries -----------------------------------------------------
# Packages run whole, and the Windows-only tests of platform (its other
# tests read Linux files: os-release, passwd, systemd units).
# WINE_SKIP: what Wine 8 cannot show, with the reason; Windows must pass it.
WINE_SKIP='TestLocalAPIPipeSingleInstance' # Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE
declare -A RUN=(
	[./trust]=.
	[./trust/trusttest]=.
	[./trust/winroot]=.
	[./api]=.
	[./platform]='^(TestLocalAPIPipe.*|TestDialMissingPipe|TestManagedFromRegistryKey|TestManagedFromRegistry|TestOSVersionFromTheRegistry|TestWindowsReleaseString|TestMacVersion)$'
)
BIN=$WORK/bin
mkdir -p "$BIN"
if ((MUTANT)); then
	# A copy of the tree whose ROOT adapter "deletes" without deleting.
	# The sources only: not .git, builds or packages.
	mkdir "$WORK/src"
	tar -C "$ROOT" --exclude=./.git --exclude=./bin --exclude=./dist -cf - . | tar -C "$WORK/src" -xf -
	sed -i 's|if err := windows.CertDeleteCertificateFromStore(ctx); err != nil {|if err := error(nil); err != nil \&\& ctx != nil {|' "$WORK/src/trust/winroot/store_windows.go"
	grep -q 'if err := error(nil)' "$WORK/src/trust/winroot/store_windows.go" || die "mutant: the delete call was not found"
	(cd "$WORK/src" && GOOS=windows GOARCH=amd64 CGO_ENABLED=0 "$GO" test -c -o "$BIN/mutant.test.exe" ./trust/winroot)
	fresh_prefix
	if CERTAGENT_E2E=1 wine "$BIN/mutant.test.exe" -test.run 'TestRealStoreConformance' >"$WORK/mutant.log" 2>&1; then
		die "mutant: the real-store conformance suite passed with a delete that deletes nothing"
	fi
	grep -q -- '--- FAIL: TestRealStoreConformance' "$WORK/mutant.log" || die "mutant: failed, but not in the conformance suite: $(tail -5 "$WORK/mutant.log")"
	log "mutant: a broken delete fails the real-store suite ($(grep -c -- '    --- FAIL' "$WORK/mutant.log") cases)"
fi

pass=0 fail=0 failed=()
for pkg in "${!RUN[@]}"; do
	name=$(echo "${pkg#./}" | tr / _)
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 "$GO" test -c -o "$BIN/$name.test.exe" "$pkg"
	fresh_prefix
	out=$WORK/$name.log
	set +e
	CERTAGENT_E2E=1 timeout 600 wine "$BIN/$name.test.exe" -test.v -test.count=1 \
		-test.run "${RUN[$pkg]}" -test.skip "$WINE_SKIP" >"$out" 2>&1
	rc=$?
	set -e
	n_pass=$(grep -c -- '^--- PASS' "$out" || true)
	n_fail=$(grep -c -- '^--- FAIL' "$out" || true)
	n_skip=$(grep -cE -- '^ *--- SKIP' "$out" || true)
	if ((rc != 0 || n_fail > 0 || n_skip > 0 || n_pass == 0)); then
		failed+=("$pkg")
		fail=$((fail + 1))
		log "$pkg: exit $rc, $n_pass passed, $n_fail failed, $n_skip skipped"
		grep -E -- '--- (FAIL|SKIP)|^\s+\S+_test\.go:[0-9]+:|Error:|Messages:|^panic' "$out" | head -40 >&2
	else
		pass=$((pass + 1))
		log "$pkg: $n_pass tests passed under Wine"
	fi
done

# --- 5. end to end --------------------------------------------------------
log "end to end: certplane on loopback, certagent.exe under Wine"
e2e_ok=0 e2e_fail=0
check() { # check DESCRIPTION COMMAND...: one end-to-end assertion
	local what=$1
	shift
	if "$@" >"$WORK/check.out" 2>&1; then
		e2e_ok=$((e2e_ok + 1))
		log "  ok: $what"
	else
		e2e_fail=$((e2e_fail + 1))
		log "  FAILED: $what"
		sed 's/^/    /' "$WORK/check.out" | tail -20 >&2
	fi
}
CGO_ENABLED=0 "$GO" build -o "$WORK/certplane" ./cmd/certplane
GOOS=windows GOARCH=amd64 CGO_ENABLED=0 "$GO" build -o "$WORK/certagent.exe" ./cmd/certagent
CPD=$WORK/cp
mkdir -p "$CPD"
ACCOUNT=$("$WORK/certplane" account create --data-dir "$CPD" --name wine 2>/dev/null)
TOKEN=$("$WORK/certplane" token create --data-dir "$CPD" --account "$ACCOUNT" --scope device 2>/dev/null)
"$WORK/certplane" serve --listen 127.0.0.1:0 --data-dir "$CPD" --deploy-delay 1s >"$WORK/certplane.log" 2>&1 &
CP_PID=$!
URL=
for _ in $(seq 300); do
	URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$WORK/certplane.log" | head -n1)
	[[ -n $URL ]] && break
	kill -0 "$CP_PID" 2>/dev/null || die "certplane exited: $(tail -5 "$WORK/certplane.log")"
	sleep 0.1
done
[[ -n $URL ]] || die "certplane did not report its URL within 30s: $(tail -5 "$WORK/certplane.log")"
[[ $URL == */client/v4 ]] || URL=$URL/client/v4
# The in-use root, and the name its registry entry has (SHA-1 of the DER).
PEM=$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/accounts/$ACCOUNT/gateway/certificates" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0]["certificate"])')
THUMB=$(openssl x509 -outform der <<<"$PEM" | sha1sum | cut -c1-40 | tr a-f A-F)
ROOTKEY="HKLM\\SOFTWARE\\Microsoft\\SystemCertificates\\ROOT\\Certificates\\$THUMB"
in_root() { wine reg query "$ROOTKEY" >/dev/null 2>&1; }
not_in_root() { ! in_root; }
# The service's first pass, not a timer, decides: wait up to 60 s for it.
comes_into_root() {
	for _ in $(seq 60); do in_root && return 0; sleep 1; done
	return 1
}
POLICY='HKLM\SOFTWARE\Policies\certagent'

# 5a. certagent sync and status, configured by policy values.
fresh_prefix
EXE='C:\Program Files\certagent\certagent.exe'
mkdir -p "$WINEPREFIX/drive_c/Program Files/certagent"
cp "$WORK/certagent.exe" "$WINEPREFIX/drive_c/Program Files/certagent/"
# Services live only while a user process does: hold one for the whole run.
(sleep 100000 | wine cmd >/dev/null 2>&1 &)
wine reg add "$POLICY" /v control_plane_url /t REG_SZ /d "$URL" /f >/dev/null
wine reg add "$POLICY" /v account_id /t REG_SZ /d "$ACCOUNT" /f >/dev/null
wine reg add "$POLICY" /v api_token /t REG_SZ /d "$TOKEN" /f >/dev/null
wine reg add "$POLICY" /v stores /t REG_MULTI_SZ /d system /f >/dev/null
check "the root is not in LocalMachine\\ROOT before certagent runs" not_in_root
check "certagent sync installs the in-use root (policy key settings, store system)" wine "$EXE" sync
check "the root is in LocalMachine\\ROOT's registry store" in_root
check "status (daemon down) shows it installed and trusted" bash -c "wine '$EXE' status | grep -q 'installed, trusted'"

# 5b. the service through the SCM.
check "service install registers, sets recovery and starts it" wine "$EXE" service install
check "the SCM entry runs 'certagent run' as LocalSystem, automatic" bash -c \
	"wine reg query 'HKLM\\System\\CurrentControlSet\\Services\\certagent' | tr -d '\\r' | grep -q 'ImagePath.*certagent.exe\" run' &&
	 wine reg query 'HKLM\\System\\CurrentControlSet\\Services\\certagent' | tr -d '\\r' | grep -qE 'Start +REG_DWORD +0x2'"
check "service status says running (exit 0)" wine "$EXE" service status
daemon_healthy() {
	for _ in $(seq 60); do
		wine "$EXE" status >"$WORK/status.txt" 2>&1 && grep -q 'Daemon *running' "$WORK/status.txt" &&
			grep -q 'installed, trusted' "$WORK/status.txt" && return 0
		sleep 1
	done
	cat "$WORK/status.txt"
	return 1
}
check "status over the LocalAPI pipe: daemon running, root installed and trusted" daemon_healthy
check "sync through the daemon restores a deleted ROOT entry" bash -c \
	"wine reg delete '$ROOTKEY' /f >/dev/null && wine '$EXE' sync >/dev/null && wine reg query '$ROOTKEY' >/dev/null"
check "service stop" wine "$EXE" service stop
check "service status says stopped (exit 3)" bash -c "wine '$EXE' service status; test \$? -eq 3"
check "service uninstall" wine "$EXE" service uninstall
check "service status says not installed (exit 4)" bash -c "wine '$EXE' service status; test \$? -eq 4"
check "service uninstall again succeeds" wine "$EXE" service uninstall

# 5c. the MSI: install with properties, upgrade without, uninstall purges.
if command -v wixl >/dev/null; then
	fresh_prefix
	(sleep 100000 | wine cmd >/dev/null 2>&1 &)
	commits=$(git rev-list --count HEAD 2>/dev/null || echo 1)
	# Two builds of the package target, the second one commit "later", so
	# that the second is a major upgrade of the first.
	make -s package-windows PKG_BIN="$WORK/pkgbin" PKG_DIST="$WORK/msi1" PKG_COMMITS="$commits" >"$WORK/msi1.log" 2>&1 ||
		die "make package-windows: $(tail -5 "$WORK/msi1.log")"
	make -s package-windows PKG_BIN="$WORK/pkgbin" PKG_DIST="$WORK/msi2" PKG_COMMITS=$((commits + 1)) >"$WORK/msi2.log" 2>&1 ||
		die "make package-windows: $(tail -5 "$WORK/msi2.log")"
	MSI1=$(ls "$WORK"/msi1/*.msi) MSI2=$(ls "$WORK"/msi2/*.msi)
	winpath() { echo "Z:${1//\//\\}"; }
	check "msiexec /i /qn with CONTROL_PLANE_URL, ACCOUNT_ID, API_TOKEN" \
		wine msiexec /i "$(winpath "$MSI1")" /qn CONTROL_PLANE_URL="$URL" ACCOUNT_ID="$ACCOUNT" API_TOKEN="$TOKEN"
	check "the MSI installed certagent.exe" test -f "$WINEPREFIX/drive_c/Program Files/certagent/certagent.exe"
	check "the MSI wrote the policy key" bash -c "wine reg query '$POLICY' /v account_id | tr -d '\\r' | grep -q '$ACCOUNT'"
	check "the MSI registered the service" wine reg query 'HKLM\System\CurrentControlSet\Services\certagent'
	check "the MSI's service installs the root" comes_into_root
	check "an upgrade without properties keeps the policy values" bash -c \
		"wine msiexec /i '$(winpath "$MSI2")' /qn && wine reg query '$POLICY' /v api_token | tr -d '\\r' | grep -q 'REG_SZ' &&
		 wine reg query '$POLICY' /v control_plane_url | tr -d '\\r' | grep -qF '$URL'"
	check "after the upgrade the root is in ROOT" comes_into_root
	check "msiexec /x removes the product" wine msiexec /x "$(winpath "$MSI2")" /qn
	check "the uninstall purged the root from ROOT" not_in_root
	check "the uninstall removed the service" bash -c "! wine reg query 'HKLM\\System\\CurrentControlSet\\Services\\certagent' >/dev/null 2>&1"
else
	e2e_fail=$((e2e_fail + 1))
	log "  FAILED: wixl is missing (scripts/install-deps.sh installs it): the MSI was not tested"
fi

log "test binaries: $pass passed, $fail failed${failed[*]:+ (${failed[*]})}; end to end: $e2e_ok passed, $e2e_fail failed"
((fail == 0 && e2e_fail == 0))
