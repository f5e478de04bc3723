#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run every libFuzzer target tests/fuzz/fuzz_*.c for SECONDS each (default
# $FUZZ_SECONDS or 30). The Makefile builds them (`make fuzz` builds, then
# calls this): clang, the project's flags, ASan and UBSan, linked against
# the read library built the same way in build-fuzz/. Crash artifacts go
# to build-fuzz/; the seed corpus tests/fuzz/corpus/<target>/
# is copied to a scratch directory first so the repository is never
# written. An optional tests/fuzz/<target>.dict is passed as a dictionary.
# Exits non-zero if any target is not built or finds a crash.
#
# usage: tests/fuzz/run.sh [SECONDS] [TARGET...]

set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
out=$top/build-fuzz

case $secs in
*[!0-9]* | '')
	echo "usage: $0 [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac
scratch=$(mktemp -d "${TMPDIR:-/tmp}/udfs-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM

if [ $# -gt 0 ]; then
	targets=
	for t in "$@"; do
		targets="$targets $top/tests/fuzz/${t%.c}.c"
	done
else
	targets=$(ls "$top"/tests/fuzz/fuzz_*.c)
fi

fail=0
for src in $targets; do
	name=$(basename "$src" .c)
	if [ ! -x "$out/$name" ]; then
		echo "$name: not built (make fuzz-build)" >&2
		fail=1
		continue
	fi

	corpus=$scratch/$name
	mkdir -p "$corpus"
	if [ -d "$top/tests/fuzz/corpus/$name" ]; then
		cp "$top/tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null
	fi
	dict=
	[ -f "$top/tests/fuzz/$name.dict" ] &&
		dict="-dict=$top/tests/fuzz/$name.dict"
	log=$out/$name.log
	# shellcheck disable=SC2086
	"$out/$name" -max_total_time="$secs" -print_final_stats=1 \
		-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
		-artifact_prefix="$out/$name-" $dict "$corpus" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	echo "$name: ${execs:-0} executions in ${secs}s, exit $rc"
	if [ $rc -ne 0 ]; then
		tail -n 40 "$log" >&2
		echo "$name: FAILED (log $log, inputs $out/$name-*)" >&2
		fail=1
	fi
done
exit $fail
