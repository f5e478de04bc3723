# SPDX-License-Identifier: MIT
# Shared helpers of the real-mount tests (tests/mount/*.sh source this).
# Each test gets a scratch dir $T under ${TMPDIR:-/tmp}; a trap always
# unmounts what it mounted, kills the daemons it started and removes $T.
# mount_udfs waits for the daemon's "ready" line on a notify pipe with a
# deadline while checking that the daemon is alive; umount_udfs fails the
# test when the daemon does not exit 0 after `fusermount3 -u`.
set -u
: "${BUILD:?BUILD must name the build directory}"
: "${UDFS_TOP:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${UDFS_SHARED:=}"
UDFS=$BUILD/udfs
UDFS_COMPRESS=$BUILD/udfs-compress
GEN=$BUILD/tests/gen_model
MOUNTS=""
PIDS=""
DAEMON_PID=""

skip() {
	echo "skip: $*"
	exit 77
}

fail() {
	echo "FAIL: $*" >&2
	for l in "$T"/daemon*.log; do
		[ -s "$l" ] && { echo "--- $l" >&2; tail -n 20 "$l" >&2; }
	done
	exit 1
}

log() {
	echo "== $*"
}

cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
	done
	for p in $PIDS; do
		kill "$p" 2>/dev/null
	done
	[ -n "${T:-}" ] && rm -rf "$T"
}

require_fuse() {
	[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] ||
		skip "/dev/fuse is not available"
	command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 is missing"
	[ -x "$UDFS" ] && [ -x "$UDFS_COMPRESS" ] && [ -x "$GEN" ] ||
		fail "build the programs and tools first ($BUILD)"
}

T=$(mktemp -d "${TMPDIR:-/tmp}/udfs-mount.XXXXXX") || exit 1
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
require_fuse

# Poll a shell condition until true or a deadline (seconds) passes.
wait_for() { # seconds condition...
	_deadline=$(($(date +%s) + $1))
	shift
	while ! eval "$@"; do
		[ "$(date +%s)" -ge "$_deadline" ] && return 1
		sleep 0.05
	done
	return 0
}

# mount_udfs STORE MNT [-o OPTS]: a foreground daemon in the background,
# ready once it wrote "ready" on its notify pipe. Sets DAEMON_PID.
mount_udfs() {
	_store=$1 _mnt=$2
	shift 2
	mkdir -p "$_mnt"
	_n=$(echo "$MOUNTS" | wc -w)
	_fifo=$T/ready.$_n
	_log=$T/daemon.$_n.log
	rm -f "$_fifo" "$_fifo.txt"
	mkfifo "$_fifo" || fail "mkfifo"
	# $UDFS_WRAP: an optional command prefix (unquoted on purpose).
	${UDFS_WRAP:-} "$UDFS" mount "$_store" "$_mnt" -f \
		-o "notify_pipe=$_fifo" "$@" \
		>"$_log" 2>&1 &
	DAEMON_PID=$!
	MOUNTS="$MOUNTS $_mnt"
	PIDS="$PIDS $DAEMON_PID"
	cat "$_fifo" >"$_fifo.txt" &
	PIDS="$PIDS $!"
	_deadline=$(($(date +%s) + 30))
	while ! [ -s "$_fifo.txt" ]; do
		kill -0 "$DAEMON_PID" 2>/dev/null ||
			fail "udfs mount $_store died before ready"
		[ "$(date +%s)" -ge "$_deadline" ] &&
			fail "udfs mount $_store: not ready after 30 s"
		sleep 0.05
	done
	grep -q '^ready$' "$_fifo.txt" ||
		fail "udfs mount $_store: $(cat "$_fifo.txt")"
	DAEMON_LOG=$_log
}

# Wait (bounded) for pid, a child of this shell; fail unless it exits 0.
wait_daemon() { # pid what
	wait_for 20 '! kill -0 '"$1"' 2>/dev/null' ||
		fail "$2: daemon $1 still running 20 s later"
	wait "$1"
	_rc=$?
	[ "$_rc" -eq 0 ] || fail "$2: daemon exited with status $_rc"
}

# umount_udfs MNT PID: fusermount3 -u, then the daemon must exit 0.
umount_udfs() {
	fusermount3 -u "$1" || fail "fusermount3 -u $1"
	wait_daemon "$2" "unmount of $1"
	MOUNTS=$(echo "$MOUNTS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# The daemon's resident memory in KiB (field VmRSS or RssAnon).
daemon_mem_kb() { # pid field
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# Compare byte range [off, off+len) of two files.
cmp_range() { # file ref off len
	dd if="$1" iflag=skip_bytes,count_bytes bs=65536 skip="$3" \
		count="$4" 2>/dev/null >"$T/range.a" || fail "dd $1 at $3"
	dd if="$2" iflag=skip_bytes,count_bytes bs=65536 skip="$3" \
		count="$4" 2>/dev/null >"$T/range.b" || fail "dd $2 at $3"
	cmp "$T/range.a" "$T/range.b" ||
		fail "$1: bytes $3+$4 differ from $2"
}

# A store with a base and a lossless fine-tune of it: $T/S, models "base"
# and "ft" from $T/src/base.safetensors and $T/src/ft.safetensors.
make_simple_store() { # dtype mb
	mkdir -p "$T/src"
	"$GEN" model "$T/src/base.safetensors" --dtype "$1" --mb "$2" \
		--seed 11 >/dev/null 2>&1 || fail "gen_model model"
	"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft.safetensors" \
		--seed 12 >/dev/null 2>&1 || fail "gen_model finetune"
	"$UDFS_COMPRESS" init "$T/S" >/dev/null || fail "init"
	"$UDFS_COMPRESS" add-base -q "$T/S" base "$T/src/base.safetensors" \
		>/dev/null || fail "add-base"
	"$UDFS_COMPRESS" add -q "$T/S" --base base \
		"ft=$T/src/ft.safetensors" --lossless >/dev/null || fail "add ft"
}
