# SPDX-License-Identifier: MIT
# Shared helpers of the real-mount tests (tests/mount/*.sh source this).
# Each test gets a scratch dir $T under ${TMPDIR:-/tmp}; a trap always
# unmounts what it mounted, kills the daemons it started and removes $T.
# mount_udfs starts the daemon the way fstab and systemd do (no -f: it
# forks and detaches), under tests/gen/reaper so that the test still learns
# how it ended, and waits for its "ready" line on a notify pipe with a
# deadline while checking that it is alive; umount_udfs fails the test
# when the daemon does not exit 0 after `fusermount3 -u`. mount_udfs_fg
# runs it with -f, for tests about foreground mode.
set -u
: "${BUILD:?BUILD must name the build directory}"
: "${UDFS_TOP:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${UDFS_SHARED:=}"
UDFS=$BUILD/udfs
UDFS_COMPRESS=$BUILD/udfs-compress
GEN=$BUILD/tests/gen_model
REAPER=$BUILD/tests/reaper
MOUNTS=""
PIDS=""
DAEMON_PID=""
N_MOUNTS=0

skip() {
	echo "skip: $*"
	exit 77
}

fail() {
	echo "FAIL: $*" >&2
	for l in "$T"/daemon*.log "$T"/daemon*.exits "$T"/daemon*.out \
		"$T"/daemon*.san*; do
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
	[ -x "$UDFS" ] && [ -x "$UDFS_COMPRESS" ] && [ -x "$GEN" ] &&
		[ -x "$REAPER" ] ||
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

# Wait (bounded) for the "ready" line on fifo $1 (copied to $1.txt) while
# process $2 lives.
wait_ready() { # fifo pid what
	_deadline=$(($(date +%s) + 30))
	while ! [ -s "$1.txt" ]; do
		kill -0 "$2" 2>/dev/null || fail "$3 died before ready"
		[ "$(date +%s)" -ge "$_deadline" ] &&
			fail "$3: not ready after 30 s"
		sleep 0.05
	done
	grep -q '^ready$' "$1.txt" || fail "$3: $(cat "$1.txt")"
}

# mount_udfs STORE MNT [-o OPTS]: `udfs mount` without -f, as fstab runs
# it: it must return 0, and the daemon it leaves must say "ready". The
# daemon logs to $DAEMON_LOG (-o log=); sets DAEMON_PID.
mount_udfs() {
	_store=$1 _mnt=$2
	shift 2
	mkdir -p "$_mnt"
	_n=$N_MOUNTS
	N_MOUNTS=$((N_MOUNTS + 1))
	_fifo=$T/ready.$_n
	_log=$T/daemon.$_n.log
	_exits=$T/daemon.$_n.exits
	rm -f "$_fifo" "$_fifo.txt"
	mkfifo "$_fifo" || fail "mkfifo"
	cat "$_fifo" >"$_fifo.txt" &
	PIDS="$PIDS $!"
	# Once detached, the daemon's stderr is /dev/null: sanitizer
	# reports go to files. $UDFS_WRAP: an optional command prefix
	# (unquoted on purpose).
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/daemon.$_n.san" \
	UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/daemon.$_n.san" \
	TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$T/daemon.$_n.san" \
		"$REAPER" "$_exits" ${UDFS_WRAP:-} "$UDFS" mount "$_store" \
		"$_mnt" -o "notify_pipe=$_fifo,log=$_log" "$@" \
		>"$T/daemon.$_n.out" 2>&1 &
	_reaper=$!
	MOUNTS="$MOUNTS $_mnt"
	PIDS="$PIDS $_reaper"
	wait_ready "$_fifo" "$_reaper" "udfs mount $_store"
	# The parent exited 0 after the fork; the daemon is now the
	# reaper's only child.
	wait_for 10 '[ -s "$_exits" ]' ||
		fail "udfs mount $_store: the parent did not return"
	head -n 1 "$_exits" | grep -q ' exit 0$' ||
		fail "udfs mount $_store: $(cat "$_exits" "$T/daemon.$_n.out")"
	DAEMON_PID=$(pgrep -P "$_reaper" | head -n 1)
	[ -n "$DAEMON_PID" ] || fail "udfs mount $_store: no daemon left"
	eval "REAPER_$DAEMON_PID=$_reaper EXITS_$DAEMON_PID=$_exits"
	DAEMON_LOG=$_log
}

# mount_udfs_fg STORE MNT [-o OPTS]: a foreground daemon (-f) in the
# background of this shell. Sets DAEMON_PID and DAEMON_LOG (its stderr).
mount_udfs_fg() {
	_store=$1 _mnt=$2
	shift 2
	mkdir -p "$_mnt"
	_n=$N_MOUNTS
	N_MOUNTS=$((N_MOUNTS + 1))
	_fifo=$T/ready.$_n
	_log=$T/daemon.$_n.log
	rm -f "$_fifo" "$_fifo.txt"
	mkfifo "$_fifo" || fail "mkfifo"
	${UDFS_WRAP:-} "$UDFS" mount "$_store" "$_mnt" -f \
		-o "notify_pipe=$_fifo" "$@" \
		>"$_log" 2>&1 &
	DAEMON_PID=$!
	MOUNTS="$MOUNTS $_mnt"
	PIDS="$PIDS $DAEMON_PID"
	cat "$_fifo" >"$_fifo.txt" &
	PIDS="$PIDS $!"
	wait_ready "$_fifo" "$DAEMON_PID" "udfs mount -f $_store"
	DAEMON_LOG=$_log
}

# Wait (bounded) for daemon pid, started by mount_udfs (through its
# reaper) or mount_udfs_fg (a child of this shell); fail unless it exits 0.
wait_daemon() { # pid what
	eval "_reaper=\${REAPER_$1:-} _exits=\${EXITS_$1:-}"
	_w=${_reaper:-$1}
	wait_for 20 '! kill -0 '"$_w"' 2>/dev/null' ||
		fail "$2: daemon $1 still running 20 s later"
	wait "$_w"
	_rc=$?
	if [ -n "$_reaper" ]; then
		grep -q "^$1 " "$_exits" ||
			fail "$2: daemon $1 not reaped: $(cat "$_exits")"
		[ "$_rc" -eq 0 ] ||
			fail "$2: daemon $1 ended: $(grep "^$1 " "$_exits")"
	fi
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

# The value of field name in a `udfs status` output file.
status_value() { # name file
	awk -v k="$1" '$1 == k { print $2 }' "$2"
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
