#!/usr/bin/env bash
# Proves `make package` is reproducible: clones the current commit (so
# uncommitted work cannot leak in), builds every package twice in that
# clone from clean output trees, and compares the SHA-256 sums. Prints one
# line per package plus the sizes; exits non-zero if any package differs.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-hardlinks "$src" "$work/tree"
cd "$work/tree"
echo "building $(git describe --tags --always) twice in $work/tree"

for run in 1 2; do
	rm -rf dist bin/pkg
	make --no-print-directory package ${MKPKG_FLAGS:+MKPKG_FLAGS="$MKPKG_FLAGS"} >"$work/build$run.log" 2>&1 || {
		cat "$work/build$run.log" >&2
		exit 1
	}
	cp dist/SHA256SUMS "$work/sums$run"
	ls -l dist >"$work/sizes$run"
done

status=0
while read -r sum name; do
	other=$(awk -v n="$name" '$2 == n { print $1 }' "$work/sums2")
	if [ "$sum" = "$other" ]; then
		echo "reproducible  $name  $sum"
	else
		echo "DIFFERS       $name  $sum != ${other:-missing}"
		status=1
	fi
done <"$work/sums1"
echo
echo "sizes (bytes):"
awk 'NR > 1 && $NF != "SHA256SUMS" { printf "  %10d  %s\n", $5, $NF }' "$work/sizes2"
exit "$status"
