#!/bin/sh
# SPDX-License-Identifier: MIT
# One store on a real GlusterFS volume, used from three client mounts
# standing for three nodes (node3 mounted read-only), each with its own
# `udfs mount` daemon started as fstab starts it (no -f). Byte comparison
# against the sources throughout:
#  1. a model added on node1 is listed and readable on every node within
#     5 s; a removed one disappears within 5 s while an open handle on
#     node2 keeps reading, even after gc on node2;
#  2. concurrent adds from node1 and node2, 10 rounds: every add that
#     exits 0 is in the catalog and reads back exactly (none lost);
#  3. gc on node2 right after removes on node1 never deletes what a
#     committed model uses; verify passes on every node;
#  4. add-base on node1 while gc runs in a loop on node2 succeeds;
#  5. kill -9 of a writer mid-add on node2: every node still agrees, verify
#     passes and the next writer proceeds.
# gc runs with UDFS_GRACE=0, so that only locks and leases protect: a
# test that cannot fail because a grace period hid the bug is no test.
. "$(dirname "$0")/../mount/lib.sh"
. "$(dirname "$0")/lib.sh"
trap 'umount_all_bg; gluster_down; cleanup' EXIT
gl_skip_unless_usable
# Mounts refresh their leases every second (a quarter of the grace).
export UDFS_GRACE=4

RO_LAST=1 gluster_up 3
N1=$T/node1/store N2=$T/node2/store N3=$T/node3/store
"$UDFS_COMPRESS" init "$N1" || fail "init on node1"
# Each source a directory holding model.safetensors, as a checkpoint is.
mkdir -p "$T/base" "$T/base2"
$GEN model "$T/base/model.safetensors" --mb 4 --seed 1 >/dev/null 2>&1 ||
	fail "gen base"
$GEN model "$T/base2/model.safetensors" --mb 24 --seed 7 >/dev/null 2>&1 ||
	fail "gen base2"
for i in $(seq 1 24); do
	mkdir -p "$T/ft$i"
	$GEN finetune "$T/base/model.safetensors" "$T/ft$i/model.safetensors" \
		--seed $((i + 1)) >/dev/null 2>&1 || fail "gen ft$i"
done
"$UDFS_COMPRESS" add-base -q "$N1" base "$T/base" || fail "add-base"
for k in 1 2 3; do
	mount_bg "$T/node$k/store" "$T/m$k" 9>&-
done
grep -q "leases" "$T/mount.m3.log" ||
	fail "the read-only node did not say it cannot keep a lease"

# same_everywhere NAME SRCDIR: byte-identical on every mount.
same_everywhere() {
	for k in 1 2 3; do
		cmp -s "$T/m$k/$1/model.safetensors" "$2/model.safetensors" ||
			return 1
	done
}
gone_everywhere() { # name
	for k in 1 2 3; do
		ls "$T/m$k" | grep -qx "$1" && return 1
	done
	return 0
}

log "1. add on node1: visible and exact on every node within 5 s"
"$UDFS_COMPRESS" add -q "$N1" --base base --lossless ft1="$T/ft1" ||
	fail "add ft1"
wait_for 5 same_everywhere ft1 "$T/ft1" ||
	fail "ft1 not readable on every node 5 s after its add"
ls "$T/m3" | grep -qx ft1 || fail "ft1 not listed on the read-only node"

log "1. rm on node1 while node2 holds it open; gc on node2"
exec 7<"$T/m2/ft1/model.safetensors"
"$UDFS" rm "$N1" ft1 || fail "rm ft1"
wait_for 5 gone_everywhere ft1 || fail "ft1 still listed 5 s after rm"
# node2's mount has switched generations, and its lease (written as it
# switched) still names the one its open handle's model came from.
UDFS_GRACE=0 "$UDFS" gc -q "$N2" || fail "gc on node2"
cat <&7 >"$T/held" || fail "reading the held handle failed"
exec 7<&-
cmp -s "$T/held" "$T/ft1/model.safetensors" || fail "the held handle read wrong bytes"

log "2. concurrent adds from node1 and node2, 10 rounds"
for r in $(seq 1 10); do
	"$UDFS_COMPRESS" add -q "$N1" --base base --lossless \
		"a$r=$T/ft$((r + 1))" 2>"$T/a$r.err" &
	p1=$!
	"$UDFS_COMPRESS" add -q "$N2" --base base --lossless \
		"b$r=$T/ft$((r + 12))" 2>"$T/b$r.err" &
	p2=$!
	wait $p1 && echo "a$r ft$((r + 1))" >>"$T/ok"
	wait $p2 && echo "b$r ft$((r + 12))" >>"$T/ok"
done
n_ok=$(wc -l <"$T/ok")
echo "note: $n_ok of 20 concurrent adds exited 0"
[ "$n_ok" -ge 10 ] || fail "only $n_ok of 20 concurrent adds succeeded: $(cat "$T"/a1.err)"
"$UDFS" ls "$N3" >"$T/ls" || fail "ls on node3"
while read -r name src; do
	grep -q "^$name " "$T/ls" || { cat "$T"/[ab]*.err; cat "$T/ls"; cat "$T/ok"; fail "$name: add exited 0, not in the catalog"; }
	wait_for 5 same_everywhere "$name" "$T/$src" ||
		fail "$name: not exact on every node"
done <"$T/ok"

log "3. removes on node1, gc on node2 at once: nothing committed is lost"
for r in 1 2 3; do
	"$UDFS" rm "$N1" "a$r" 2>/dev/null
	UDFS_GRACE=0 "$UDFS" gc -q "$N2" || fail "gc on node2 (round $r)"
done
for k in 1 2 3; do
	"$UDFS" verify "$T/node$k/store" >"$T/verify" 2>&1 ||
		fail "verify on node$k: $(tail -n 3 "$T/verify")"
done
grep -v '^a[123] ' "$T/ok" | while read -r name src; do
	wait_for 5 same_everywhere "$name" "$T/$src" ||
		fail "$name: lost after gc"
done || exit 1

log "4. add-base on node1 while gc loops on node2"
"$UDFS_COMPRESS" add-base -q "$N1" base2 "$T/base2" 2>"$T/ab.err" &
pab=$!
rounds=0
while kill -0 $pab 2>/dev/null; do
	UDFS_GRACE=0 "$UDFS" gc -q "$N2" 2>>"$T/gc.err" || fail "gc during add-base"
	rounds=$((rounds + 1))
done
wait $pab || fail "add-base while gc ran: $(cat "$T/ab.err")"
echo "note: $rounds gc rounds during add-base"
for k in 1 2 3; do
	wait_for 5 'cmp -s "$T/m$k/base2/model.safetensors" \
		"$T/base2/model.safetensors"' ||
		fail "base2 not exact on node$k"
done

log "5. kill -9 of a writer mid-add on node2"
"$UDFS_COMPRESS" add -q "$N2" --base base2 --sparsity 0.5 \
	k1="$T/base2" 2>/dev/null &
pk=$!
sleep 0.5
kill -9 $pk 2>/dev/null
wait $pk 2>/dev/null
"$UDFS_COMPRESS" add -q "$N1" --base base --lossless next="$T/ft24" ||
	fail "the next writer after kill -9"
wait_for 5 same_everywhere next "$T/ft24" || fail "next not on every node"
"$UDFS" ls "$N1" | awk 'NR > 1 { print $1 }' | sort >"$T/ls1"
for k in 2 3; do
	wait_for 5 '"$UDFS" ls "$T/node$k/store" | awk "NR > 1 { print \$1 }" |
		sort | cmp -s - "$T/ls1"' || fail "node$k lists other models"
	wait_for 5 'ls "$T/m$k" | sort | cmp -s - "$T/ls1"' ||
		fail "mount on node$k shows other models"
done
"$UDFS" verify "$N3" >"$T/verify" 2>&1 || fail "verify after kill -9: $(tail -n 3 "$T/verify")"
umount_all_bg
log "ok"
