#!/bin/sh
# SPDX-License-Identifier: MIT
# `make bench`: every benchmark in sequence, each section's table printed
# as it finishes.
#
#   BUILD=DIR sh bench/run.sh [--quick]
#                             [--only lossless|mount|speed|fidelity]
#
# Sections: bench/lossless.sh (udfs --lossless against zstd),
# bench/mount.sh (mount read throughput against the FUSE ceiling and
# squashfuse; cold runs need root), bench/speed.sh (the issue #11 table:
# reads, loading, compression and memory against peers; needs root) and
# bench/fidelity.sh (lossy quality; only when /usr/bin/python3 has
# torch). --quick uses small sizes and one timing run, for a smoke test in
# a few minutes; its numbers are not the published ones (see
# bench/README.md, bench/MOUNT.md and bench/SPEED.md for those).
# A section that exits 77 is reported as skipped; the exit status is 1
# if any section failed.
set -u

quick=0 only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--only) only=$2; shift ;;
	-h|--help) sed -n '3,17p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
BUILD=$(cd "$BUILD" && pwd) || exit 1
export BUILD
failed="" skipped=""

# section NAME SCRIPT [ARGS...]
section() {
	_name=$1
	shift
	[ -z "$only" ] || [ "$only" = "$_name" ] || return 0
	echo
	echo "## $_name ($*)"
	echo
	_t0=$(date +%s)
	sh "$@"
	_rc=$?
	_t1=$(date +%s)
	case $_rc in
	0) echo "($_name: $((_t1 - _t0)) s)" ;;
	77) echo "($_name: skipped)"; skipped="$skipped $_name" ;;
	*) echo "($_name: FAILED, exit $_rc)"; failed="$failed $_name" ;;
	esac
}

if [ "$quick" = 1 ]; then
	section lossless "$top/bench/lossless.sh" --mb 64 --runs 1 --slow-mb 4
	# The daemon's cache must stay below the file size, or the cold
	# udfs runs would be served from it.
	section mount "$top/bench/mount.sh" --mb 256 --runs 1 --cache 64M \
		--sq-level 1
	section speed "$top/bench/speed.sh" --quick
else
	section lossless "$top/bench/lossless.sh"
	section mount "$top/bench/mount.sh"
	section speed "$top/bench/speed.sh"
fi
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	if [ "$quick" = 1 ]; then
		section fidelity "$top/bench/fidelity.sh" --mb 32 --seeds 1
	else
		section fidelity "$top/bench/fidelity.sh"
	fi
elif [ -z "$only" ] || [ "$only" = fidelity ]; then
	echo
	echo "## fidelity: skipped (/usr/bin/python3 has no torch)"
	skipped="$skipped fidelity"
fi

echo
echo "bench: failed:${failed:- none}; skipped:${skipped:- none}"
[ -z "$failed" ]
