#!/usr/bin/env bash
# Installs, from Debian's packages, every tool the tests use. Idempotent.
set -euo pipefail

pkgs=(
	# the real Debian system store and TLS clients
	ca-certificates curl openssl
	# certutil for NSS databases, and a real browser that reads ~/.pki/nssdb
	libnss3-tools chromium
	# trust(1), the p11-kit tool of the RHEL and Arch families
	p11-kit
	# keytool and a Java TLS client
	default-jdk-headless
	# unshare, findmnt
	util-linux
	# go test -race needs cgo: a C compiler and the C library headers
	gcc libc6-dev
	# service(8): the SysV-init service tests (no systemd) drive it
	init-system-helpers
	# systemd-analyze verify checks the rendered certagent.service
	systemd
	# the PostgreSQL storage backend's tests and fleet simulation (scripts/pg-start.sh)
	postgresql
	# HTTP load generator for the poll-throughput numbers in docs/performance.md
	wrk
	# packaging (issue 8): lintian for the deb, rpm and pacman to install the
	# rpm/Arch packages, wixl/msitools to build and inspect the MSI,
	# osslsigncode for Authenticode, and independent xar/cpio readers to check
	# the macOS pkg
	lintian rpm pacman-package-manager wixl msitools osslsigncode
	# the Wine tier (scripts/wine-test.sh): Windows binaries under Wine 8,
	# and mingw-w64 for its ProcessPrng stub
	wine wine64 gcc-mingw-w64-x86-64
	libarchive-tools 7zip cpio
	# the runtimes store and real Firefox (issue 17): the runtimes that ignore
	# the OS store, run as a user would (git-http-backend comes with git),
	# Firefox ESR for the nss and firefox-policy stores, and an NSS passwd
	# source outside /etc/passwd to stand in for directory-service users
	firefox-esr nodejs python3-requests python3-pip git libnss-extrausers
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
