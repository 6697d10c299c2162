#!/usr/bin/env bash
# Where one run of Debian's update-ca-certificates spends its time on the
# full store (about 145 roots): the floor under the system store's install
# (trust/linuxca runs the tool once per pass; smallstep/truststore once per
# root). Inside a private mount namespace, tmpfs copies of /etc/ssl/certs,
# /usr/local/share/ca-certificates and /etc/ca-certificates, so the host's
# store is never touched.
#
# For ROUNDS rounds it times, in turn, a run that adds 10 new roots (what
# our install runs), a run that adds 1 (what each truststore.Install runs),
# and a run that adds nothing (our removal, after we deleted the links
# ourselves), each in the environment certagent gives tools (PATH, LANG=C,
# LC_ALL=C) and the add-1 run also with LANG=C.UTF-8 (truststore's commands
# inherit their caller's locale). Each run goes through a copy of the tool
# that only prints a timestamp between its phases. Then it counts the
# programs one add-10 and one add-nothing run execute (strace, if present).
#
# HOOKS=1 keeps /etc/ca-certificates/update.d (Debian's jks-keystore hook:
# dpkg triggers and the Java keystore), with tmpfs copies of /var/lib/dpkg,
# /var/lib/ca-certificates-java and /var/log under it, and times add-10 and
# add-1 runs with the hook.
#
#   sudo scripts/debian-refresh-profile.sh            # 5 rounds, hooks masked
#   ROUNDS=3 HOOKS=1 sudo scripts/debian-refresh-profile.sh
set -euo pipefail

ROUNDS=${ROUNDS:-5}
HOOKS=${HOOKS:-}
TOOL=/usr/sbin/update-ca-certificates
ANCHORS=/usr/local/share/ca-certificates

if [ -z "${REFRESH_PROFILE_INSIDE:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "debian-refresh-profile: needs root (mount namespace)" >&2; exit 2; }
	for t in unshare openssl "$TOOL"; do
		command -v "$t" >/dev/null || { echo "debian-refresh-profile: $t missing (scripts/install-deps.sh)" >&2; exit 2; }
	done
	export REFRESH_PROFILE_INSIDE=1
	exec unshare --mount --propagation private "$0" "$@"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

copy_over() { # DIR: a tmpfs over DIR holding a copy of what it held
	local d=$1 keep="$work/keep$(echo "$1" | tr / _)"
	mkdir -p "$keep"
	cp -a "$d/." "$keep/"
	mount -t tmpfs -o mode=0755 refresh-profile "$d"
	cp -a "$keep/." "$d/"
	rm -rf "$keep"
	findmnt -n -o FSTYPE,SOURCE --target "$d" | grep -q '^tmpfs *refresh-profile$' ||
		{ echo "debian-refresh-profile: $d is not private" >&2; exit 3; }
}
dirs=(/etc/ssl/certs "$ANCHORS" /etc/ca-certificates)
if [ -n "$HOOKS" ]; then
	mkdir -p /var/lib/ca-certificates-java
	dirs+=(/var/lib/dpkg /var/lib/ca-certificates-java /var/log)
fi
for d in "${dirs[@]}"; do copy_over "$d"; done
[ -n "$HOOKS" ] || rm -f /etc/ca-certificates/update.d/*
echo "hooks: $(ls /etc/ca-certificates/update.d | tr '\n' ' ')"

# The tool with a timestamp before each phase; nothing else changed.
timed="$work/update-ca-certificates"
awk '
	/^cd "\$ETCCERTSDIR"$/                   { print "echo \"T start $(date +%s%N)\" >&2" }
	/^# Handle certificates that should be/  { print "echo \"T fresh $(date +%s%N)\" >&2" }
	/^# Now process certificate authorities/ { print "echo \"T distro-roots $(date +%s%N)\" >&2" }
	/^ADDED_CNT=/                            { print "echo \"T local-roots $(date +%s%N)\" >&2" }
	/^  if \[ "\$verbose" = 0 \]$/           { print "echo \"T orphan-sweep $(date +%s%N)\" >&2" }
	/^# chmod and mv only if TEMPBUNDLE/     { print "echo \"T rehash $(date +%s%N)\" >&2" }
	/^if \[ -d "\$HOOKSDIR" \]$/             { print "echo \"T bundle $(date +%s%N)\" >&2" }
	{ print }
	END                                      { print "echo \"T hooks $(date +%s%N)\" >&2" }
' "$TOOL" >"$timed"
chmod 755 "$timed"
[ "$(grep -c '^echo "T ' "$timed")" = 8 ] || { echo "debian-refresh-profile: this update-ca-certificates has other phases" >&2; exit 2; }

for i in $(seq 10); do
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
		-subj "/CN=refresh profile root $i" -days 2 -out "$work/root$i.pem" 2>/dev/null
done
gen=0
add() { # N: N roots the store has never seen (new names each time)
	gen=$((gen + 1))
	for i in $(seq "$1"); do cp "$work/root$i.pem" "$ANCHORS/profile-$gen-$i.crt"; done
}
reset() { # drop our roots and their links, untimed, as certagent's removal does
	rm -f "$ANCHORS"/profile-*.crt
	find /etc/ssl/certs -xtype l -delete
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C LC_ALL=C "$TOOL" >/dev/null 2>&1
}
run() { # LABEL VAR=VALUE...: one timed run in that locale, phases in ms
	local s e label=$1
	shift
	s=$(date +%s%N)
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" "$timed" 2>"$work/t" >"$work/out"
	e=$(date +%s%N)
	printf '%-22s %5d ms  %-24s' "$label" $(((e - s) / 1000000)) "$(grep -o '[0-9]* added, [0-9]* removed' "$work/out")"
	grep '^T ' "$work/t" | awk 'NR == 1 { p = $3; next } { printf "  %s %d", $2, ($3 - p) / 1000000; p = $3 } END { print "" }'
}

reset
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	echo "round $r (load $(cut -d' ' -f1 /proc/loadavg)):"
	add 10; run "add 10, LANG=C" LANG=C LC_ALL=C; reset
	add 1; run "add 1, LANG=C" LANG=C LC_ALL=C; reset
	add 1; run "add 1, LANG=C.UTF-8" LANG=C.UTF-8; reset
	run "add nothing, LANG=C" LANG=C LC_ALL=C
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

if command -v strace >/dev/null; then
	count() { # LABEL
		rm -rf "$work/strace" && mkdir "$work/strace"
		strace -ff -qq -e trace=execve -e signal=none -o "$work/strace/p" \
			env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C LC_ALL=C "$TOOL" >/dev/null 2>&1
		cat "$work"/strace/p.* >"$work/execs"
		echo "$1: $(grep -c ' = 0$' "$work/execs") programs run ($(grep -c ENOENT "$work/execs") failed PATH lookups):" \
			"$(grep ' = 0$' "$work/execs" | sed 's/^execve("\([^"]*\)".*/\1/' | sort | uniq -c | sort -rn | awk '{ printf "%s %s, ", $1, $2 }')"
	}
	add 10; count "add 10"; reset
	count "add nothing"
fi
