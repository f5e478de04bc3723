#!/bin/sh
# SPDX-License-Identifier: MIT
# Security of a mount and a store:
#  - a mount without allow_other cannot be read by another user (EACCES);
#    with -o allow_other it can (root mounts; other mounters need
#    user_allow_other in /etc/fuse.conf);
#  - the mount is read-only for everyone (EROFS);
#  - store directories and files created under umask 022, 077 and 000
#    respect the umask and are never world-writable;
#  - model names with traversal or control characters are refused;
#  - a catalog whose file paths or model names try to leave their
#    directory ("../", "/", control characters) does not make `udfs
#    export` write outside its target, nor the mount show such a name.
# The other user is nobody (65534), through setpriv (or su). Needs root.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to act as another user"
if command -v setpriv >/dev/null 2>&1; then
	as_nobody() {
		setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
	}
else
	as_nobody() {
		_c=""
		for _a in "$@"; do
			_c="$_c '$_a'"
		done
		su nobody -s /bin/sh -c "$_c"
	}
fi
# The other user must be able to reach the mount point.
chmod 755 "$T"
as_nobody true || skip "cannot run commands as nobody"
n_checks=0

make_simple_store bf16 4
chmod -R a+rX "$T/src"
F=ft/ft.safetensors

# ---- Without allow_other: only the mounting user reads.
M=$T/mnt
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID
cmp "$M/$F" "$T/src/ft.safetensors" || fail "root cannot read its mount"
as_nobody cat "$M/$F" >/dev/null 2>"$T/err" &&
	fail "nobody read a mount without allow_other"
grep -qi 'permission denied' "$T/err" ||
	fail "nobody: expected EACCES, got: $(cat "$T/err")"
as_nobody ls "$M" >/dev/null 2>"$T/err" &&
	fail "nobody listed a mount without allow_other"
n_checks=$((n_checks + 2))
# Read-only for its owner too.
touch "$M/ft/new" 2>"$T/err" && fail "created a file in the mount"
grep -qi 'read-only' "$T/err" || fail "create: $(cat "$T/err")"
chmod 666 "$M/$F" 2>"$T/err" && fail "chmod in the mount"
rm -f "$M/$F" 2>/dev/null && fail "removed a file of the mount"
mv "$M/$F" "$M/ft/x" 2>/dev/null && fail "renamed a file of the mount"
n_checks=$((n_checks + 4))
umount_udfs "$M" "$PID"

# ---- With allow_other: everyone reads, nobody writes.
mount_udfs "$T/S" "$M" -o allow_other
PID=$DAEMON_PID
as_nobody cat "$M/$F" >"$T/nobody.out" 2>"$T/err" ||
	fail "nobody cannot read with allow_other: $(cat "$T/err")"
cmp -s "$T/nobody.out" "$T/src/ft.safetensors" ||
	fail "nobody read wrong bytes"
as_nobody sh -c ": >'$M/ft/new'" 2>/dev/null &&
	fail "nobody created a file"
n_checks=$((n_checks + 2))
umount_udfs "$M" "$PID"

# ---- Store permissions follow the umask and are never world-writable.
for um in 022 077 000 002; do
	D=$T/perm$um
	(
		umask $um
		"$UDFS_COMPRESS" init "$D" >/dev/null &&
			"$UDFS_COMPRESS" add-base -q "$D" base \
				"$T/src/base.safetensors" &&
			"$UDFS_COMPRESS" add -q "$D" --base base --lossless \
				"ft=$T/src/ft.safetensors" &&
			"$UDFS_COMPRESS" add -q "$D" --base base \
				"lo=$T/src/ft.safetensors" &&
			"$UDFS" export "$D" ft "$D.export" >/dev/null
	) || fail "umask $um: building the store"
	ww=$(find "$D" -perm -o+w)
	[ -z "$ww" ] || fail "umask $um: world-writable: $ww"
	# No permission bit the umask removes (find -perm /MODE: any of
	# those bits set).
	extra=""
	[ "$um" = 000 ] || extra=$(find "$D" "$D.export" -perm "/$um")
	[ -z "$extra" ] ||
		fail "umask $um: modes wider than the umask: $(ls -ld $extra | head -n 3)"
	log "umask $um: $(find "$D" -type f | wc -l) files, modes" \
		"$(find "$D" "$D.export" -printf '%m\n' | sort -u | tr '\n' ' ')"
	n_checks=$((n_checks + 2))
done

# ---- Model names: no traversal, no separators, no control characters.
nl='
'
tab=$(printf '\t')
esc=$(printf '\033')
for name in "../evil" "a/b" "." ".." "" "x${nl}y" "x${tab}y" "x${esc}[31m" \
	"/abs" "bad\\name"; do
	"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless \
		"$name=$T/src/ft.safetensors" >/dev/null 2>"$T/err" &&
		fail "model name $(printf '%s' "$name" | od -c | head -n 1) accepted"
	[ "$(wc -l <"$T/err")" -eq 1 ] ||
		fail "model name: not one line: $(cat "$T/err")"
	n_checks=$((n_checks + 1))
done
[ -z "$(find "$T" -name evil)" ] || fail "a file named evil was written"
"$UDFS" ls "$T/S" | grep -q '^base ' || fail "store broken after bad names"

# ---- A hostile catalog: paths that leave the model directory.
H=$T/hostile
cp -a "$T/S" "$H"
sqlite3 "$H/catalog.db" "UPDATE files SET path = '../../escaped.safetensors'
	WHERE model_id = (SELECT id FROM models WHERE name = 'ft')" ||
	fail "sqlite3"
mkdir -p "$T/exp/a/b"
"$UDFS" export "$H" ft "$T/exp/a/b/out" >/dev/null 2>"$T/err"
rc=$?
[ "$rc" -lt 128 ] || fail "export of a hostile catalog died of a signal"
[ -z "$(find "$T" -name 'escaped.safetensors')" ] ||
	fail "export wrote outside its directory: $(find "$T" -name 'escaped.safetensors')"
[ "$rc" -ne 0 ] || fail "export of a path with ../ succeeded"
n_checks=$((n_checks + 1))
sqlite3 "$H/catalog.db" "UPDATE files SET path = 'sub/../../x${tab}y'
	WHERE model_id = (SELECT id FROM models WHERE name = 'ft')"
sqlite3 "$H/catalog.db" "UPDATE models SET name = '../up' WHERE name = 'ft'"
mount_udfs "$H" "$M"
PID=$DAEMON_PID
ls -a "$M" >"$T/root.ls" 2>&1
grep -q '\.\./up\|^up$' "$T/root.ls" &&
	fail "the mount shows a model named ../up"
[ -e "$T/up" ] && fail "something named up appeared next to the mount"
kill -0 "$PID" || fail "daemon died on a hostile catalog"
umount_udfs "$M" "$PID"
n_checks=$((n_checks + 2))
# A hostile catalog: storage paths outside the store. `udfs rm` must not
# delete what they name, and a mount must not serve a file outside the
# store as a base (root reads anything; with allow_other everyone would).
H2=$T/hostile2
cp -a "$T/S" "$H2"
mkdir -p "$T/victim"
echo "precious" >"$T/victim/keep"
sqlite3 "$H2/catalog.db" "UPDATE models SET storage = '../victim'
	WHERE name = 'ft'" || fail "sqlite3"
"$UDFS" rm "$H2" ft >/dev/null 2>&1
# Both storage checks run before either fails the test.
late=""
[ -f "$T/victim/keep" ] ||
	late="udfs rm deleted $T/victim, named by a catalog storage path; "
n_checks=$((n_checks + 1))
H3=$T/hostile3
cp -a "$T/S" "$H3"
mkdir -p "$T/outside"
printf 'secret-outside-the-store' >"$T/outside/base.safetensors"
bsize=$(stat -c %s "$T/outside/base.safetensors")
sqlite3 "$H3/catalog.db" "UPDATE models SET storage = '../outside'
	WHERE name = 'base'; DELETE FROM tensors WHERE file_id IN
	(SELECT id FROM files WHERE model_id = (SELECT id FROM models
	WHERE name = 'base')); UPDATE files SET size = $bsize, kind = 1,
	data_offset = 0, header = NULL, tensor_map = X'01' WHERE model_id = (SELECT id FROM models
	WHERE name = 'base')" || fail "sqlite3"
mount_udfs "$H3" "$M"
PID=$DAEMON_PID
if cat "$M/base/base.safetensors" 2>/dev/null | grep -q secret; then
	late="${late}the mount serves a file outside the store (catalog storage ../outside)"
fi
kill -0 "$PID" || fail "daemon died on a hostile storage path"
umount_udfs "$M" "$PID"
n_checks=$((n_checks + 1))
[ -z "$late" ] || fail "$late"

echo "security: $n_checks checks"
exit 0
