#!/bin/sh
# certagent post-install: deb postinst, rpm %post, Arch post_install and
# post_upgrade, apk post-install and post-upgrade.
#
# POSIX sh only: nfpm pastes this body into a shell function in Arch's
# .INSTALL, where the shebang is just a comment.
#
# Arguments differ by format (deb: configure|abort-*; rpm: 1 install, 2
# upgrade; Arch and apk: version strings). Every call means "our files are in
# place", so every call does the same thing: make sure the state directory
# exists and (re)start the service, which also picks up a new binary after an
# upgrade.
set -e

# status.json must be readable by `certagent status` as any user; the
# ledger inside is 0600 by itself.
mkdir -p /var/lib/certagent
chmod 0755 /var/lib/certagent
# The unit grants ReadWritePaths= only to directories that exist (a "-"
# path that is missing is skipped), and the firefox-policy and runtimes
# stores write under this one of ours.
mkdir -p /usr/local/share/certagent
chmod 0755 /usr/local/share/certagent

# Only talk to systemd when it is PID 1: containers, chroots and image builds
# have systemctl but no systemd, and an install there must still succeed.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	systemctl enable certagent.service >/dev/null 2>&1 ||
		echo "certagent: warning: could not enable certagent.service" >&2
	# A missing or half-written config does not stop the daemon: it keeps
	# running, answers `certagent status` ("config invalid") and starts as
	# soon as a valid config is written (docs/daemon.md). If it does fail to
	# start, the unit retries every 5 s and the install itself still succeeds.
	systemctl restart certagent.service ||
		echo "certagent: warning: certagent.service did not start; see: journalctl -u certagent" >&2
else
	echo "certagent: systemd is not running; not starting the service" >&2
fi
exit 0
