#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Build and run every libFuzzer target tests/fuzz/fuzz_*.c for SECONDS each
# (default $FUZZ_SECONDS or 30). Each target names the library sources it
# needs on a line "// FUZZ_SOURCES: src/a.c src/b.c"; they are compiled
# directly into the target with ASan and UBSan. Binaries and crash
# artifacts go to build-fuzz/; the seed corpus tests/fuzz/corpus/<target>/
# is copied to a scratch directory first so the repository is never
# written. An optional tests/fuzz/<target>.dict is passed as a dictionary.
# Exits non-zero if any target fails to build or finds a crash.
#
# usage: tests/fuzz/run.sh [SECONDS] [TARGET...]

set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
cc=${FUZZ_CC:-clang}
out=$top/build-fuzz
pkgs="jansson libzstd libxxhash sqlite3 libcrypto"

case $secs in
*[!0-9]* | '')
	echo "usage: $0 [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "fuzz: $cc not found" >&2
	exit 77
fi
cflags=$(pkg-config --cflags $pkgs) || exit 1
libs=$(pkg-config --libs $pkgs) || exit 1
mkdir -p "$out" || exit 1
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
	srcs=$(sed -n 's,^[/* ]*FUZZ_SOURCES:,,p' "$src" | head -n 1)
	if [ -z "$srcs" ]; then
		echo "$name: no FUZZ_SOURCES line" >&2
		fail=1
		continue
	fi
	echo "  FUZZ-CC $name"
	# shellcheck disable=SC2086 # word splitting of flags is intended
	if ! (cd "$top" && $cc -g -O1 -std=gnu11 -D_GNU_SOURCE \
		-D_FILE_OFFSET_BITS=64 -pthread -ffp-contract=off \
		-fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -fno-omit-frame-pointer \
		-Iinclude -Isrc $cflags -o "$out/$name" "$src" $srcs \
		$libs -lm); then
		echo "$name: build failed" >&2
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
