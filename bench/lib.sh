# SPDX-License-Identifier: MIT
# Shell helpers shared by bench/mount.sh and bench/speed.sh, which set ME
# (their name, for messages) and PB (build/bench/preadbench) and then
# source this file. bench_scratch makes the scratch directory $W; on exit
# the mounts listed in $MOUNTS are unmounted, the processes in $PIDS
# killed and $W removed.

MOUNTS="" PIDS=""

say() { echo "$ME: $*" >&2; }
die() { echo "$ME: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { echo "$1 $2" | awk '{ printf "%.2f", $2 - $1 }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# median: of the numbers on stdin, one a line ("-" when there are none).
median() {
	grep . | sort -g |
		awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}

bench_cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
	done
	for p in $PIDS; do
		kill "$p" 2>/dev/null
	done
	sleep 0.2
	rm -rf "$W"
}

bench_scratch() {
	W=$(mktemp -d "${TMPDIR:-/tmp}/udfs-bench-${ME%.sh}.XXXXXX") || exit 1
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM HUP
}

# wait_until PID CMD...: until CMD succeeds; returns 1 if PID dies first
# or after 60 s.
wait_until() {
	_p=$1
	shift
	_i=0
	until "$@"; do
		kill -0 "$_p" 2>/dev/null && [ $_i -lt 1200 ] || return 1
		_i=$((_i + 1))
		sleep 0.05
	done
}

# wait_ready LOGFILE PID WHAT: until "ready" is in LOGFILE.
wait_ready() {
	wait_until "$2" grep -q '^ready' "$1" 2>/dev/null ||
		{ cat "$1" >&2; die "$3: not ready (died, or 60 s passed)"; }
}

# mount_zerofs SRC MNT LOG [ZEROFS OPTIONS]: $ZEROFS in the background.
mount_zerofs() {
	mkdir -p "$2"
	"$ZEROFS" ${4:-} "$1" "$2" >"$3" 2>"$3.err" &
	_p=$!
	MOUNTS="$MOUNTS $2" PIDS="$PIDS $_p"
	wait_ready "$3" "$_p" "zerofs $2"
}

umount_one() { # MNT
	fusermount3 -u "$1" || die "fusermount3 -u $1"
	MOUNTS=$(echo "$MOUNTS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# gbps MODE FILE: one timed whole read of FILE, prints GB/s (10^9 B/s).
# Modes: dd (bs=1M), mmap (touch every page), pread4 (4 threads).
gbps() {
	case "$1" in
	dd)
		dd if="$2" of=/dev/null bs=1M 2>&1 | tail -n 1 |
			awk '{ printf "%.3f\n", $1 / $(NF - 3) / 1e9 }' ;;
	mmap) "$PB" -m "$2" | awk '{ print $3 }' ;;
	pread4) "$PB" -j 4 "$2" | awk '{ print $3 }' ;;
	esac
}
