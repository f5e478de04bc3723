#!/bin/sh
# SPDX-License-Identifier: MIT
# The load test under ThreadSanitizer: build the daemon, the compressor
# and the test tools with -fsanitize=thread into build-tsan/ (or
# $TSAN_BUILD), then run tests/mount/stress.sh against them with
# TSAN_OPTIONS=halt_on_error=1, so that the first data race kills the
# daemon and fails the readers; stress.sh also fails on any
# "ThreadSanitizer" line in the daemon's log. STRESS_SECONDS (default 20)
# bounds the run. Exit 0 pass, 77 skip (no TSan runtime), 1 fail.
#
# usage: tests/stress_tsan.sh
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
b=${TSAN_BUILD:-build-tsan}
cd "$top" || exit 1

# TSan needs its runtime and a kernel whose address space layout it knows.
probe=$(mktemp -d "${TMPDIR:-/tmp}/udfs-tsan.XXXXXX") || exit 1
trap 'rm -rf "$probe"' EXIT
printf 'int main(void) { return 0; }\n' >"$probe/t.c"
if ! ${CC:-cc} -fsanitize=thread -o "$probe/t" "$probe/t.c" 2>/dev/null ||
	! "$probe/t" 2>/dev/null; then
	echo "skip: ThreadSanitizer is not usable here"
	exit 77
fi

echo "== building $b with -fsanitize=thread"
make -j"$(nproc)" BUILD="$b" SANITIZE=-fsanitize=thread OPT="-O1 -g" \
	"$b/udfs" "$b/udfs-compress" "$b/tests/preader" "$b/tests/gen_model" \
	"$b/tests/mmapcmp" "$b/tests/reaper" >"$probe/build.log" 2>&1 || {
	tail -n 30 "$probe/build.log"
	echo "FAIL: TSan build"
	exit 1
}

echo "== tests/mount/stress.sh under TSan (${STRESS_SECONDS:-20} s)"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
	BUILD="$top/$b" UDFS_TOP="$top" sh tests/mount/stress.sh
rc=$?
if [ $rc -eq 0 ]; then
	echo "PASS: stress under ThreadSanitizer, no report"
else
	echo "FAIL: stress under ThreadSanitizer (exit $rc)"
fi
exit $rc
