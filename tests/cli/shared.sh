#!/bin/sh
# SPDX-License-Identifier: MIT
# A store shared by several processes, on a local disk (tests/cluster runs
# the same on GlusterFS):
#  - a writer that finds the writer lock held (an fcntl lock, as another
#    node's writer holds it) waits, says whom it waits for on one line,
#    and commits once the lock is free; nothing is lost;
#  - every commit publishes a snapshot and the pointer names it; readers
#    never leave lock or journal files next to the catalog;
#  - a format 1 store (WAL catalog, no snapshots) on a read-only export is
#    served as it is, and a mount of it says at start that it will not
#    follow changes; a mount of an upgraded read-only export follows and
#    says it cannot keep a lease; the first writer upgrades the store in
#    place with every model kept.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 2 --seed 1
gen finetune "$T/base.safetensors" "$T/a.safetensors" --seed 2
gen finetune "$T/base.safetensors" "$T/b.safetensors" --seed 3
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"

# The writer lock, held by another process with a POSIX fcntl lock.
"$PY" - "$S/lock" "$T/held" <<'EOF' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"othernode 4242\n", 0)
open(sys.argv[2], "w").close()
time.sleep(3)
EOF
holder=$!
i=0
while [ ! -e "$T/held" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
ok "add while the lock is held" "$UC" add -q "$S" --base base --lossless \
	a="$T/a.safetensors"
wait $holder
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "waiting: not one line: $(cat "$T/err")"
grep -q "waiting for the writer lock.*othernode 4242" "$T/err" ||
	fail "waiting: does not name the holder: $(cat "$T/err")"
ok "ls" "$UDFS" ls "$S"
grep -q '^a ' "$T/out" || fail "the add that waited is not listed"

# Published: the pointer names the live catalog's generation, and its
# snapshot exists; no reader left -wal, -shm or -journal files.
gen_live=$(sqlite3 "$S/catalog.db" "SELECT value FROM meta WHERE key='generation'")
read -r gen_ptr _ <"$S/catalog.current"
[ "$gen_ptr" = "$gen_live" ] ||
	fail "pointer names generation $gen_ptr, the catalog is at $gen_live"
[ -f "$S/snapshots/$gen_ptr.db" ] || fail "no snapshot $gen_ptr"
left=$(ls "$S" | grep -e '-wal$' -e '-shm$' -e '-journal$')
[ -z "$left" ] || fail "left next to the catalog: $left"

# A format 1 store, as the previous udfs left it.
O=$T/old
cp -a "$S" "$O"
rm -rf "$O/snapshots" "$O/leases" "$O/lock" "$O/catalog.current"
sqlite3 "$O/catalog.db" "PRAGMA journal_mode=WAL; PRAGMA user_version=1" \
	>/dev/null || die "make a format 1 store"
RO=$T/ro
mkdir "$RO" "$T/mnt"
# fusermount3 -u returns before the daemon has closed the store's files,
# so the bind mount can be busy for a moment: retry, and never leave it
# behind (rm -rf of $T cannot remove a mount).
umount_ro() {
	_i=0
	while mountpoint -q "$RO" && [ $_i -lt 100 ]; do
		umount "$RO" 2>/dev/null || sleep 0.05
		_i=$((_i + 1))
	done
	! mountpoint -q "$RO" || fail "$RO is still mounted"
}
if mount --bind "$O" "$RO" 2>/dev/null &&
	{ on_exit umount_ro; mount -o remount,ro,bind "$RO" 2>/dev/null; }; then
	ok "ls of a read-only format 1 store" "$UDFS" ls "$RO"
	grep -q '^a ' "$T/out" || fail "read-only format 1: a not listed"
	ok "verify of a read-only format 1 store" "$UDFS" verify "$RO"
	if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1; then
		ok "mount a read-only format 1 store" "$UDFS" mount "$RO" "$T/mnt"
		on_exit "fusermount3 -u '$T/mnt'"
		grep -q "format 1.*without following changes" "$T/err" ||
			fail "mount did not say it cannot follow: $(cat "$T/err")"
		cmp -s "$T/mnt/a/a.safetensors" "$T/a.safetensors" ||
			fail "read-only format 1 mount: a differs"
		fusermount3 -u "$T/mnt"
	fi
	umount_ro
	# The first writer upgrades it in place; nothing is re-added.
	must "gc upgrades" "$UDFS" gc -q "$O"
	[ "$(sqlite3 "$O/catalog.db" 'PRAGMA user_version')" = 4 ] ||
		fail "not upgraded to format 4"
	[ "$(sqlite3 "$O/catalog.db" 'PRAGMA journal_mode')" = delete ] ||
		fail "the upgraded catalog is still in WAL mode"
	[ -s "$O/catalog.current" ] || fail "upgrade published no pointer"
	ok "ls after the upgrade" "$UDFS" ls "$O"
	grep -q '^a ' "$T/out" || fail "upgrade lost a"
	# An upgraded read-only export: the mount follows, has no lease.
	mount --bind "$O" "$RO" && mount -o remount,ro,bind "$RO" ||
		die "remount"
	if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1; then
		ok "mount a read-only store" "$UDFS" mount "$RO" "$T/mnt"
		grep -q "leases" "$T/err" ||
			fail "mount did not say it cannot keep a lease: $(cat "$T/err")"
		ok "add b to the store behind the export" "$UC" add -q "$O" \
			--base base --lossless b="$T/b.safetensors"
		i=0
		while ! cmp -s "$T/mnt/b/b.safetensors" "$T/b.safetensors" &&
			[ $i -lt 100 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		cmp -s "$T/mnt/b/b.safetensors" "$T/b.safetensors" ||
			fail "the read-only mount did not follow the add of b"
		fusermount3 -u "$T/mnt"
	fi
	umount_ro
else
	echo "note: cannot bind-mount read-only; format 1 read-only skipped"
fi
finish
