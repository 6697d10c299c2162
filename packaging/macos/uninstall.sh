#!/bin/sh
# Removes certagent from this Mac: stops the daemon, removes every root it
# installed (System keychain and the other configured stores) and its state,
# then its files and the Installer receipt. macOS has no package uninstall;
# MDMs run this script (Jamf policy, Kandji audit-and-enforce, Intune shell
# script). Run as root:
#   sudo "/Library/Application Support/certagent/uninstall.sh"
set -u
LABEL=dev.certagent.agent
APPDIR="/Library/Application Support/certagent"
status=0

if [ "$(id -u)" -ne 0 ]; then
	echo "certagent uninstall: run as root (sudo)" >&2
	exit 1
fi

# Stop first, or the daemon's drift repair would put the roots back.
launchctl bootout "system/$LABEL" >/dev/null 2>&1 || true

if [ -x "$APPDIR/certagent" ]; then
	if ! "$APPDIR/certagent" uninstall --purge; then
		echo "certagent uninstall: 'certagent uninstall --purge' failed; roots may remain. Files are kept so it can be run again." >&2
		exit 1
	fi
fi

rm -f "/Library/LaunchDaemons/$LABEL.plist"
# Only remove the CLI link if it is ours.
if [ "$(readlink /usr/local/bin/certagent 2>/dev/null)" = "$APPDIR/certagent" ]; then
	rm -f /usr/local/bin/certagent
fi
rm -rf "$APPDIR" /Library/Logs/certagent
pkgutil --forget dev.certagent.agent.pkg >/dev/null 2>&1 || status=$?
[ "$status" -eq 0 ] || echo "certagent uninstall: no Installer receipt to forget" >&2
echo "certagent removed"
exit 0
