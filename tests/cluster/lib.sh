# SPDX-License-Identifier: MIT
# A GlusterFS cluster on one machine, for the cluster tests and
# bench/cluster.sh: glusterd with its own working directory, a one-brick
# volume on 127.0.0.2 (glusterd refuses 127.0.0.1 as a brick host), and
# several glusterfs FUSE clients standing for the nodes of a cluster. The
# caller's cleanup calls gluster_down, which stops everything by PID (never
# by name: other gluster processes on the machine are not ours).
# Needs root, glusterfs-server and glusterfs-client. One glusterd per
# machine: gluster_up waits for a lock that other runs hold.
: "${T:?T must name the scratch directory}"
GL_VOL=""
GL_CLIENTS=""
GL_BRICK_PID=""
GL_GLUSTERD_PID=""

gl_skip_unless_usable() {
	[ "$(id -u)" -eq 0 ] || skip "GlusterFS needs root"
	for c in glusterd gluster glusterfs; do
		command -v "$c" >/dev/null 2>&1 ||
			skip "$c is missing (apt-get install glusterfs-server glusterfs-client)"
	done
	command -v flock >/dev/null 2>&1 || skip "flock is missing"
}

gl_cli() { # gluster command words...
	timeout 60 gluster --mode=script "$@"
}

# gluster_up NCLIENTS: glusterd, a volume, NCLIENTS client mounts at
# $T/node1 .. $T/nodeN; the last one read-only when RO_LAST=1.
gluster_up() {
	_n=$1
	# One glusterd per machine (port 24007): serialize with other runs.
	exec 9>/run/udfs-gluster-test.lock
	flock -w 300 9 || fail "another GlusterFS test held the lock for 5 min"
	if gl_cli volume list >/dev/null 2>&1; then
		skip "a glusterd not started by this test is running"
	fi
	mkdir -p "$T/glusterd" "$T/brick" "$T/gllog"
	# 9>&-: the daemons must not inherit (and so hold) the lock.
	glusterd -p "$T/glusterd.pid" --log-file="$T/gllog/glusterd.log" \
		--xlator-option "*.working-directory=$T/glusterd" 9>&- ||
		fail "glusterd did not start: $(tail -n 3 "$T/gllog/glusterd.log")"
	wait_for 20 '[ -s "$T/glusterd.pid" ]' || fail "glusterd: no pid file"
	GL_GLUSTERD_PID=$(cat "$T/glusterd.pid")
	wait_for 30 'gl_cli volume list >/dev/null 2>&1' ||
		fail "glusterd does not answer: $(tail -n 3 "$T/gllog/glusterd.log")"
	GL_VOL=udfs$$
	gl_cli volume create "$GL_VOL" "127.0.0.2:$T/brick" force \
		>"$T/gllog/create" 2>&1 ||
		fail "volume create: $(cat "$T/gllog/create")"
	gl_cli volume start "$GL_VOL" >"$T/gllog/start" 2>&1 9>&- ||
		fail "volume start: $(cat "$T/gllog/start")"
	GL_BRICK_PID=$(gl_cli volume status "$GL_VOL" 2>/dev/null |
		awk '/^Brick/ { print $NF }' | head -n 1)
	for i in $(seq 1 "$_n"); do
		_ro=""
		[ "$i" -eq "$_n" ] && [ "${RO_LAST:-0}" -eq 1 ] && _ro=--read-only
		mkdir -p "$T/node$i"
		glusterfs --volfile-server=127.0.0.2 --volfile-id="$GL_VOL" \
			--log-file="$T/gllog/client$i.log" \
			-p "$T/client$i.pid" $_ro "$T/node$i" 9>&- ||
			fail "glusterfs client $i did not mount"
		GL_CLIENTS="$GL_CLIENTS $T/node$i"
		wait_for 20 'mountpoint -q "$T/node$i"' ||
			fail "client $i: not mounted"
	done
}

gluster_down() {
	for m in $GL_CLIENTS; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	for p in "$T"/client*.pid; do
		[ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
	if [ -n "$GL_VOL" ]; then
		gl_cli volume stop "$GL_VOL" force >/dev/null 2>&1
		gl_cli volume delete "$GL_VOL" >/dev/null 2>&1
	fi
	case "$GL_BRICK_PID" in
	'' | *[!0-9]*) ;;
	*) kill "$GL_BRICK_PID" 2>/dev/null ;;
	esac
	if [ -n "$GL_GLUSTERD_PID" ]; then
		kill "$GL_GLUSTERD_PID" 2>/dev/null
		wait_for 10 '! kill -0 '"$GL_GLUSTERD_PID"' 2>/dev/null' ||
			kill -9 "$GL_GLUSTERD_PID" 2>/dev/null
	fi
}

# The pid of the udfs daemon serving mountpoint (started without -f, so
# not a child of this shell), found by its unique command line.
daemon_of() { # mountpoint
	for d in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$d/cmdline" |
			grep -q "udfs mount .* $1 *\$" && basename "$d"
	done | head -n 1
}

# mount_bg STORE MNT: `udfs mount` as fstab and systemd start it (no -f);
# returns once the mount answers. Adds the daemon to UDFS_DAEMONS.
UDFS_DAEMONS=""
UDFS_MNTS=""
mount_bg() {
	mkdir -p "$2"
	"$UDFS" mount "$1" "$2" >"$T/mount.$(basename "$2").log" 2>&1 ||
		fail "udfs mount $1 $2: $(cat "$T/mount.$(basename "$2").log")"
	UDFS_MNTS="$UDFS_MNTS $2"
	_pid=$(daemon_of "$2")
	[ -n "$_pid" ] || fail "no daemon found for $2"
	UDFS_DAEMONS="$UDFS_DAEMONS $_pid"
}

umount_all_bg() {
	for m in $UDFS_MNTS; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
	done
	for p in $UDFS_DAEMONS; do
		wait_for 10 '! kill -0 '"$p"' 2>/dev/null' || kill "$p" 2>/dev/null
	done
	UDFS_MNTS=""
	UDFS_DAEMONS=""
}
