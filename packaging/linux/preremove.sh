#!/bin/sh
# certagent pre-remove: deb prerm, rpm %preun, Arch pre_remove, apk
# pre-deinstall. POSIX sh (see postinstall.sh).
#
# Only an explicit upgrade keeps the agent: deb says upgrade, failed-upgrade
# or deconfigure; rpm says 1 (another version stays installed). Everything
# else is a removal: deb remove, rpm 0, and the version strings Arch and apk
# pass (their upgrades call separate upgrade hooks, never this one).
set -e

case "$1" in
upgrade | failed-upgrade | deconfigure | 1)
	# The new version's post-install restarts the service (rpm runs it
	# before this script), so there is nothing to do here.
	exit 0
	;;
esac

# Stop the daemon first, or its drift repair would put back the roots that
# the purge below removes.
if [ -d /run/systemd/system ]; then
	systemctl disable --now certagent.service >/dev/null 2>&1 ||
		echo "certagent: warning: could not stop certagent.service" >&2
fi

# Remove every root the agent installed, from every store, and its state. A
# failure here is reported loudly but does not block the removal: a package
# that cannot be removed is worse for an admin than a warning to act on.
if command -v certagent >/dev/null 2>&1; then
	certagent uninstall --purge ||
		echo "certagent: warning: 'certagent uninstall --purge' failed; roots may remain: run it again by hand before removing the package" >&2
fi
exit 0
