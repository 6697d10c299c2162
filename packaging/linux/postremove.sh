#!/bin/sh
# certagent post-remove: deb postrm, rpm %postun, Arch post_remove, apk
# post-deinstall. POSIX sh (see postinstall.sh).
#
# Upgrades (deb upgrade and its abort/failure cases, rpm 1) keep everything.
# Any removal deletes the state, logs and socket; a deb purge also deletes
# the site settings file, which the package deliberately does not own (so
# upgrades never stop at a conffile prompt). rpm, Arch and apk have no purge:
# like rpm's .rpmsave, the admin's /etc/certagent/managed.json stays there.
set -e

case "$1" in
upgrade | failed-upgrade | abort-install | abort-upgrade | disappear | 1)
	exit 0
	;;
esac

rm -rf /var/lib/certagent /var/log/certagent /run/certagent

if [ "$1" = purge ]; then
	rm -f /etc/certagent/managed.json
	# dpkg has already removed the conffile; leave the directory if the
	# admin put anything else there.
	rmdir /etc/certagent 2>/dev/null || true
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
