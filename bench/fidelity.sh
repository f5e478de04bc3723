#!/bin/sh
# SPDX-License-Identifier: MIT
# Lossy fidelity benchmark (issue #4): compresses the real checkpoints of
# ../shared/data with every lossy setting of DESIGN 4.2/4.3, scores the
# reconstructed models with ../shared/eval, and prints markdown tables
# (see bench/FIDELITY.md). Skips (exit 77) without the shared data, torch
# or numpy.
#
#   bench/fidelity.sh [-o FILE] [-j JOBS] [--seeds N] [--mb MB] [--tables abcde]
#
# Environment: BUILD (build dir with udfs, udfs-compress, tests/gen_model;
# default build), UDFS_SHARED (default ../shared next to the repo).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
case "$BUILD" in /*) ;; *) BUILD=$top/$BUILD ;; esac
if [ -z "${UDFS_SHARED:-}" ] && [ -d "$top/../shared/data" ]; then
	UDFS_SHARED=$(cd "$top/../shared" && pwd)
fi
PY=/usr/bin/python3

skip() {
	echo "fidelity.sh: skipped: $*" >&2
	exit 77
}

[ -n "${UDFS_SHARED:-}" ] && [ -d "$UDFS_SHARED/data/stories260K" ] &&
	[ -f "$UDFS_SHARED/eval/stories.py" ] ||
	skip "no shared data (set UDFS_SHARED to the directory holding data/ and eval/)"
[ -x "$PY" ] || skip "no $PY"
"$PY" -c 'import numpy, torch' 2>/dev/null || skip "$PY lacks numpy or torch"
"$PY" -c 'import sklearn' 2>/dev/null ||
	skip "$PY lacks scikit-learn (apt-get install python3-sklearn), needed by mlp.py"
for b in udfs udfs-compress tests/gen_model; do
	[ -x "$BUILD/$b" ] || {
		echo "fidelity.sh: $BUILD/$b not built (make BUILD=$BUILD all tests)" >&2
		exit 1
	}
done
exec "$PY" "$top/bench/fidelity_table.py" --build "$BUILD" \
	--shared "$UDFS_SHARED" "$@"
